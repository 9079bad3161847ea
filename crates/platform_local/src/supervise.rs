//! Per-pod and per-container supervisors: start or adopt, probe, watch
//! memory, restart with backoff, terminate.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustix::process::Signal;
use serin_spec::{Container, Probe};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cgroup::Cgroup;
use crate::probe::{self, PortMapping, Target};
use crate::{Inner, PodCell, sys};

/// Observable state of one container.
#[derive(Clone, Debug)]
pub(crate) struct ContainerShared {
    pub name: String,
    pub ports: Vec<PortMapping>,
    pub log: PathBuf,
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub started_at: SystemTime,
    /// `ContainerCreating`, `Running`, `Error`, `Completed`, `OOMKilled`,
    /// `CrashLoopBackOff`, `Terminated`.
    pub status: &'static str,
    pub restarts: u32,
    pub last_reason: Option<String>,
    pub last_message: Option<String>,
    /// Startup probe passed (or there is none).
    pub started: bool,
    /// Readiness probe passing (or there is none).
    pub ready: bool,
    /// SIGTERM was sent to this incarnation's process group (persisted, so a
    /// restarted platform finishing the termination does not send it again).
    pub term_sent: bool,
}

/// Observable state of one pod.
#[derive(Clone, Debug)]
pub(crate) struct PodShared {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub created_at: SystemTime,
    pub terminating_since: Option<SystemTime>,
    /// The grace period of the termination in progress (SIGKILL at
    /// `terminating_since + termination_grace`).
    pub termination_grace: Option<Duration>,
    /// Recorded in the state file but its processes were gone on start.
    pub lost: bool,
    pub ready_since: Option<Instant>,
    pub containers: Vec<ContainerShared>,
    /// A restart replacement: the pod it replaces, until that pod is retired.
    pub replaces: Option<String>,
}

impl PodShared {
    pub fn is_ready(&self) -> bool {
        self.terminating_since.is_none()
            && !self.lost
            && self
                .containers
                .iter()
                .all(|c| c.pid.is_some() && c.status == "Running" && c.started && c.ready)
    }

    /// `kubectl get pods` STATUS.
    pub fn status(&self) -> String {
        if self.lost {
            return "Error".into();
        }
        if self.terminating_since.is_some() {
            return "Terminating".into();
        }
        if !self.containers.is_empty() && self.containers.iter().all(|c| c.status == "Completed") {
            return "Completed".into();
        }
        self.containers
            .iter()
            .map(|c| c.status)
            .find(|s| *s != "Running" && *s != "Completed")
            .unwrap_or("Running")
            .into()
    }
}

/// Everything needed to (re)start one container; fixed for the pod's life.
#[derive(Debug)]
pub(crate) struct ContainerPlan {
    pub idx: usize,
    pub spec: Container,
    pub argv: Vec<String>,
    pub target: Target,
    pub log: PathBuf,
    pub grace: Duration,
    pub memory_limit: Option<u64>,
}

/// A running process recorded by a previous platform instance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Adopt {
    pub pid: u32,
    pub start_ticks: u64,
}

enum Proc {
    Owned(tokio::process::Child),
    Adopted(Adopt),
}

impl Proc {
    /// Waits for the process to end. Cancel-safe. Adopted processes are not
    /// our children, so their exit is noticed by polling /proc and the exit
    /// status is unknown.
    async fn wait(&mut self) -> Option<ExitStatus> {
        match self {
            Proc::Owned(c) => c.wait().await.ok(),
            Proc::Adopted(a) => {
                while sys::same_process_alive(a.pid, a.start_ticks) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            }
        }
    }
}

enum Ended {
    Stopped,
    Exited(Option<ExitStatus>),
    ProbeKill(String),
    /// Memory in use when the platform killed it; None: the kernel did (cgroup).
    Oom(Option<u64>),
    StartFailed(String),
}

fn spawn(plan: &ContainerPlan) -> Result<(tokio::process::Child, u32), String> {
    let Some((prog, args)) = plan.argv.split_first() else {
        return Err("empty command".into());
    };
    let (out, err) =
        sys::open_log(&plan.log).map_err(|e| format!("log {}: {e}", plan.log.display()))?;
    sys::private_dirs(&plan.target.cwd)
        .map_err(|e| format!("working directory {}: {e}", plan.target.cwd.display()))?;
    let mut cmd = tokio::process::Command::new(crate::env::resolve_program(prog, &plan.target.cwd));
    // Only the replica's own environment (crate::env::clean), never ours.
    cmd.args(args)
        .env_clear()
        .envs(plan.target.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.target.cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own process group: signals reach everything the container starts.
        .process_group(0)
        // Children outlive the platform so a restarted control plane can adopt them.
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|e| format!("exec {prog}: {e}"))?;
    let pid = child.id().ok_or("process exited before its pid was read")?;
    Ok((child, pid))
}

pub(crate) async fn supervise_container(
    inner: Arc<Inner>,
    cell: Arc<PodCell>,
    plan: Arc<ContainerPlan>,
    mut stop: watch::Receiver<Option<Instant>>,
    mut adopt: Option<Adopt>,
) {
    let idx = plan.idx;
    let mut backoff_step: u32 = 0;
    loop {
        if stop.borrow().is_some() {
            inner.update(&cell, |p| set_terminated(&mut p.containers[idx]));
            return;
        }
        let began = Instant::now();
        let ended = match adopt.take() {
            Some(a) => {
                run_incarnation(&inner, &cell, &plan, &mut stop, Proc::Adopted(a), false).await
            }
            None => match spawn(&plan) {
                Ok((child, pid)) => {
                    let ticks = sys::stat(pid).map_or(0, |s| s.start_ticks);
                    let has_startup = plan.spec.startup_probe.is_some();
                    let has_readiness = plan.spec.readiness_probe.is_some();
                    inner.update(&cell, |p| {
                        let c = &mut p.containers[idx];
                        c.pid = Some(pid);
                        c.start_ticks = Some(ticks);
                        c.started_at = SystemTime::now();
                        c.status = "Running";
                        c.started = !has_startup;
                        c.ready = !has_readiness;
                        c.term_sent = false;
                        true
                    });
                    tracing::info!(pod = %pod_name(&cell), container = %plan.spec.name, pid, "started");
                    run_incarnation(&inner, &cell, &plan, &mut stop, Proc::Owned(child), true).await
                }
                Err(e) => Ended::StartFailed(e),
            },
        };
        let (reason, message) = match ended {
            Ended::Stopped => return,
            Ended::Exited(Some(st)) if st.success() => ("Completed", format!("exited: {st}")),
            Ended::Exited(Some(st)) => ("Error", format!("exited: {st}")),
            Ended::Exited(None) => ("Error", "process ended (exit status unknown)".to_string()),
            Ended::ProbeKill(m) => ("Error", m),
            Ended::Oom(rss) => (
                "OOMKilled",
                match rss {
                    Some(rss) => format!(
                        "memory {rss} bytes exceeded the limit of {} bytes",
                        plan.memory_limit.unwrap_or(0)
                    ),
                    None => format!(
                        "killed by the kernel at the cgroup memory limit of {} bytes",
                        plan.memory_limit.unwrap_or(0)
                    ),
                },
            ),
            Ended::StartFailed(m) => ("Error", m),
        };
        tracing::warn!(pod = %pod_name(&cell), container = %plan.spec.name, reason, %message, "container ended");
        let opts = &inner.opts;
        if began.elapsed() >= opts.backoff_reset_after {
            backoff_step = 0;
        }
        let delay = opts
            .backoff_base
            .saturating_mul(1u32.checked_shl(backoff_step).unwrap_or(u32::MAX))
            .min(opts.backoff_max);
        backoff_step = backoff_step.saturating_add(1);
        inner.update(&cell, |p| {
            let c = &mut p.containers[idx];
            c.pid = None;
            c.start_ticks = None;
            c.ready = false;
            c.started = false;
            c.status = if c.restarts == 0 {
                reason
            } else {
                "CrashLoopBackOff"
            };
            c.last_reason = Some(reason.to_string());
            c.last_message = Some(message);
            true
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {
                inner.update(&cell, |p| set_terminated(&mut p.containers[idx]));
                return;
            }
        }
        inner.update(&cell, |p| {
            let c = &mut p.containers[idx];
            c.restarts += 1;
            c.status = "ContainerCreating";
            true
        });
    }
}

fn set_terminated(c: &mut ContainerShared) -> bool {
    c.pid = None;
    c.start_ticks = None;
    c.ready = false;
    c.status = "Terminated";
    true
}

fn pod_name(cell: &PodCell) -> String {
    crate::lock(cell).name.clone()
}

async fn run_incarnation(
    inner: &Arc<Inner>,
    cell: &Arc<PodCell>,
    plan: &Arc<ContainerPlan>,
    stop: &mut watch::Receiver<Option<Instant>>,
    mut proc: Proc,
    fresh: bool,
) -> Ended {
    let idx = plan.idx;
    let (pid, started, started_at) = {
        let p = crate::lock(cell);
        let c = &p.containers[idx];
        (c.pid.unwrap_or(0), c.started, c.started_at)
    };
    let pod = crate::lock(cell).name.clone();
    let cgroup = plan.memory_limit.and_then(|limit| {
        if fresh {
            let cg = Cgroup::create(&pod, &plan.spec.name, limit)?;
            if cg.add(pid) {
                Some(cg)
            } else {
                cg.remove();
                None
            }
        } else {
            Cgroup::open(&pod, &plan.spec.name)
        }
    });
    let ooms_before = cgroup.as_ref().map_or(0, Cgroup::oom_kills);
    // Probe delays count from the container's start, also for adopted ones.
    let age = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or_default();
    let container_start = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    let (kill_tx, mut kill_rx) = mpsc::channel::<String>(4);
    let (started_tx, started_rx) = watch::channel(started);
    let started_tx = Arc::new(started_tx);
    let mut probes = JoinSet::new();
    let kinds = [
        (Kind::Startup, &plan.spec.startup_probe),
        (Kind::Readiness, &plan.spec.readiness_probe),
        (Kind::Liveness, &plan.spec.liveness_probe),
    ];
    for (kind, p) in kinds {
        if let Some(p) = p {
            if kind == Kind::Startup && started && !fresh {
                continue; // an adopted container already passed its startup probe
            }
            probes.spawn(probe_loop(
                kind,
                p.clone(),
                inner.clone(),
                cell.clone(),
                plan.clone(),
                container_start,
                started_rx.clone(),
                started_tx.clone(),
                kill_tx.clone(),
            ));
        }
    }
    let mut tick = tokio::time::interval(inner.opts.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            st = proc.wait() => break Ended::Exited(st),
            Some(reason) = kill_rx.recv() => break Ended::ProbeKill(reason),
            _ = tick.tick() => {
                if let Some(limit) = plan.memory_limit {
                    let rss: u64 = sys::group_members(pid).iter().map(|m| m.1).sum();
                    if rss > limit {
                        // No cgroup here: the kernel cannot OOM-kill for us, so
                        // the platform does it to the whole group.
                        sys::signal_group(pid, Signal::KILL);
                        break Ended::Oom(Some(rss));
                    }
                }
                if let Err(e) = sys::rotate_if_needed(&plan.log, inner.opts.log_max_bytes, inner.opts.log_files) {
                    tracing::warn!(log = %plan.log.display(), error = %e, "log rotation failed");
                }
            }
            _ = stop.changed() => break Ended::Stopped,
        }
    };
    probes.abort_all();
    drop(probes);
    inner.update(cell, |p| {
        std::mem::replace(&mut p.containers[idx].ready, false)
    });
    let ended = match ended {
        Ended::Stopped => {
            let deadline = stop.borrow().unwrap_or_else(|| Instant::now() + plan.grace);
            terminate(inner, cell, plan, &mut proc, pid, deadline).await;
            inner.update(cell, |p| set_terminated(&mut p.containers[idx]));
            Ended::Stopped
        }
        Ended::ProbeKill(reason) => {
            let grace = probe_grace(plan, &reason).unwrap_or(plan.grace);
            terminate(inner, cell, plan, &mut proc, pid, Instant::now() + grace).await;
            Ended::ProbeKill(reason)
        }
        Ended::Exited(st) => {
            // Kubernetes kills the whole container; do the same to leftovers.
            sys::signal_group(pid, Signal::KILL);
            if cgroup
                .as_ref()
                .is_some_and(|cg| cg.oom_kills() > ooms_before)
            {
                Ended::Oom(None)
            } else {
                Ended::Exited(st)
            }
        }
        Ended::Oom(rss) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), proc.wait()).await;
            Ended::Oom(rss)
        }
        other => other,
    };
    if let Some(cg) = &cgroup {
        cg.remove();
    }
    ended
}

/// A probe-level `terminationGracePeriodSeconds` applies to kills by that probe.
fn probe_grace(plan: &ContainerPlan, reason: &str) -> Option<Duration> {
    let p = if reason.starts_with("startup") {
        plan.spec.startup_probe.as_ref()
    } else {
        plan.spec.liveness_probe.as_ref()
    }?;
    p.termination_grace_period_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

/// Kubernetes' order: preStop (within the grace period), SIGTERM to the
/// group, wait until the group is empty or the deadline passes, SIGKILL the
/// whole group.
async fn terminate(
    inner: &Arc<Inner>,
    cell: &PodCell,
    plan: &ContainerPlan,
    proc: &mut Proc,
    pgid: u32,
    deadline: Instant,
) {
    let name = &plan.spec.name;
    if let Some(h) = plan
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        match tokio::time::timeout_at(deadline.into(), probe::run_hook(h, &plan.target)).await {
            Ok(Ok(())) => tracing::debug!(container = %name, "preStop done"),
            Ok(Err(e)) => tracing::warn!(container = %name, error = %e, "preStop failed"),
            Err(_) => {
                tracing::warn!(container = %name, "preStop still running at the end of the grace period")
            }
        }
    }
    sys::signal_group(pgid, Signal::TERM);
    // Recorded after the signal: a crash in between means a second SIGTERM
    // from the next platform, never none.
    inner.update(cell, |p| {
        !std::mem::replace(&mut p.containers[plan.idx].term_sent, true)
    });
    let mut leader_done = false;
    loop {
        if leader_done && sys::group_members(pgid).is_empty() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let nap = (deadline - now).min(Duration::from_millis(100));
        tokio::select! {
            _ = proc.wait(), if !leader_done => leader_done = true,
            _ = tokio::time::sleep(nap) => {}
        }
    }
    tracing::info!(container = %name, pgid, "grace period over; SIGKILL to the process group");
    sys::signal_group(pgid, Signal::KILL);
    if !leader_done {
        let _ = tokio::time::timeout(Duration::from_secs(5), proc.wait()).await;
    }
}

/// Finishes the termination of one container of a pod that was terminating
/// when the previous platform instance died (see `persist::adopt`): the
/// preStop hook is not run again, SIGTERM is sent only if the previous
/// instance had not sent it yet, and the group is SIGKILLed at `deadline`
/// (the persisted start of the termination plus its grace period) unless it
/// is empty before.
pub(crate) async fn finish_adopted_termination(
    inner: Arc<Inner>,
    cell: Arc<PodCell>,
    idx: usize,
    pgid: u32,
    deadline: Instant,
) {
    let (pod, container, term_sent) = {
        let p = crate::lock(&cell);
        let c = &p.containers[idx];
        (p.name.clone(), c.name.clone(), c.term_sent)
    };
    if !term_sent && Instant::now() < deadline {
        // The previous instance died before (or while) running preStop.
        tracing::info!(%pod, %container, pgid, "SIGTERM to the process group (termination resumed)");
        sys::signal_group(pgid, Signal::TERM);
        inner.update(&cell, |p| {
            !std::mem::replace(&mut p.containers[idx].term_sent, true)
        });
    }
    loop {
        if sys::group_members(pgid).is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::info!(%pod, %container, pgid, "grace period over; SIGKILL to the process group");
            sys::signal_group(pgid, Signal::KILL);
            let until = Instant::now() + Duration::from_secs(5);
            while !sys::group_members(pgid).is_empty() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
    }
    if let Some(cg) = Cgroup::open(&pod, &container) {
        cg.remove();
    }
    inner.update(&cell, |p| set_terminated(&mut p.containers[idx]));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Readiness,
    Liveness,
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    kind: Kind,
    probe: Probe,
    inner: Arc<Inner>,
    cell: Arc<PodCell>,
    plan: Arc<ContainerPlan>,
    container_start: Instant,
    mut started_rx: watch::Receiver<bool>,
    started_tx: Arc<watch::Sender<bool>>,
    kill_tx: mpsc::Sender<String>,
) {
    let idx = plan.idx;
    let delay = Duration::from_secs(probe.initial_delay_seconds.max(0) as u64);
    tokio::time::sleep_until((container_start + delay).into()).await;
    // startupProbe gates the others.
    if kind != Kind::Startup && started_rx.wait_for(|s| *s).await.is_err() {
        return;
    }
    let period = Duration::from_secs(probe.period_seconds.max(1) as u64);
    let success_threshold = if kind == Kind::Readiness {
        probe.success_threshold.max(1) as u32
    } else {
        1
    };
    let failure_threshold = probe.failure_threshold.max(1) as u32;
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let last_error = match probe::run_probe(&probe, &plan.target).await {
            Ok(()) => {
                successes = successes.saturating_add(1);
                failures = 0;
                None
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                successes = 0;
                tracing::debug!(container = %plan.spec.name, ?kind, error = %e, failures, "probe failed");
                Some(e)
            }
        };
        match kind {
            Kind::Startup if successes >= 1 => {
                inner.update(&cell, |p| {
                    p.containers[idx].started = true;
                    true
                });
                let _ = started_tx.send(true);
                return;
            }
            Kind::Readiness if successes >= success_threshold => {
                inner.update(&cell, |p| {
                    !std::mem::replace(&mut p.containers[idx].ready, true)
                });
            }
            Kind::Readiness if failures >= failure_threshold => {
                inner.update(&cell, |p| {
                    std::mem::replace(&mut p.containers[idx].ready, false)
                });
            }
            Kind::Startup | Kind::Liveness if failures >= failure_threshold => {
                let what = if kind == Kind::Startup {
                    "startup"
                } else {
                    "liveness"
                };
                let msg = format!(
                    "{what} probe failed {failures} times: {}; container will be restarted",
                    last_error.unwrap_or_default()
                );
                let _ = kill_tx.send(msg).await;
                return;
            }
            _ => {}
        }
    }
}
