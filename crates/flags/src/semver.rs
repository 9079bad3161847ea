//! flagd's `sem_ver` operator.
//!
//! flagd (`core/pkg/evaluator/semver.go`) prepends a `v` when the value lacks one and then uses
//! Go's `golang.org/x/mod/semver`, whose grammar differs from the `semver` crate's: it accepts
//! the shorthands `v1` and `v1.2` (meaning `v1.0.0`, `v1.2.0`) and rejects four-part versions.
//! That grammar and its ordering are small, so they are reproduced here rather than pulling in a
//! crate that would disagree with flagd on exactly those inputs.

use std::cmp::Ordering;

struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    pre: Option<&'a str>,
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn parse(input: &str) -> Option<Version<'_>> {
    // flagd accepts an upper-case `V` like `v`.
    let v = input
        .strip_prefix('v')
        .or_else(|| input.strip_prefix('V'))
        .unwrap_or(input);
    // Build metadata is ignored for ordering, but must be well-formed.
    let (v, build) = match v.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    if let Some(b) = build
        && !b
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    {
        return None;
    }
    let (core, pre) = match v.split_once('-') {
        Some((a, p)) => (a, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if !parts.iter().all(|p| is_num(p)) {
        return None;
    }
    let (major, minor, patch) = match parts.as_slice() {
        [a] if pre.is_none() && build.is_none() => (*a, "0", "0"),
        [a, b] if pre.is_none() && build.is_none() => (*a, *b, "0"),
        [a, b, c] => (*a, *b, *c),
        _ => return None,
    };
    if let Some(p) = pre
        && !p.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && (!id.bytes().all(|c| c.is_ascii_digit()) || is_num(id))
        })
    {
        return None;
    }
    Some(Version {
        major,
        minor,
        patch,
        pre,
    })
}

fn cmp_num(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_pre(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let mut xs = a.split('.');
            let mut ys = b.split('.');
            loop {
                match (xs.next(), ys.next()) {
                    (None, None) => return Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some(x), Some(y)) => {
                        let xn = x.bytes().all(|c| c.is_ascii_digit());
                        let yn = y.bytes().all(|c| c.is_ascii_digit());
                        let o = match (xn, yn) {
                            (true, true) => cmp_num(x, y),
                            (true, false) => Ordering::Less,
                            (false, true) => Ordering::Greater,
                            (false, false) => x.cmp(y),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                }
            }
        }
    }
}

/// Evaluates `sem_ver [actual, op, target]`; `None` when either version is invalid or the
/// operator unknown (flagd then answers `null`).
pub(crate) fn matches(actual: &str, op: &str, target: &str) -> Option<bool> {
    let a = parse(actual)?;
    let b = parse(target)?;
    let major = cmp_num(a.major, b.major);
    let minor = major.then_with(|| cmp_num(a.minor, b.minor));
    let full = minor
        .then_with(|| cmp_num(a.patch, b.patch))
        .then_with(|| cmp_pre(a.pre, b.pre));
    Some(match op {
        "=" => full == Ordering::Equal,
        "!=" => full != Ordering::Equal,
        "<" => full == Ordering::Less,
        "<=" => full != Ordering::Greater,
        ">" => full == Ordering::Greater,
        ">=" => full != Ordering::Less,
        "~" => minor == Ordering::Equal,
        "^" => major == Ordering::Equal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn go_semver_grammar() {
        assert_eq!(matches("1.2", "=", "v1.2.0"), Some(true));
        assert_eq!(matches("v1", "=", "1.0.0"), Some(true));
        assert_eq!(matches("2.0.0.0", "=", "2.0.0"), None);
        assert_eq!(matches("01.0.0", "=", "1.0.0"), None);
        assert_eq!(matches("1.2-beta", "=", "1.2.0"), None);
        assert_eq!(matches("1.0.0+build.1", "=", "1.0.0"), Some(true));
        assert_eq!(matches("1.0.0", "??", "1.0.0"), None);
        assert_eq!(matches("1.0.0", "===", "1.0.0"), None);
        assert_eq!(matches("V1.2.3", "=", "v1.2.3"), Some(true));
    }

    #[test]
    fn prerelease_ordering_follows_semver_spec() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for w in order.windows(2) {
            assert_eq!(matches(w[0], "<", w[1]), Some(true), "{} < {}", w[0], w[1]);
            assert_eq!(matches(w[1], ">", w[0]), Some(true), "{} > {}", w[1], w[0]);
        }
        assert_eq!(matches("10.0.0", ">", "9.0.0"), Some(true));
    }
}
