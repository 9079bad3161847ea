//! The async runner: drives an [`AnalysisRun`] with real providers and time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::machine::{AnalysisRun, Outcome, RunStatus};
use crate::providers::Providers;

/// A time source in milliseconds.
pub trait Clock: Send + Sync {
    /// Milliseconds on a monotonic scale.
    fn now_ms(&self) -> u64;
}

/// Tokio's clock (so tests with a paused tokio clock stay consistent).
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// Run `run` to completion or until `stop` turns true (then it is
/// terminated, Argo's `spec.terminate`). Every change of status is published
/// on `updates`; the final status is returned. In-flight measurements are
/// cancelled (job children killed) when the run ends.
pub async fn run(
    mut run: AnalysisRun,
    providers: Providers,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    updates: watch::Sender<RunStatus>,
) -> RunStatus {
    // Judge state (the sequential evidence) belongs to this run only.
    let providers = providers.for_run();
    let mut inflight: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut stop_open = true;
    loop {
        if *stop.borrow() {
            run.terminate(clock.now_ms());
        }
        let now = clock.now_ms();
        for task in run.next_due(now) {
            tracing::debug!(metric = %task.metric, provider = task.provider.kind(), "measuring");
            let providers = providers.clone();
            inflight.spawn(async move {
                let outcome = providers.measure(&task.provider).await;
                (task.metric, outcome)
            });
        }
        updates.send_replace(run.status().clone());
        if run.is_complete() {
            break;
        }
        let sleep_for = run
            .next_wake()
            .map(|t| Duration::from_millis(t.saturating_sub(now)));
        tokio::select! {
            changed = stop.changed(), if stop_open => {
                if changed.is_err() {
                    // Sender gone: nobody can stop us any more; run on.
                    stop_open = false;
                }
            }
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                let now = clock.now_ms();
                match joined {
                    Ok((metric, outcome)) => run.record(&metric, outcome, now),
                    Err(e) => tracing::error!("measurement task failed: {e}"),
                }
            }
            _ = sleep_opt(sleep_for) => {}
        }
    }
    inflight.abort_all();
    let status = run.status().clone();
    tracing::info!(run = %status.name, phase = ?status.phase, message = %status.message, "analysis run finished");
    status
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Spawn [`run`] on the current tokio runtime; returns the status channel,
/// the stop switch and the task.
pub fn spawn(
    analysis: AnalysisRun,
    providers: Providers,
) -> (
    watch::Receiver<RunStatus>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<RunStatus>,
) {
    let (tx, rx) = watch::channel(analysis.status().clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(run(
        analysis,
        providers,
        Arc::new(TokioClock::default()),
        stop_rx,
        tx,
    ));
    (rx, stop_tx, handle)
}
