//! The state file: enough to re-adopt running replicas after a restart.
//! Written atomically (temp file + rename) on every observable change.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serin_spec::PodTemplateSpec;

use crate::probe::PortMapping;
use crate::supervise::{Adopt, ContainerShared, PodShared};
use crate::{Inner, PlatformError, RevisionEntry, RolloutEntry, lock, log_file, sys};

const FILE: &str = "state.json";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Saved {
    version: u32,
    rollouts: BTreeMap<String, SavedRollout>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRollout {
    min_ready_seconds: u64,
    revisions: BTreeMap<String, SavedRevision>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRevision {
    desired: u32,
    template: PodTemplateSpec,
    pods: Vec<SavedPod>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedPod {
    name: String,
    addr: SocketAddr,
    created_at: SystemTime,
    terminating: bool,
    /// When termination began (files from before this field: the restarted
    /// platform starts the countdown again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    terminating_since: Option<SystemTime>,
    /// Grace period of that termination, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    termination_grace_ms: Option<u64>,
    /// When the pod last became ready, so availability survives a restart.
    #[serde(default)]
    ready_since: Option<SystemTime>,
    containers: Vec<SavedContainer>,
    /// A restart replacement's old pod (see `PodShared::replaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaces: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedContainer {
    name: String,
    ports: Vec<PortMapping>,
    pid: Option<u32>,
    start_ticks: Option<u64>,
    started_at: SystemTime,
    restarts: u32,
    started: bool,
    ready: bool,
    /// SIGTERM already sent to the group (a terminating pod's container).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    sigterm_sent: bool,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the state file; a missing file is a fresh start, a broken one is an
/// error and is left untouched.
pub(crate) fn load(dir: &Path) -> Result<Option<Saved>, PlatformError> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PlatformError::Io {
                what: "reading",
                path: p,
                source,
            });
        }
    };
    let saved: Saved = serde_json::from_str(&text).map_err(|e| PlatformError::State {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    if saved.version != VERSION {
        return Err(PlatformError::State {
            path: p,
            reason: format!("version {} is not {VERSION}", saved.version),
        });
    }
    Ok(Some(saved))
}

fn snapshot(inner: &Inner) -> Saved {
    let reg = lock(&inner.registry);
    let rollouts = reg
        .iter()
        .map(|(name, ro)| {
            let revisions = ro
                .revisions
                .iter()
                .map(|(hash, rev)| {
                    let pods = rev
                        .pods
                        .iter()
                        .filter_map(|h| {
                            let p = lock(&h.cell);
                            (!p.lost).then(|| SavedPod {
                                name: p.name.clone(),
                                addr: p.addr,
                                created_at: p.created_at,
                                terminating: p.terminating_since.is_some(),
                                terminating_since: p.terminating_since,
                                termination_grace_ms: p
                                    .termination_grace
                                    .map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
                                ready_since: p
                                    .ready_since
                                    .and_then(|t| SystemTime::now().checked_sub(t.elapsed())),
                                replaces: p.replaces.clone(),
                                containers: p
                                    .containers
                                    .iter()
                                    .map(|c| SavedContainer {
                                        name: c.name.clone(),
                                        ports: c.ports.clone(),
                                        pid: c.pid,
                                        start_ticks: c.start_ticks,
                                        started_at: c.started_at,
                                        restarts: c.restarts,
                                        started: c.started,
                                        ready: c.ready,
                                        sigterm_sent: c.term_sent,
                                    })
                                    .collect(),
                            })
                        })
                        .collect();
                    let rev = SavedRevision {
                        desired: rev.desired,
                        template: (*rev.template).clone(),
                        pods,
                    };
                    (hash.clone(), rev)
                })
                .collect();
            let ro = SavedRollout {
                min_ready_seconds: ro.min_ready.as_secs(),
                revisions,
            };
            (name.clone(), ro)
        })
        .collect();
    Saved {
        version: VERSION,
        rollouts,
    }
}

/// Writes `bytes` to a new file readable by this user only (the state file
/// names every process and port).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a file it creates (a stale .tmp keeps its own).
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(bytes)
}

/// Writes the state file atomically; failures are logged (the processes keep running).
pub(crate) fn save(inner: &Inner) {
    let saved = snapshot(inner);
    let _guard = lock(&inner.persist_lock);
    let p = path(&inner.state_dir);
    let tmp = inner.state_dir.join(format!("{FILE}.tmp"));
    let result = serde_json::to_vec_pretty(&saved)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_private(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, &p));
    if let Err(e) = result {
        tracing::error!(path = %p.display(), error = %e, "writing the state file failed");
    }
}

/// Re-creates the registry from the state file, adopting live processes.
pub(crate) fn adopt(inner: &Arc<Inner>, saved: Saved) {
    // Held throughout: a pod task that ends at once (a terminating pod killed
    // at its deadline) must find its pod registered when it removes it.
    let mut registry = lock(&inner.registry);
    let mut entries: BTreeMap<String, RolloutEntry> = BTreeMap::new();
    for (rollout, ro) in saved.rollouts {
        let mut entry = RolloutEntry {
            min_ready: Duration::from_secs(ro.min_ready_seconds),
            revisions: BTreeMap::new(),
        };
        for (hash, rev) in ro.revisions {
            let template = Arc::new(rev.template);
            let mut handles = Vec::new();
            for pod in rev.pods {
                if pod.terminating {
                    if let Some(h) = adopt_terminating(inner, &rollout, &hash, &template, &pod) {
                        handles.push(h);
                    }
                    continue;
                }
                let alive: Vec<Option<Adopt>> = pod
                    .containers
                    .iter()
                    .map(|c| match (c.pid, c.start_ticks) {
                        (Some(pid), Some(t)) if sys::same_process_alive(pid, t) => Some(Adopt {
                            pid,
                            start_ticks: t,
                        }),
                        _ => None,
                    })
                    .collect();
                let all_alive = alive.len() == template.spec.containers.len()
                    && alive.iter().all(Option::is_some);
                let shared = PodShared {
                    name: pod.name.clone(),
                    addr: pod.addr,
                    created_at: pod.created_at,
                    terminating_since: None,
                    termination_grace: None,
                    lost: !all_alive,
                    ready_since: None,
                    replaces: pod.replaces.clone(),
                    containers: pod
                        .containers
                        .iter()
                        .map(|c| ContainerShared {
                            name: c.name.clone(),
                            ports: c.ports.clone(),
                            log: log_file(&inner.state_dir, &rollout, &pod.name, &c.name),
                            pid: all_alive.then_some(c.pid).flatten(),
                            start_ticks: all_alive.then_some(c.start_ticks).flatten(),
                            started_at: c.started_at,
                            status: if all_alive { "Running" } else { "Error" },
                            restarts: c.restarts,
                            last_reason: (!all_alive).then(|| "ProcessGone".to_string()),
                            last_message: (!all_alive).then(|| {
                                "the process was gone when the platform restarted".to_string()
                            }),
                            started: all_alive && c.started,
                            ready: all_alive && c.ready,
                            term_sent: false,
                        })
                        .collect(),
                };
                if !all_alive {
                    // A pod with some containers gone is broken: clear the rest.
                    let pids: Vec<u32> = alive.iter().flatten().map(|a| a.pid).collect();
                    sys::kill_groups_now(&pids);
                    tracing::warn!(rollout, pod = %pod.name, "recorded pod's processes are gone; it will be replaced");
                    let (stop, _) = tokio::sync::watch::channel(None);
                    handles.push(crate::PodHandle {
                        cell: Arc::new(std::sync::Mutex::new(shared)),
                        stop,
                        task: None,
                        grace: Duration::ZERO,
                    });
                    continue;
                }
                let was_ready = shared.is_ready();
                match crate::spawn_pod(inner, &rollout, &hash, &template, shared, alive) {
                    Ok(h) => {
                        if was_ready {
                            let now = std::time::Instant::now();
                            let age = pod
                                .ready_since
                                .and_then(|t| SystemTime::now().duration_since(t).ok())
                                .unwrap_or_default();
                            lock(&h.cell).ready_since = Some(now.checked_sub(age).unwrap_or(now));
                        }
                        tracing::info!(rollout, pod = %pod.name, "re-adopted running pod");
                        handles.push(h);
                    }
                    Err(e) => {
                        tracing::error!(rollout, pod = %pod.name, error = %e, "cannot re-adopt pod; leaving its processes alone");
                    }
                }
            }
            entry.revisions.insert(
                hash,
                RevisionEntry {
                    desired: rev.desired,
                    template,
                    pods: handles,
                },
            );
        }
        entries.insert(rollout, entry);
    }
    *registry = entries;
}

/// Re-adopts a pod that was terminating when the previous instance died, as
/// terminating: never back into endpoints or counted as live, its grace
/// countdown continuing from the persisted start (SIGKILL at since + grace,
/// at once if that has passed), preStop not run again. Containers whose
/// process groups are already empty count as terminated; when none is left
/// the pod is simply gone (None).
fn adopt_terminating(
    inner: &Arc<Inner>,
    rollout: &str,
    revision: &str,
    template: &PodTemplateSpec,
    pod: &SavedPod,
) -> Option<crate::PodHandle> {
    let grace = pod.termination_grace_ms.map_or_else(
        || Duration::from_secs(template.spec.termination_grace_period_seconds.max(0) as u64),
        Duration::from_millis,
    );
    let since = pod.terminating_since.unwrap_or_else(SystemTime::now);
    // A clock set back while we were down never extends the grace period.
    let remaining = (since + grace)
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(grace);
    let deadline = std::time::Instant::now() + remaining;
    // Each container's process group, if anything of it still runs. The
    // leader may be gone with children left in its group; a pid now held by
    // another process (other start time) is not ours.
    let groups: Vec<Option<u32>> = pod
        .containers
        .iter()
        .map(|c| {
            let pid = c.pid?;
            let ours = sys::stat(pid).is_none_or(|st| Some(st.start_ticks) == c.start_ticks);
            (ours && !sys::group_members(pid).is_empty()).then_some(pid)
        })
        .collect();
    if groups.iter().all(Option::is_none) {
        tracing::info!(rollout, pod = %pod.name, "terminating pod finished while the platform was down");
        let _ = std::fs::remove_dir_all(inner.pods_dir().join(&pod.name));
        return None;
    }
    let shared = PodShared {
        name: pod.name.clone(),
        addr: pod.addr,
        created_at: pod.created_at,
        terminating_since: Some(since),
        termination_grace: Some(grace),
        lost: false,
        ready_since: None,
        replaces: pod.replaces.clone(),
        containers: pod
            .containers
            .iter()
            .zip(&groups)
            .map(|(c, g)| ContainerShared {
                name: c.name.clone(),
                ports: c.ports.clone(),
                log: log_file(&inner.state_dir, rollout, &pod.name, &c.name),
                pid: *g,
                start_ticks: g.and(c.start_ticks),
                started_at: c.started_at,
                status: if g.is_some() { "Running" } else { "Terminated" },
                restarts: c.restarts,
                last_reason: None,
                last_message: None,
                started: g.is_some() && c.started,
                ready: false,
                term_sent: c.sigterm_sent,
            })
            .collect(),
    };
    tracing::info!(
        rollout,
        pod = %pod.name,
        remaining_ms = remaining.as_millis() as u64,
        "re-adopted terminating pod; its grace period continues"
    );
    let name = pod.name.clone();
    let cell = Arc::new(std::sync::Mutex::new(shared));
    let (stop, _) = tokio::sync::watch::channel(Some(deadline));
    let task = tokio::spawn({
        let inner = inner.clone();
        let cell = cell.clone();
        let (rollout, revision) = (rollout.to_string(), revision.to_string());
        async move {
            let mut set = tokio::task::JoinSet::new();
            for (idx, pgid) in groups.into_iter().enumerate() {
                if let Some(pgid) = pgid {
                    set.spawn(crate::supervise::finish_adopted_termination(
                        inner.clone(),
                        cell.clone(),
                        idx,
                        pgid,
                        deadline,
                    ));
                }
            }
            while set.join_next().await.is_some() {}
            inner.remove_pod(&rollout, &revision, &name);
        }
    });
    Some(crate::PodHandle {
        cell,
        stop,
        task: Some(task),
        grace,
    })
}
