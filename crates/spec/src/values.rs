//! Small value types of the Kubernetes / Argo wire format and their parsers:
//! int-or-percent, Go durations, Kubernetes quantities, port references.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------
// IntOrPercent
// ---------------------------------------------------------------------------

/// An `intstr.IntOrString` used as a count: an absolute number (`5`) or a
/// percentage of a total (`"25%"`). A string without `%` is rejected, as
/// Kubernetes does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    /// Absolute number.
    Int(i32),
    /// Percentage of a total.
    Percent(i32),
}

impl IntOrPercent {
    /// Resolve against `total`: a percentage is scaled and rounded up
    /// (`round_up`, as for maxSurge) or down (as for maxUnavailable);
    /// negative values resolve to 0.
    pub fn resolve(&self, total: u32, round_up: bool) -> u32 {
        match *self {
            IntOrPercent::Int(n) => n.max(0) as u32,
            IntOrPercent::Percent(p) => {
                let p = p.max(0) as u64;
                let num = p * total as u64;
                let v = if round_up {
                    num.div_ceil(100)
                } else {
                    num / 100
                };
                v.min(u32::MAX as u64) as u32
            }
        }
    }

    /// True when the value is zero (`0` or `"0%"`).
    pub fn is_zero(&self) -> bool {
        matches!(self, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
    }

    /// Parse the string form (`"25%"`).
    pub fn parse_percent(s: &str) -> Result<Self, String> {
        let Some(num) = s.strip_suffix('%') else {
            return Err(format!(
                "invalid value {s:?}: a string must be a percentage like \"25%\""
            ));
        };
        num.trim()
            .parse::<i32>()
            .map(IntOrPercent::Percent)
            .map_err(|_| format!("invalid percentage {s:?}: expected an integer before '%'"))
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrPercent::Int(n) => s.serialize_i32(*n),
            IntOrPercent::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrPercent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a percentage string like \"25%\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(IntOrPercent::Int)
                    .map_err(|_| E::custom(format!("{v} is out of range for a 32-bit integer")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(IntOrPercent::Int)
                    .map_err(|_| E::custom(format!("{v} is out of range for a 32-bit integer")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                IntOrPercent::parse_percent(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Why a duration string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty string.
    #[error("empty duration")]
    Empty,
    /// Negative durations make no sense here.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// A number without a unit (Go requires one, except for "0").
    #[error("missing unit in duration {0:?} (use ns, us, ms, s, m or h, e.g. \"30s\")")]
    MissingUnit(String),
    /// Unknown unit.
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The unit found.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Not a duration at all.
    #[error("invalid duration {0:?} (expected e.g. \"30s\", \"5m\", \"1h30m\")")]
    Invalid(String),
    /// Too large.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parse a Go `time.ParseDuration` string: `[-+]` then one or more
/// `<decimal><unit>` with units ns, us (µs, μs), ms, s, m, h; `"0"` alone is
/// allowed. Negative results are rejected.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let mut s = input;
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Invalid(input.to_string()));
    }
    // Accumulate in nanoseconds as u128 to detect overflow cleanly.
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_end];
        s = &s[int_end..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let fe = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            frac_part = &rest[..fe];
            s = &rest[fe..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::Invalid(input.to_string()));
        }
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "" => return Err(DurationError::MissingUnit(input.to_string())),
            u => {
                return Err(DurationError::UnknownUnit {
                    unit: u.to_string(),
                    input: input.to_string(),
                });
            }
        };
        let overflow = || DurationError::Overflow(input.to_string());
        let int_v: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse::<u128>().map_err(|_| overflow())?
        };
        let mut v = int_v.checked_mul(per).ok_or_else(overflow)?;
        // Fraction: scale digit by digit, ignoring digits beyond ns precision.
        let mut scale = per;
        for c in frac_part.chars() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            v += (c as u128 - '0' as u128) * scale;
        }
        total = total.checked_add(v).ok_or_else(overflow)?;
        // Go limits durations to i64 nanoseconds.
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
    }
    if neg && total > 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A Go duration string (`"30s"`, `"5m"`, `"1h30m"`) kept as written; see
/// [`DurationString::parse`]. Used for metric `interval` / `initialDelay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationString(pub String);

impl DurationString {
    /// Parse as a Go duration.
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.0)
    }
}

/// A pause duration: integer seconds, or a string holding either an integer
/// (seconds) or a Go duration, exactly as Argo's `RolloutPause.DurationSeconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PauseDuration {
    /// Integer seconds.
    Seconds(i64),
    /// String form, kept as written.
    Text(String),
}

impl PauseDuration {
    /// The pause length. Sub-second parts are kept.
    pub fn to_duration(&self) -> Result<Duration, DurationError> {
        match self {
            PauseDuration::Seconds(n) if *n < 0 => Err(DurationError::Negative(n.to_string())),
            PauseDuration::Seconds(n) => Ok(Duration::from_secs(*n as u64)),
            PauseDuration::Text(s) => {
                if let Ok(n) = s.trim().parse::<i64>() {
                    return PauseDuration::Seconds(n).to_duration();
                }
                parse_go_duration(s)
            }
        }
    }
}

impl Serialize for PauseDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PauseDuration::Seconds(n) => s.serialize_i64(*n),
            PauseDuration::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for PauseDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PauseDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("integer seconds or a duration string like \"300s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(PauseDuration::Seconds(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(PauseDuration::Seconds)
                    .map_err(|_| E::custom("duration out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PauseDuration::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------

/// Why a quantity did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a Kubernetes quantity.
    #[error("invalid quantity {0:?} (expected e.g. \"500m\", \"2\", \"512Mi\", \"1G\")")]
    Invalid(String),
    /// Negative where only non-negative makes sense.
    #[error("negative quantity {0:?}")]
    Negative(String),
    /// Too large to represent.
    #[error("quantity {0:?} is too large")]
    Overflow(String),
}

/// A Kubernetes resource quantity kept as written (`"500m"`, `"1Gi"`, `2`).
/// YAML numbers are accepted and kept in their textual form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity like \"500m\" or \"1Gi\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A parsed quantity as an exact rational: `mantissa * 10^exp10 * 2^exp2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParsedQuantity {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

fn parse_quantity_exact(input: &str) -> Result<ParsedQuantity, QuantityError> {
    let bad = || QuantityError::Invalid(input.to_string());
    let s = input.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let (neg, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(QuantityError::Overflow(input.to_string()));
    }
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    if neg {
        mantissa = -mantissa;
    }
    let mut exp10 = -(frac_part.len() as i32);
    let mut exp2 = 0u32;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            // Decimal exponent form: e3 / E-2.
            let rest = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(bad)?;
            let e: i32 = rest.parse().map_err(|_| bad())?;
            if !(-40..=40).contains(&e) {
                return Err(QuantityError::Overflow(input.to_string()));
            }
            exp10 += e;
        }
    }
    Ok(ParsedQuantity {
        mantissa,
        exp10,
        exp2,
    })
}

/// Scale a parsed quantity by `10^extra10`, rounding up (as Kubernetes does
/// for `MilliValue` / `Value`), into a u64.
fn scaled_ceil(q: ParsedQuantity, extra10: i32, input: &str) -> Result<u64, QuantityError> {
    if q.mantissa < 0 {
        return Err(QuantityError::Negative(input.to_string()));
    }
    let over = || QuantityError::Overflow(input.to_string());
    let mut num: i128 = q.mantissa;
    num = num.checked_mul(1i128 << q.exp2).ok_or_else(over)?;
    let e = q.exp10 + extra10;
    let v = if e >= 0 {
        let p = 10i128.checked_pow(e as u32).ok_or_else(over)?;
        num.checked_mul(p).ok_or_else(over)?
    } else {
        match 10i128.checked_pow((-e) as u32) {
            Some(p) => num.div_euclid(p) + i128::from(num.rem_euclid(p) != 0),
            // Divisor exceeds any representable mantissa: a tiny positive value.
            None => i128::from(num != 0),
        }
    };
    u64::try_from(v).map_err(|_| over())
}

/// Parse a Kubernetes quantity to bytes (or plain units), rounding up:
/// `"512Mi"` → 536870912, `"1G"` → 1000000000, `"1.5"` → 2.
pub fn parse_quantity_bytes(s: &str) -> Result<u64, QuantityError> {
    scaled_ceil(parse_quantity_exact(s)?, 0, s)
}

/// Parse a Kubernetes quantity to thousandths (millicores for CPU),
/// rounding up: `"500m"` → 500, `"2"` → 2000, `"0.1"` → 100.
pub fn parse_quantity_millis(s: &str) -> Result<u64, QuantityError> {
    scaled_ceil(parse_quantity_exact(s)?, 3, s)
}

impl Quantity {
    /// Value in bytes / plain units, rounded up.
    pub fn to_bytes(&self) -> Result<u64, QuantityError> {
        parse_quantity_bytes(&self.0)
    }
    /// Value in thousandths (millicores), rounded up.
    pub fn to_millis(&self) -> Result<u64, QuantityError> {
        parse_quantity_millis(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Port references
// ---------------------------------------------------------------------------

/// A port given by number or by container-port name (`intstr` in probes and
/// Service `targetPort`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortRef {
    /// Port number.
    Number(i32),
    /// Named container port.
    Name(String),
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortRef::Number(n) => s.serialize_i32(*n),
            PortRef::Name(n) => s.serialize_str(n),
        }
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(PortRef::Number)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(PortRef::Number)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PortRef::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_resolves_like_kubernetes() {
        assert_eq!(IntOrPercent::Percent(25).resolve(10, true), 3);
        assert_eq!(IntOrPercent::Percent(25).resolve(10, false), 2);
        assert_eq!(IntOrPercent::Percent(25).resolve(12, false), 3);
        assert_eq!(IntOrPercent::Percent(75).resolve(12, true), 9);
        assert_eq!(IntOrPercent::Percent(0).resolve(12, true), 0);
        assert_eq!(IntOrPercent::Int(5).resolve(3, false), 5);
        assert_eq!(IntOrPercent::Int(-1).resolve(3, false), 0);
        assert_eq!(IntOrPercent::Percent(100).resolve(u32::MAX, true), u32::MAX);
    }

    #[test]
    fn int_or_percent_wire_format() {
        let v: IntOrPercent = serde_json::from_str("\"25%\"").unwrap();
        assert_eq!(v, IntOrPercent::Percent(25));
        let v: IntOrPercent = serde_json::from_str("3").unwrap();
        assert_eq!(v, IntOrPercent::Int(3));
        assert!(serde_json::from_str::<IntOrPercent>("\"25\"").is_err());
        assert!(serde_json::from_str::<IntOrPercent>("\"x%\"").is_err());
        assert!(serde_json::from_str::<IntOrPercent>("1.5").is_err());
        assert_eq!(
            serde_json::to_string(&IntOrPercent::Percent(25)).unwrap(),
            "\"25%\""
        );
        assert_eq!(serde_json::to_string(&IntOrPercent::Int(0)).unwrap(), "0");
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(d("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("+5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(d("-0s"), Ok(Duration::ZERO));
        assert!(matches!(d("300"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(d("5d"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(d("-5s"), Err(DurationError::Negative(_))));
        assert!(matches!(d(""), Err(DurationError::Empty)));
        assert!(matches!(d("s"), Err(DurationError::Invalid(_))));
        assert!(matches!(d("."), Err(DurationError::Invalid(_))));
        assert!(matches!(d("-"), Err(DurationError::Invalid(_))));
        assert!(matches!(d("99999999999h"), Err(DurationError::Overflow(_))));
    }

    #[test]
    fn pause_durations_accept_int_and_strings() {
        assert_eq!(
            PauseDuration::Seconds(30).to_duration(),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            PauseDuration::Text("45".into()).to_duration(),
            Ok(Duration::from_secs(45))
        );
        assert_eq!(
            PauseDuration::Text("1h30m".into()).to_duration(),
            Ok(Duration::from_secs(5400))
        );
        assert!(PauseDuration::Text("soon".into()).to_duration().is_err());
        assert!(PauseDuration::Seconds(-1).to_duration().is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_bytes("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_quantity_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_quantity_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_quantity_bytes("128974848"), Ok(128_974_848));
        assert_eq!(parse_quantity_bytes("129e6"), Ok(129_000_000));
        assert_eq!(parse_quantity_bytes("1.5"), Ok(2));
        assert_eq!(parse_quantity_millis("500m"), Ok(500));
        assert_eq!(parse_quantity_millis("1000m"), Ok(1000));
        assert_eq!(parse_quantity_millis("2"), Ok(2000));
        assert_eq!(parse_quantity_millis("0.1"), Ok(100));
        assert_eq!(parse_quantity_millis("100u"), Ok(1));
        assert!(parse_quantity_bytes("12Q").is_err());
        assert!(parse_quantity_bytes("Mi").is_err());
        assert!(parse_quantity_bytes("").is_err());
        assert!(parse_quantity_bytes("1..2").is_err());
        assert!(matches!(
            parse_quantity_bytes("-1"),
            Err(QuantityError::Negative(_))
        ));
        assert!(matches!(
            parse_quantity_bytes("999Ei"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(parse_quantity_bytes("1e99").is_err());
    }
}
