//! Graceful shutdown: flip readiness to 503 at once, keep serving for a drain
//! period so load balancers (or Serin's proxy) stop routing here, then stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::HealthChecker;

/// Where a [`Shutdown`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serving normally.
    Running,
    /// Readiness is 503; still serving until `until`.
    Draining {
        /// End of the drain period.
        until: Instant,
    },
    /// Drain period over: the server should stop accepting and finish in-flight work.
    Stopped,
}

/// Graceful-shutdown helper, cheap to clone.
///
/// [`trigger`](Self::trigger) (or SIGTERM/SIGINT once
/// [`listen_for_signals`](Self::listen_for_signals) runs) turns readiness 503
/// immediately; [`drained`](Self::drained) resolves when the drain period has
/// passed, which is what to hand to `axum::serve(..).with_graceful_shutdown`,
/// so the server keeps accepting and serving during the drain and then lets
/// in-flight requests finish. A second signal during the drain stops at once.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    checker: HealthChecker,
    drain: Duration,
    phase: watch::Sender<Phase>,
}

impl Shutdown {
    /// A helper that flips `checker`'s readiness and drains for `drain`.
    pub fn new(checker: &HealthChecker, drain: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                checker: checker.clone(),
                drain,
                phase: watch::Sender::new(Phase::Running),
            }),
        }
    }

    /// The configured drain period.
    pub fn drain_period(&self) -> Duration {
        self.inner.drain
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        *self.inner.phase.borrow()
    }

    /// Starts shutdown: readiness answers 503 from now on and the drain period
    /// begins. Idempotent; returns `false` if shutdown had already begun.
    pub fn trigger(&self) -> bool {
        let until = Instant::now() + self.inner.drain;
        let started = self.inner.phase.send_if_modified(|p| {
            if *p == Phase::Running {
                *p = Phase::Draining { until };
                true
            } else {
                false
            }
        });
        if started {
            self.inner.checker.begin_shutdown();
            tracing::info!(
                drain_ms = self.inner.drain.as_millis() as u64,
                "draining before stop"
            );
        }
        started
    }

    /// Skips whatever is left of the drain period.
    pub fn stop_now(&self) {
        self.inner.checker.begin_shutdown();
        self.inner.phase.send_replace(Phase::Stopped);
    }

    /// Resolves once the drain period after [`trigger`](Self::trigger) is over
    /// (or [`stop_now`](Self::stop_now) was called). `'static`, so it can be
    /// passed straight to `with_graceful_shutdown`.
    pub fn drained(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut rx = inner.phase.subscribe();
            loop {
                let phase = *rx.borrow_and_update();
                match phase {
                    Phase::Stopped => return,
                    Phase::Running => {
                        // The sender lives in `inner`, which we hold: never closed.
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                    Phase::Draining { until } => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => {
                                inner.phase.send_replace(Phase::Stopped);
                                tracing::info!("drain period over: stopping");
                                return;
                            }
                            changed = rx.changed() => if changed.is_err() { return },
                        }
                    }
                }
            }
        }
    }

    /// Spawns a task that triggers shutdown on SIGTERM or SIGINT (Ctrl-C), and
    /// stops at once on a second signal. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn listen_for_signals(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let this = self.clone();
        let mut signals = Signals::new()?;
        Ok(tokio::spawn(async move {
            let name = signals.recv().await;
            tracing::info!(signal = name, "signal received: starting graceful shutdown");
            this.trigger();
            let name = signals.recv().await;
            tracing::warn!(
                signal = name,
                "second signal: stopping without waiting for the drain"
            );
            this.stop_now();
        }))
    }
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn recv(&mut self) -> &'static str {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    }
}
