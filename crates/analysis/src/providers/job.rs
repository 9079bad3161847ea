//! Job provider: Argo's Kubernetes Job, run as a local command (one
//! machine; on a cluster `serin-platform-kube` runs it as a batch/v1 Job).
//!
//! Exit 0 → Successful; any other exit → Failed with the last
//! [`TAIL_LINES`] lines of output in the message; a command that cannot be
//! started → Error; the timeout (`activeDeadlineSeconds`) → Error, and the
//! child is killed.

use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{BoxFuture, Provider};
use crate::machine::{JobCommand, Outcome, Phase, ProviderSpec};

/// Lines of output kept in a failed job's message.
pub const TAIL_LINES: usize = 20;

/// Runs commands.
pub struct JobProvider;

impl Provider for JobProvider {
    fn measure<'a>(&'a self, spec: &'a ProviderSpec) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let ProviderSpec::Job(j) = spec else {
                return Outcome::Error("job provider given another provider's spec".into());
            };
            run(j).await
        })
    }
}

fn tail(out: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(out);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn run(j: &JobCommand) -> Outcome {
    if j.program.is_empty() {
        return Outcome::Error(format!(
            "job provider (metric `{}`): the container has no `command`/`args` (Serin runs them as a local command; images are not pulled)",
            j.metric
        ));
    }
    let mut cmd = tokio::process::Command::new(&j.program);
    cmd.args(&j.args)
        .envs(j.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropped on timeout or run stop: the child dies with the future.
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Error(format!("cannot start job command {:?}: {e}", j.program)),
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let timeout = std::time::Duration::from_millis(j.timeout_ms);
    let waited = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
        (out, err, status)
    })
    .await;
    let (out, err, status) = match waited {
        Ok(x) => x,
        Err(_) => {
            let _ = child.kill().await;
            return Outcome::Error(format!(
                "job timed out after {:.1}s and was killed",
                timeout.as_secs_f64()
            ));
        }
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("waiting for job: {e}")),
    };
    let mut combined = out;
    combined.extend_from_slice(&err);
    let output = tail(&combined, TAIL_LINES);
    if status.success() {
        Outcome::Decided {
            phase: Phase::Successful,
            value: Some(serde_json::json!({"exitCode": 0})),
            message: String::new(),
        }
    } else {
        let code = status.code();
        Outcome::Decided {
            phase: Phase::Failed,
            value: Some(serde_json::json!({"exitCode": code})),
            message: format!(
                "job exited with {}; last output:\n{output}",
                code.map(|c| format!("code {c}"))
                    .unwrap_or_else(|| "a signal".into())
            ),
        }
    }
}
