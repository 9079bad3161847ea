//! An error with its causes on one line, `outer: inner: …`.
//!
//! Many errors' own message hides the reason: hyper's "client error
//! (Connect)" does not say whether the connection was refused or the
//! certificate was not trusted; that is in its sources. Every place that
//! shows an error to a person (the driver's error on a rollout, the CLI,
//! notification retries, the proxy's upstream errors, analysis providers)
//! uses this one function, so they all read the same.

/// `e` and its causes, `outer: inner: …`. A cause whose text the message
/// already contains is left out (several crates repeat their source in
/// their own message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn joins_causes_in_order() {
        let e = E(
            "client error (Connect)",
            Some(Box::new(E(
                "tcp connect error",
                Some(Box::new(E("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(error_chain(&E("alone", None)), "alone");
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let e = E(
            "reading config: permission denied",
            Some(Box::new(E("permission denied", None))),
        );
        assert_eq!(error_chain(&e), "reading config: permission denied");
    }
}
