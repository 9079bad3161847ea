//! Guarded feature-flag rollouts — the seed's bash Job, built in.
//!
//! The seed turned `new-payment-processor` on for 5 → 10 → 25 → 50 → 100 %
//! of users, checking the error rate between steps and setting 0 % when it
//! rose. [`GuardedRollout::run`] does the same against Serin's flag server:
//! for each step it `PATCH`es `{"percentage": N}` through the management API
//! (so the server's audit log records every change), runs an AnalysisRun
//! (Argo semantics, any provider: builtin, prometheus, web, job) over the
//! step, and on a Failed, Error or Inconclusive run sets the percentage back
//! to 0 and reports why. Without an analysis it simply waits `interval`
//! between steps.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serin_analysis::{AnalysisRun, Phase, Providers, RunInputs};
use serin_spec::{AnalysisRunArgument, AnalysisTemplate};

/// What to roll out and how.
#[derive(Clone, Debug)]
pub struct GuardedRollout {
    /// Flag server base URL (`http://127.0.0.1:8016`; plain HTTP).
    pub server: String,
    /// Environment (`production`).
    pub environment: String,
    /// Admin token for the management API.
    pub admin_token: String,
    /// Flag key.
    pub flag: String,
    /// Percentages, increasing (`[5, 10, 25, 50, 100]`).
    pub steps: Vec<u8>,
    /// Time at each step (the analysis runs within it; the step lasts at
    /// least this long).
    pub interval: Duration,
    /// Analysis per step: templates and args.
    pub analysis: Option<(Vec<AnalysisTemplate>, Vec<AnalysisRunArgument>)>,
}

/// How it ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every step passed; the flag is at the last percentage.
    Completed,
    /// A step's analysis did not pass; the flag is back at 0 %.
    RolledBack {
        /// The percentage whose analysis failed.
        at: u8,
        /// The analysis phase and message.
        reason: String,
    },
}

/// Progress, for the CLI.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// The percentage was set.
    Set(u8),
    /// The step's analysis ended.
    Analysed {
        /// Percentage.
        at: u8,
        /// Phase.
        phase: Phase,
        /// Message.
        message: String,
    },
}

/// Why a rollout could not be carried out (distinct from a failed analysis,
/// which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Steps empty, not increasing or above 100.
    #[error("steps must be increasing percentages between 1 and 100, got {0:?}")]
    BadSteps(Vec<u8>),
    /// The analysis cannot be built (missing arg, bad condition, …).
    #[error("analysis: {0}")]
    Analysis(String),
    /// The flag server refused a change or could not be reached.
    #[error("flag server: {0}")]
    Server(String),
}

impl GuardedRollout {
    async fn set(&self, pct: u8) -> Result<(), RolloutError> {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let uri = format!(
            "{}/api/v1/environments/{}/flags/{}",
            self.server.trim_end_matches('/'),
            self.environment,
            self.flag
        );
        let req = hyper::Request::patch(uri)
            .header("authorization", format!("Bearer {}", self.admin_token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"percentage\": {pct}}}"))))
            .map_err(|e| RolloutError::Server(e.to_string()))?;
        let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| RolloutError::Server("timed out".into()))?
            .map_err(|e| RolloutError::Server(e.to_string()))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(RolloutError::Server(format!(
                "PATCH {pct} % answered {status}: {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }

    /// Runs the rollout to completion or rollback.
    pub async fn run(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Outcome, RolloutError> {
        let ok = !self.steps.is_empty()
            && self.steps.windows(2).all(|w| w[0] < w[1])
            && self.steps.iter().all(|s| (1..=100).contains(s));
        if !ok {
            return Err(RolloutError::BadSteps(self.steps.clone()));
        }
        // Build every step's run first: a bad template fails before any user
        // sees the flag.
        if let Some((templates, args)) = &self.analysis {
            let inputs = RunInputs {
                args: args.clone(),
                ..Default::default()
            };
            AnalysisRun::new("check", templates, &inputs)
                .map_err(|e| RolloutError::Analysis(e.to_string()))?;
        }
        for &pct in &self.steps {
            self.set(pct).await?;
            progress(Progress::Set(pct));
            let started = tokio::time::Instant::now();
            if let Some((templates, args)) = &self.analysis {
                let inputs = RunInputs {
                    args: args.clone(),
                    ..Default::default()
                };
                let run = AnalysisRun::new(&format!("{}-{pct}", self.flag), templates, &inputs)
                    .map_err(|e| RolloutError::Analysis(e.to_string()))?;
                // `_stop` lives until the run ends: dropping it would stop the run.
                let (_status, _stop, task) = serin_analysis::runner::spawn(run, Providers::new());
                let end = task
                    .await
                    .map_err(|e| RolloutError::Analysis(e.to_string()))?;
                progress(Progress::Analysed {
                    at: pct,
                    phase: end.phase,
                    message: end.message.clone(),
                });
                if end.phase != Phase::Successful {
                    self.set_zero().await?;
                    return Ok(Outcome::RolledBack {
                        at: pct,
                        reason: format!("{:?}: {}", end.phase, end.message),
                    });
                }
            }
            if pct < *self.steps.last().unwrap_or(&100) {
                tokio::time::sleep_until(started + self.interval).await;
            }
        }
        Ok(Outcome::Completed)
    }

    async fn set_zero(&self) -> Result<(), RolloutError> {
        // 0 % is not a valid step but is what the rollback sets.
        let mut last = None;
        for _ in 0..5 {
            match self.set(0).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last.unwrap_or_else(|| RolloutError::Server("cannot set 0 %".into())))
    }
}
