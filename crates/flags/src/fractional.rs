//! flagd's `fractional` operator, bit-for-bit.
//!
//! Reference: open-feature/flagd `core/pkg/evaluator/fractional.go` (the integer version that
//! replaced the earlier `abs(int32 hash) / MaxInt32` float version):
//!
//! 1. Arguments arrive evaluated. If the first is a string it is the bucketing value. If it is
//!    `null` (e.g. a `var` of a missing property) it is dropped. Otherwise (or after dropping)
//!    the bucketing value is `flagKey + targetingKey`; without a string `targetingKey` the
//!    operator yields `null` (so the flag falls back to its default variant).
//! 2. No distribution left: `null`. (Older flagd also refused a lone shorthand entry; the
//!    testbed's `fractional-single-entry-flag` now requires it to resolve.)
//! 3. Each remaining argument is `[variant]` or `[variant, weight]`. The variant is a string,
//!    boolean, number or null; the weight a whole number, default 1 (also when `null`).
//!    A weight above 2^31-1, or weights summing above 2^31-1, or a malformed entry: `null`.
//! 4. `hash = murmur3_x86_32(bucketing value, seed 0)`;
//!    `bucket = (hash as u64 * totalWeight) >> 32`, in `0..totalWeight`; the first variant
//!    whose cumulative weight exceeds `bucket` wins. A total weight of 0 yields `null` (so the
//!    default variant, reason DEFAULT: flagd-testbed `fractional-zero-weights-flag`).
//!
//! Negative weights are clamped to 0, as flagd's newest `fractional.go` does (computed
//! weights such as `100 - pct` may go below 0), the flagd schema (`targeting.json`,
//! `fractionalWeightArg`) and flagd-testbed (`fractional-negative-weight-flag`) specify; see
//! docs/flagd-compatibility.md.

use std::borrow::Cow;

use serde_json::Value;

const MAX_WEIGHT_SUM: i64 = i32::MAX as i64;

/// murmur3 x86_32 with seed 0 over the UTF-8 bytes of `s`.
pub fn hash(s: &str) -> u32 {
    let mut bytes = s.as_bytes();
    // Reading from a byte slice cannot fail; 0 would only ever come from an impossible error.
    murmur3::murmur3_32(&mut bytes, 0).unwrap_or(0)
}

/// Maps a 32-bit hash into `0..total_weight` exactly as flagd does:
/// `(hash × totalWeight) >> 32`.
pub fn bucket(hash: u32, total_weight: u32) -> u64 {
    (u64::from(hash) * u64::from(total_weight)) >> 32
}

/// Evaluates `fractional` over already-evaluated arguments.
pub(crate) fn evaluate(
    values: &[Cow<'_, Value>],
    flag_key: &str,
    targeting_key: Option<&str>,
) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let owned_key;
    let (bucket_by, rest): (&str, &[Cow<'_, Value>]) = match values[0].as_ref() {
        Value::String(s) => (s.as_str(), &values[1..]),
        first => {
            let rest = if first.is_null() {
                &values[1..]
            } else {
                values
            };
            let Some(tk) = targeting_key else {
                return Value::Null;
            };
            owned_key = format!("{flag_key}{tk}");
            (owned_key.as_str(), rest)
        }
    };
    let mut variants: Vec<(&Value, i64)> = Vec::with_capacity(rest.len());
    let mut total: i64 = 0;
    for entry in rest {
        let Value::Array(dist) = entry.as_ref() else {
            return Value::Null;
        };
        let Some(variant) = dist.first() else {
            return Value::Null;
        };
        if matches!(variant, Value::Array(_) | Value::Object(_)) {
            return Value::Null;
        }
        let weight = match dist.get(1) {
            None | Some(Value::Null) => 1,
            Some(Value::Number(n)) => {
                let Some(f) = n.as_f64() else {
                    return Value::Null;
                };
                if f.fract() != 0.0 {
                    return Value::Null;
                }
                if f < 0.0 {
                    0
                } else if f > MAX_WEIGHT_SUM as f64 {
                    return Value::Null;
                } else {
                    f as i64
                }
            }
            Some(_) => return Value::Null,
        };
        total += weight;
        variants.push((variant, weight));
    }
    if total > MAX_WEIGHT_SUM {
        return Value::Null;
    }
    if variants.is_empty() || total == 0 {
        return Value::Null;
    }
    let b = bucket(hash(bucket_by), u32::try_from(total).unwrap_or(u32::MAX));
    let mut range_end: u64 = 0;
    for (variant, weight) in variants {
        range_end += u64::try_from(weight).unwrap_or(0);
        if b < range_end {
            return variant.clone();
        }
    }
    Value::String(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        // Published murmur3 x86_32 seed-0 vectors (SMHasher / Wikipedia test values).
        assert_eq!(hash(""), 0);
        assert_eq!(hash("test"), 0xba6b_d213);
        assert_eq!(hash("Hello, world!"), 0xc036_3e43);
        assert_eq!(
            hash("The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn bucket_spans_the_whole_range() {
        assert_eq!(bucket(0, 100), 0);
        assert_eq!(bucket(u32::MAX, 100), 99);
        assert_eq!(bucket(u32::MAX / 2, 100), 49);
    }
}
