//! The [`Check`] trait every dependency check implements, and its error type.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Boxed future returned by [`Check::check`]; `Send` so checks run on any runtime thread.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send + 'a>>;

/// Why a dependency check failed. The `Display` text is what readiness reports
/// in the dependency's `error` field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The check did not finish within its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A TCP (or HTTP, PostgreSQL, Redis) connection could not be opened.
    #[error("connect to {target} failed: {source}")]
    Connect {
        /// Address or URL that was dialled.
        target: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP dependency answered with a status outside the accepted range.
    #[error("unexpected HTTP status {status} (accepted {accepted})")]
    HttpStatus {
        /// Status code received.
        status: u16,
        /// Human-readable accepted range, e.g. `200..=299`.
        accepted: String,
    },
    /// The dependency answered, but not with what a healthy one answers.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The check's task panicked; readiness treats it as a failure.
    #[error("check panicked")]
    Panicked,
    /// Any other failure, with the underlying error kept as the source.
    #[error("{context}: {source}")]
    Other {
        /// What was being done when it failed (e.g. `"PING"`).
        context: String,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A plain failure message, for custom checks.
    #[error("{0}")]
    Message(String),
}

impl CheckError {
    /// A failure described only by a message (handy in custom checks).
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Message(message.into())
    }

    /// Wraps any error with a short context string.
    pub fn other(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Other {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// A dependency health check.
///
/// Implementations only say whether the dependency answered correctly; the
/// [`HealthChecker`](crate::HealthChecker) adds the timeout, caching,
/// single-flight and latency measurement around them, so a check can simply
/// `await` its dependency.
///
/// For one-off checks, [`check_fn`] turns an async closure into a `Check`.
pub trait Check: Send + Sync + 'static {
    /// Runs the check once.
    fn check(&self) -> CheckFuture<'_>;
}

/// A [`Check`] built from a closure returning a future; see [`check_fn`].
pub struct FnCheck<F>(F);

/// Builds a [`Check`] from a closure that returns a future, e.g. to ping a
/// connection pool this crate has no built-in support for:
///
/// ```
/// use serin_health::{check_fn, CheckError};
/// let warm = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
/// let check = check_fn(move || {
///     let warm = warm.clone();
///     async move {
///         if warm.load(std::sync::atomic::Ordering::SeqCst) {
///             Ok(())
///         } else {
///             Err(CheckError::msg("cache is cold"))
///         }
///     }
/// });
/// # let _ = check;
/// ```
pub fn check_fn<F, Fut>(f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
{
    FnCheck(f)
}

impl<F, Fut> Check for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
{
    fn check(&self) -> CheckFuture<'_> {
        Box::pin((self.0)())
    }
}
