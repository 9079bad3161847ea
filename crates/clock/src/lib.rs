//! Serin's one wall clock and its RFC 3339 text.
//!
//! The engine, the driver, flag evaluation and the flag-rollout machine
//! never read a clock: their callers pass `now`. Those callers — the
//! adapters, servers and the CLI — read it here, as milliseconds since the
//! Unix epoch, and write times for people and for manifests as RFC 3339.
//! The formatting and parsing are a few dozen lines written here rather than
//! a date-time crate: `humantime` rejects the `±hh:mm` offsets Kubernetes'
//! `metav1.Time` accepts, and nothing else needs a calendar.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the real clock (0 if the clock
/// is before 1970).
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// Seconds since the Unix epoch, from the real clock (flagd's
/// `$flagd.timestamp`, OFREP's `Last-Modified`).
pub fn now_secs() -> i64 {
    i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch of `t` (0 before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Why an RFC 3339 time (`spec.restartAt`, `serin restart --at`) did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 time after 1970 (like \"2020-03-30T21:19:35Z\")")]
pub struct TimestampError(pub String);

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDThh:mm:ss` of `ms` since the epoch, and the leftover millis.
fn civil(ms: u64) -> (String, u64) {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ),
        ms % 1000,
    )
}

/// RFC 3339 UTC with second precision (`2020-03-30T21:19:35Z`; milliseconds
/// are dropped), as `kubectl argo rollouts restart` writes `spec.restartAt`.
pub fn format_rfc3339_seconds(ms: u64) -> String {
    format!("{}Z", civil(ms).0)
}

/// RFC 3339 UTC with milliseconds (`2023-11-14T22:13:20.123Z`), for
/// timestamps in API answers and reports.
pub fn format_rfc3339_millis(ms: u64) -> String {
    let (s, millis) = civil(ms);
    format!("{s}.{millis:03}Z")
}

/// Parses an RFC 3339 time (`2020-03-30T21:19:35Z`, fractions and `±hh:mm`
/// offsets allowed; what Kubernetes' `metav1.Time` accepts) into
/// milliseconds since the Unix epoch.
pub fn parse_rfc3339(input: &str) -> Result<u64, TimestampError> {
    let bad = || TimestampError(input.to_string());
    let s = input.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimestampError> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(part)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)
    };
    let sep = |i: usize, ok: &[u8]| s.get(i).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        for (k, c) in s[start..i.min(start + 3)].iter().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][k];
        }
    }
    let offset_min = match s.get(i) {
        Some(b'Z' | b'z') if i + 1 == s.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == s.len() && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let m = oh * 60 + om;
            if c == b'-' { -m } else { m }
        }
        _ => return Err(bad()),
    };
    // A leap second is read as the last second of its minute.
    let secs =
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60;
    let ms = secs * 1000 + millis;
    u64::try_from(ms).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_fractions_and_offsets_and_round_trips() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2020-03-30T21:19:35Z"), Ok(1_585_603_175_000));
        assert_eq!(
            parse_rfc3339("2020-03-30T21:19:35.25Z"),
            Ok(1_585_603_175_250)
        );
        assert_eq!(
            parse_rfc3339("2020-03-30T23:19:35+02:00"),
            Ok(1_585_603_175_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29t12:00:00-01:30"),
            Ok(1_709_213_400_000)
        );
        for ms in [0, 951_782_400_000, 1_585_603_175_000, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339_seconds(ms)), Ok(ms));
        }
        for ms in [0, 951_782_400_007, 1_585_603_175_250, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339_millis(ms)), Ok(ms));
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            format_rfc3339_seconds(1_585_603_175_999),
            "2020-03-30T21:19:35Z"
        );
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            format_rfc3339_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "now",
            "2020-03-30",
            "2020-03-30T21:19:35",
            "2020-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2020-03-30T24:00:00Z",
            "2020-03-30T21:19:35.Z",
            "2020-03-30T21:19:35+0200",
            "1969-12-31T23:59:59Z",
            "2020-03-30T21:19:35Zjunk",
            "２020-03-30T21:19:35Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_clock_and_system_times_agree() {
        let before = now_ms();
        let t = unix_ms(SystemTime::now());
        assert!(t >= before, "{t} < {before}");
        assert_eq!(unix_ms(system_time(1_585_603_175_250)), 1_585_603_175_250);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(now_secs() >= i64::try_from(before / 1000).unwrap());
    }
}
