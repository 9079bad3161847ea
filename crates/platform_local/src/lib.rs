//! `serin-platform-local`: Serin's embedded platform. Each container of each
//! replica runs as a supervised local process group on this machine.
//!
//! - [`ImageMap`]: `images:` from serin.yaml — image name → command line.
//! - [`LocalPlatform`]: `scale` / `observe` / `changes` for the control plane;
//!   probes, restarts with backoff, Kubernetes-order termination, memory
//!   limits (RSS watch), size-rotated logs, and re-adoption of running
//!   replicas from a JSON state file after a control-plane restart.
//!
//! Linux only (`/proc`, process groups).

mod cgroup;
mod env;
mod image;
mod persist;
mod probe;
mod supervise;
mod sys;
mod table;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serin_spec::PodTemplateSpec;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use image::{ImageCommand, ImageMap, ImageRef};
pub use sys::{free_port, kill_groups_now};
pub use table::{format_age, pods_table};

pub use env::{DEFAULT_PATH, pods_dir_beside};
use probe::{PortMapping, Target};
use supervise::{Adopt, ContainerPlan, ContainerShared, PodShared};

/// Errors from the local platform.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The image has no `images:` entry and the container sets no `command`.
    #[error(
        "container {container:?}: image {image:?} has no entry in `images:` (and the container sets no command)"
    )]
    ImageNotMapped {
        /// Container name.
        container: String,
        /// Image as written.
        image: String,
    },
    /// `mappedImagesOnly` is in force and the container sets its own
    /// `command:` or uses an image without an `images:` entry.
    #[error("container {container:?}: {reason} (serin.yaml mappedImagesOnly is in force)")]
    CommandNotAllowed {
        /// Container name.
        container: String,
        /// What it asked for.
        reason: String,
    },
    /// Neither the image map nor the container gives a program to run.
    #[error("container {container:?}: the resolved command is empty")]
    EmptyCommand {
        /// Container name.
        container: String,
    },
    /// The pod template has no containers.
    #[error("the pod template has no containers")]
    NoContainers,
    /// A feature the local platform cannot honour.
    #[error("container {container:?}: {what} is not supported by the local platform")]
    Unsupported {
        /// Container name.
        container: String,
        /// What is unsupported.
        what: String,
    },
    /// `resources.limits.memory` does not parse.
    #[error("container {container:?}: invalid memory limit {value:?}: {reason}")]
    BadMemoryLimit {
        /// Container name.
        container: String,
        /// Quantity as written.
        value: String,
        /// Parser message.
        reason: String,
    },
    /// The state file exists but cannot be read; it is left untouched.
    #[error("state file {path}: {reason}")]
    State {
        /// Path of the state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// File system or socket error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Path concerned.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `scale` after `shutdown`.
    #[error("the local platform has been shut down")]
    ShutDown,
}

/// Tunables; defaults are Kubernetes' values.
#[derive(Clone, Debug)]
pub struct Options {
    /// First restart delay (Kubernetes: 10s); doubles per restart.
    pub backoff_base: Duration,
    /// Restart delay cap (Kubernetes: 300s).
    pub backoff_max: Duration,
    /// A container that ran this long restarts with the base delay again (Kubernetes: 10 min).
    pub backoff_reset_after: Duration,
    /// How often memory use and log sizes are checked.
    pub watch_interval: Duration,
    /// Rotate a log file above this size.
    pub log_max_bytes: u64,
    /// Rotated generations kept (`x.log.1` … `x.log.N`).
    pub log_files: u32,
    /// Where replicas get their working directories (`PODS_DIR/POD/CONTAINER`).
    /// Default `STATE_DIR/pods`; `serin up` puts it outside the state dir, so
    /// that a replica's working directory is not beside the control plane's
    /// secrets (see [`pods_dir_beside`]).
    pub pods_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            backoff_reset_after: Duration::from_secs(600),
            watch_interval: Duration::from_millis(500),
            log_max_bytes: 10 * 1024 * 1024,
            log_files: 3,
            pods_dir: None,
        }
    }
}

/// Replicas of one revision (pod-template hash) of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionState {
    /// Pod-template hash.
    pub hash: String,
    /// Replicas last asked for by `scale`.
    pub desired: u32,
    /// Current pods, oldest first (terminating ones included).
    pub pods: Vec<PodState>,
}

/// One replica, as `kubectl get pods` would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// `{rollout}-{hash}-{5 chars}`.
    pub name: String,
    /// 127.0.0.1:PORT of the primary container (first containerPort of the first container).
    pub addr: SocketAddr,
    /// Passes readiness (and startup) in every container and is not terminating.
    pub ready: bool,
    /// Ready for at least the rollout's minReadySeconds.
    pub available: bool,
    /// Being removed; already out of endpoints.
    pub terminating: bool,
    /// When termination began (Kubernetes' deletionTimestamp).
    pub terminating_since: Option<SystemTime>,
    /// Running | ContainerCreating | CrashLoopBackOff | OOMKilled | Terminating | Error | Completed.
    pub status: String,
    /// Restarts summed over containers.
    pub restarts: u32,
    /// Reason of the last termination of any container (`OOMKilled`, `Error`, `Completed`).
    pub last_reason: Option<String>,
    /// Detail of the last termination (exit status, failing probe, memory use).
    pub last_message: Option<String>,
    /// Pod creation time (AGE).
    pub started_at: SystemTime,
    /// Pids (= process-group ids) of the running containers.
    pub pids: Vec<u32>,
    /// Containers passing readiness (READY's numerator).
    pub ready_containers: u32,
    /// Containers in the pod (READY's denominator).
    pub containers: u32,
    /// A restart replacement: the pod it replaces, until that one is retired.
    pub replaces: Option<String>,
}

pub(crate) type PodCell = Mutex<PodShared>;

/// Locks, recovering from poisoning (a panicked holder leaves plain data).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct PodHandle {
    pub cell: Arc<PodCell>,
    pub stop: watch::Sender<Option<Instant>>,
    pub task: Option<JoinHandle<()>>,
    pub grace: Duration,
}

pub(crate) struct RevisionEntry {
    pub desired: u32,
    pub template: Arc<PodTemplateSpec>,
    pub pods: Vec<PodHandle>,
}

#[derive(Default)]
pub(crate) struct RolloutEntry {
    pub min_ready: Duration,
    pub revisions: BTreeMap<String, RevisionEntry>,
}

pub(crate) struct Inner {
    pub state_dir: PathBuf,
    pub images: ImageMap,
    pub opts: Options,
    pub registry: Mutex<BTreeMap<String, RolloutEntry>>,
    pub changes: watch::Sender<u64>,
    pub closed: AtomicBool,
    pub persist_lock: Mutex<()>,
}

/// The local-process platform. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct LocalPlatform {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPlatform")
            .field("state_dir", &self.inner.state_dir)
            .finish_non_exhaustive()
    }
}

impl LocalPlatform {
    /// Starts with default [`Options`]; see [`LocalPlatform::start_with`].
    pub async fn start(state_dir: PathBuf, images: ImageMap) -> Result<Self, PlatformError> {
        Self::start_with(state_dir, images, Options::default()).await
    }

    /// Opens `state_dir` and re-adopts every recorded replica whose processes
    /// are still alive (same pid and same /proc start time): they keep
    /// running, keep their readiness and are probed again. Replicas whose
    /// processes are gone are reported as `Error` (last reason `ProcessGone`)
    /// and replaced by the next `scale`.
    pub async fn start_with(
        state_dir: PathBuf,
        images: ImageMap,
        opts: Options,
    ) -> Result<Self, PlatformError> {
        std::fs::create_dir_all(&state_dir).map_err(|source| PlatformError::Io {
            what: "creating state directory",
            path: state_dir.clone(),
            source,
        })?;
        let saved = persist::load(&state_dir)?;
        let (changes, _) = watch::channel(0u64);
        let inner = Arc::new(Inner {
            state_dir,
            images,
            opts,
            registry: Mutex::new(BTreeMap::new()),
            changes,
            closed: AtomicBool::new(false),
            persist_lock: Mutex::new(()),
        });
        if let Some(saved) = saved {
            persist::adopt(&inner, saved);
        }
        inner.bump();
        Ok(LocalPlatform { inner })
    }

    /// Sets the rollout's `minReadySeconds` (used for [`PodState::available`]).
    pub fn set_min_ready_seconds(&self, rollout: &str, seconds: u32) {
        lock(&self.inner.registry)
            .entry(rollout.to_string())
            .or_default()
            .min_ready = Duration::from_secs(seconds.into());
        self.inner.bump();
    }

    /// Makes `revision` of `rollout` have `replicas` live (non-terminating)
    /// pods. Idempotent; returns once new pods are launched and removed pods
    /// are out of endpoints — starting, probing and termination continue in
    /// background tasks. Scale-down removes unready pods first, then the
    /// newest. Errors (unmapped image, bad limit, unsupported probe) are
    /// reported before anything changes.
    pub async fn scale(
        &self,
        rollout: &str,
        revision: &str,
        template: &PodTemplateSpec,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(PlatformError::ShutDown);
        }
        validate(&self.inner, rollout, revision, template)?;
        let template = Arc::new(template.clone());
        {
            let mut reg = lock(&self.inner.registry);
            // Ports of every pod we run: a released port may be handed out again.
            let mut used = used_ports(&reg);
            let ro = reg.entry(rollout.to_string()).or_default();
            let rev = ro
                .revisions
                .entry(revision.to_string())
                .or_insert_with(|| RevisionEntry {
                    desired: 0,
                    template: template.clone(),
                    pods: Vec::new(),
                });
            rev.desired = replicas;
            rev.template = template.clone();
            // Pods lost while the control plane was down are dropped and replaced.
            rev.pods.retain(|h| !lock(&h.cell).lost);
            // An old pod and its restart replacement are one replica.
            let live = slots(&rev.pods);
            let want = replicas as usize;
            if live.len() < want {
                for _ in live.len()..want {
                    let existing: Vec<String> = rev
                        .pods
                        .iter()
                        .map(|h| lock(&h.cell).name.clone())
                        .collect();
                    let handle = create_pod(
                        &self.inner,
                        rollout,
                        revision,
                        &template,
                        &existing,
                        &mut used,
                    )?;
                    rev.pods.push(handle);
                }
            } else if live.len() > want {
                let mut victims: Vec<(bool, SystemTime, usize)> = live
                    .iter()
                    .map(|&(i, surge)| {
                        let ready = lock(&rev.pods[i].cell).is_ready()
                            || surge.is_some_and(|j| lock(&rev.pods[j].cell).is_ready());
                        (ready, lock(&rev.pods[i].cell).created_at, i)
                    })
                    .collect();
                // Unready first, then newest first.
                victims.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                for &(_, _, i) in victims.iter().take(live.len() - want) {
                    begin_termination(&rev.pods[i]);
                    // Its replacement goes with it: the slot is removed.
                    if let Some(&(_, Some(j))) = live.iter().find(|(k, _)| *k == i) {
                        begin_termination(&rev.pods[j]);
                    }
                }
            }
            if rev.desired == 0 && rev.pods.is_empty() {
                ro.revisions.remove(revision);
            }
        }
        self.inner.bump();
        Ok(())
    }

    /// Replaces the live pods of `revision` created before `created_before`,
    /// surge first: for up to `max_in_flight` old pods at a time a
    /// replacement is started beside the old pod, and the old pod begins
    /// termination (Kubernetes order: out of endpoints, preStop, SIGTERM)
    /// only once its replacement is available. Idempotent and meant to be
    /// called on every reconcile until no old pod is left: each call retires
    /// what is ready and tops up the replacements in flight. A replacement
    /// that is terminated (scaled away, failed) simply frees its old pod to
    /// be replaced again; [`LocalPlatform::scale`] counts an old pod and its
    /// replacement as one replica.
    pub async fn restart_pods(
        &self,
        rollout: &str,
        revision: &str,
        created_before: SystemTime,
        max_in_flight: u32,
    ) -> Result<(), PlatformError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(PlatformError::ShutDown);
        }
        let changed = {
            let mut reg = lock(&self.inner.registry);
            let mut used = used_ports(&reg);
            let Some(ro) = reg.get_mut(rollout) else {
                return Ok(());
            };
            let min_ready = ro.min_ready;
            let Some(rev) = ro.revisions.get_mut(revision) else {
                return Ok(());
            };
            let mut changed = false;
            // Retire the old pods whose replacement is available.
            for (i, surge) in slots(&rev.pods) {
                let Some(j) = surge else { continue };
                let available = {
                    let p = lock(&rev.pods[j].cell);
                    p.is_ready() && p.ready_since.is_some_and(|t| t.elapsed() >= min_ready)
                };
                if available {
                    let (old, new) = (
                        lock(&rev.pods[i].cell).name.clone(),
                        lock(&rev.pods[j].cell).name.clone(),
                    );
                    tracing::info!(rollout, revision, old = %old, new = %new, "restart: replacement available, retiring the old pod");
                    begin_termination(&rev.pods[i]);
                    lock(&rev.pods[j].cell).replaces = None;
                    changed = true;
                }
            }
            // Top up the replacements in flight.
            let live = slots(&rev.pods);
            let in_flight = live.iter().filter(|(_, s)| s.is_some()).count();
            let mut todo: Vec<(SystemTime, usize)> = live
                .iter()
                .filter(|(_, surge)| surge.is_none())
                .map(|&(i, _)| (lock(&rev.pods[i].cell).created_at, i))
                .filter(|(created, _)| *created < created_before)
                .collect();
            todo.sort();
            let room = (max_in_flight.max(1) as usize).saturating_sub(in_flight);
            let template = rev.template.clone();
            for &(_, i) in todo.iter().take(room) {
                let old = lock(&rev.pods[i].cell).name.clone();
                let existing: Vec<String> = rev
                    .pods
                    .iter()
                    .map(|h| lock(&h.cell).name.clone())
                    .collect();
                let handle = create_pod(
                    &self.inner,
                    rollout,
                    revision,
                    &template,
                    &existing,
                    &mut used,
                )?;
                let new = {
                    let mut p = lock(&handle.cell);
                    p.replaces = Some(old.clone());
                    p.name.clone()
                };
                tracing::info!(rollout, revision, old = %old, new = %new, "restart: replacement started");
                rev.pods.push(handle);
                changed = true;
            }
            changed
        };
        if changed {
            self.inner.bump();
        }
        Ok(())
    }

    /// Current revisions and pods of a rollout (revisions by hash, pods oldest first).
    pub fn observe(&self, rollout: &str) -> Vec<RevisionState> {
        let reg = lock(&self.inner.registry);
        let Some(ro) = reg.get(rollout) else {
            return Vec::new();
        };
        ro.revisions
            .iter()
            .map(|(hash, rev)| {
                let mut pods: Vec<PodState> = rev
                    .pods
                    .iter()
                    .map(|h| pod_state(&lock(&h.cell), ro.min_ready))
                    .collect();
                pods.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.name.cmp(&b.name)));
                RevisionState {
                    hash: hash.clone(),
                    desired: rev.desired,
                    pods,
                }
            })
            .collect()
    }

    /// Rollouts that have revisions on this platform.
    pub fn rollouts(&self) -> Vec<String> {
        lock(&self.inner.registry).keys().cloned().collect()
    }

    /// A counter that increases whenever anything observable changes (pod
    /// created or removed, ready flip, exit, restart, availability reached).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Log file of a pod's primary container (stdout and stderr together;
    /// rotated copies are `PATH.1` … `PATH.N`). Also works after the pod is gone.
    pub fn log_path(&self, rollout: &str, pod: &str) -> Option<PathBuf> {
        {
            let reg = lock(&self.inner.registry);
            let found = reg.get(rollout).and_then(|ro| {
                ro.revisions.values().find_map(|rev| {
                    rev.pods.iter().find_map(|h| {
                        let p = lock(&h.cell);
                        (p.name == pod).then(|| p.containers.first().map(|c| c.log.clone()))?
                    })
                })
            });
            if found.is_some() {
                return found;
            }
        }
        let dir = self.inner.state_dir.join("logs").join(rollout).join(pod);
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        logs.into_iter().next()
    }

    /// Log file of one container of a pod.
    pub fn container_log_path(&self, rollout: &str, pod: &str, container: &str) -> PathBuf {
        log_file(&self.inner.state_dir, rollout, pod, container)
    }

    /// SIGKILLs every process group this platform knows about, at once and
    /// synchronously. For emergencies and test cleanup; prefer `shutdown(true)`.
    pub fn kill_all_now(&self) {
        let reg = lock(&self.inner.registry);
        for ro in reg.values() {
            for rev in ro.revisions.values() {
                for h in &rev.pods {
                    let pids: Vec<u32> = lock(&h.cell)
                        .containers
                        .iter()
                        .filter_map(|c| c.pid)
                        .collect();
                    kill_groups_now(&pids);
                }
            }
        }
    }

    /// Stops supervising. `terminate_replicas = true` runs every pod through
    /// the termination sequence and waits for it; `false` leaves processes
    /// running and the state file current, for re-adoption by the next `start`.
    pub async fn shutdown(&self, terminate_replicas: bool) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let tasks: Vec<JoinHandle<()>> = {
            let mut reg = lock(&self.inner.registry);
            let mut tasks = Vec::new();
            for ro in reg.values_mut() {
                for rev in ro.revisions.values_mut() {
                    for h in rev.pods.iter_mut() {
                        if terminate_replicas {
                            begin_termination(h);
                        }
                        tasks.extend(h.task.take());
                    }
                }
            }
            tasks
        };
        if terminate_replicas {
            self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
            for t in tasks {
                let _ = t.await;
            }
            persist::save(&self.inner);
        } else {
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
            persist::save(&self.inner);
        }
    }

    /// The `images:` map (and its `mappedImagesOnly` policy) in force.
    pub fn images(&self) -> &ImageMap {
        &self.inner.images
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }
}

impl Inner {
    /// Where replicas' working directories live.
    pub(crate) fn pods_dir(&self) -> PathBuf {
        self.opts
            .pods_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("pods"))
    }

    /// Applies a change to a pod; bumps `changes` (and persists) when it
    /// reports a change or the pod's readiness flipped.
    pub(crate) fn update(self: &Arc<Self>, cell: &PodCell, f: impl FnOnce(&mut PodShared) -> bool) {
        let (changed, became_ready, name) = {
            let mut p = lock(cell);
            let was = p.is_ready();
            let changed = f(&mut p);
            let now = p.is_ready();
            if was != now {
                p.ready_since = now.then(Instant::now);
            }
            (changed || was != now, now && !was, p.name.clone())
        };
        if became_ready {
            self.schedule_available(&name);
        }
        if changed {
            self.bump();
        }
    }

    /// Availability flips by time alone; bump when minReadySeconds has passed.
    fn schedule_available(self: &Arc<Self>, pod: &str) {
        let min_ready = {
            let reg = lock(&self.registry);
            reg.iter()
                .find(|(_, ro)| {
                    ro.revisions
                        .values()
                        .any(|rev| rev.pods.iter().any(|h| lock(&h.cell).name == pod))
                })
                .map(|(_, ro)| ro.min_ready)
        };
        if let Some(d) = min_ready.filter(|d| !d.is_zero()) {
            let inner = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(inner) = inner.upgrade() {
                    inner.changes.send_modify(|v| *v = v.wrapping_add(1));
                }
            });
        }
    }

    /// Persists the state file and wakes `changes()` watchers.
    pub(crate) fn bump(&self) {
        if !self.closed.load(Ordering::SeqCst) {
            persist::save(self);
        }
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Called by a pod's task once all its containers are gone.
    pub(crate) fn remove_pod(&self, rollout: &str, revision: &str, pod: &str) {
        {
            let mut reg = lock(&self.registry);
            if let Some(ro) = reg.get_mut(rollout)
                && let Some(rev) = ro.revisions.get_mut(revision)
            {
                rev.pods.retain(|h| lock(&h.cell).name != pod);
                if rev.pods.is_empty() && rev.desired == 0 {
                    ro.revisions.remove(revision);
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.pods_dir().join(pod));
        tracing::info!(rollout, revision, pod, "pod removed");
        self.bump();
    }
}

/// Host ports of every pod we run: a released port may be handed out again.
fn used_ports(reg: &BTreeMap<String, RolloutEntry>) -> std::collections::HashSet<u16> {
    reg.values()
        .flat_map(|ro| ro.revisions.values())
        .flat_map(|rev| &rev.pods)
        .flat_map(|h| {
            let p = lock(&h.cell);
            p.containers
                .iter()
                .flat_map(|c| c.ports.iter().map(|m| m.host))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The live (non-terminating) replicas of a revision: each old pod with the
/// index of its restart replacement, if one is running. How pods make
/// replicas is the driver's one definition ([`serin_driver::replica_slots`]),
/// so the engine's count and this platform's scaling always agree.
fn slots(pods: &[PodHandle]) -> Vec<(usize, Option<usize>)> {
    let info: Vec<(String, bool, Option<String>)> = pods
        .iter()
        .map(|h| {
            let p = lock(&h.cell);
            let live = p.terminating_since.is_none() && !p.lost;
            (p.name.clone(), live, p.replaces.clone())
        })
        .collect();
    let views: Vec<serin_driver::PodView<&str>> = info
        .iter()
        .map(|(name, live, replaces)| serin_driver::PodView {
            id: name.as_str(),
            replaces: replaces.as_deref(),
            // Readiness plays no part in which pods make a slot.
            ready: false,
            available: false,
            terminating: !live,
            created: 0,
        })
        .collect();
    serin_driver::replica_slots(&views)
        .into_iter()
        .map(|s| (s.pod, s.replacement))
        .collect()
}

fn begin_termination(h: &PodHandle) {
    let deadline = Instant::now() + h.grace;
    {
        let mut p = lock(&h.cell);
        if p.terminating_since.is_some() {
            return;
        }
        // Out of endpoints first: observers see terminating + not ready
        // before any preStop hook or signal.
        p.terminating_since = Some(SystemTime::now());
        p.termination_grace = Some(h.grace);
        p.ready_since = None;
    }
    let _ = h.stop.send(Some(deadline));
}

fn pod_state(p: &PodShared, min_ready: Duration) -> PodState {
    let ready = p.is_ready();
    let last = p
        .containers
        .iter()
        .filter(|c| c.last_reason.is_some())
        .max_by_key(|c| c.restarts);
    PodState {
        name: p.name.clone(),
        addr: p.addr,
        ready,
        available: ready && p.ready_since.is_some_and(|t| t.elapsed() >= min_ready),
        terminating: p.terminating_since.is_some(),
        terminating_since: p.terminating_since,
        status: p.status(),
        restarts: p.containers.iter().map(|c| c.restarts).sum(),
        last_reason: last.and_then(|c| c.last_reason.clone()),
        last_message: last.and_then(|c| c.last_message.clone()),
        started_at: p.created_at,
        pids: p.containers.iter().filter_map(|c| c.pid).collect(),
        ready_containers: p
            .containers
            .iter()
            .filter(|c| c.pid.is_some() && c.started && c.ready)
            .count() as u32,
        containers: p.containers.len() as u32,
        replaces: p.replaces.clone(),
    }
}

pub(crate) fn log_file(state_dir: &Path, rollout: &str, pod: &str, container: &str) -> PathBuf {
    state_dir
        .join("logs")
        .join(rollout)
        .join(pod)
        .join(format!("{container}.log"))
}

/// Rejects what cannot run before anything changes.
fn validate(
    inner: &Inner,
    rollout: &str,
    revision: &str,
    t: &PodTemplateSpec,
) -> Result<(), PlatformError> {
    if t.spec.containers.is_empty() {
        return Err(PlatformError::NoContainers);
    }
    if !t.spec.init_containers.is_empty() {
        tracing::warn!(
            rollout,
            revision,
            "initContainers are not run by the local platform"
        );
    }
    for c in &t.spec.containers {
        for p in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
            .into_iter()
            .flatten()
        {
            if p.grpc.is_some() {
                return Err(unsupported(c, "a grpc probe"));
            }
        }
        let hooks = c
            .lifecycle
            .as_ref()
            .into_iter()
            .flat_map(|l| [&l.pre_stop, &l.post_start])
            .flatten()
            .filter_map(|h| h.http_get.as_ref());
        let probes = [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
            .into_iter()
            .flatten()
            .filter_map(|p| p.http_get.as_ref());
        // Kubernetes allows HTTP and HTTPS (the kubelet lower-cases it).
        for h in probes.chain(hooks) {
            if let Some(s) = h.scheme.as_deref()
                && !s.eq_ignore_ascii_case("http")
                && !s.eq_ignore_ascii_case("https")
            {
                return Err(unsupported(
                    c,
                    &format!("httpGet scheme {s:?} (Kubernetes allows HTTP or HTTPS)"),
                ));
            }
        }
    }
    let ports: Vec<Vec<PortMapping>> = t
        .spec
        .containers
        .iter()
        .map(|_| {
            vec![PortMapping {
                container_port: None,
                name: None,
                host: 1,
            }]
        })
        .collect();
    build_plans(inner, rollout, revision, t, "validate", &ports).map(drop)
}

fn unsupported(c: &serin_spec::Container, what: &str) -> PlatformError {
    PlatformError::Unsupported {
        container: c.name.clone(),
        what: what.to_string(),
    }
}

/// Kubernetes-style random suffix from a per-process counter and the clock.
fn pod_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::process::id()) << 32;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (0..5)
        .map(|i| ALPHABET[((x >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn create_pod(
    inner: &Arc<Inner>,
    rollout: &str,
    revision: &str,
    template: &Arc<PodTemplateSpec>,
    existing: &[String],
    used: &mut std::collections::HashSet<u16>,
) -> Result<PodHandle, PlatformError> {
    let name = loop {
        let n = format!("{rollout}-{revision}-{}", pod_suffix());
        if !existing.contains(&n) {
            break n;
        }
    };
    let mut port = || -> Result<u16, PlatformError> {
        loop {
            let p = free_port().map_err(|source| PlatformError::Io {
                what: "allocating a port on",
                path: PathBuf::from("127.0.0.1:0"),
                source,
            })?;
            if used.insert(p) {
                return Ok(p);
            }
        }
    };
    let mut ports = Vec::new();
    for c in &template.spec.containers {
        let mut v = Vec::new();
        if c.ports.is_empty() {
            v.push(PortMapping {
                container_port: None,
                name: None,
                host: port()?,
            });
        }
        for p in &c.ports {
            v.push(PortMapping {
                container_port: Some(p.container_port),
                name: p.name.clone(),
                host: port()?,
            });
        }
        ports.push(v);
    }
    let now = SystemTime::now();
    let shared = PodShared {
        name: name.clone(),
        addr: primary_addr(&ports),
        created_at: now,
        terminating_since: None,
        termination_grace: None,
        lost: false,
        ready_since: None,
        replaces: None,
        containers: template
            .spec
            .containers
            .iter()
            .zip(&ports)
            .map(|(c, p)| ContainerShared {
                name: c.name.clone(),
                ports: p.clone(),
                log: log_file(&inner.state_dir, rollout, &name, &c.name),
                pid: None,
                start_ticks: None,
                started_at: now,
                status: "ContainerCreating",
                restarts: 0,
                last_reason: None,
                last_message: None,
                started: false,
                ready: false,
                term_sent: false,
            })
            .collect(),
    };
    let adopts = vec![None; ports.len()];
    spawn_pod(inner, rollout, revision, template, shared, adopts)
}

pub(crate) fn primary_addr(ports: &[Vec<PortMapping>]) -> SocketAddr {
    let port = ports.first().and_then(|v| v.first()).map_or(0, |m| m.host);
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Starts the pod's task (one supervisor per container).
pub(crate) fn spawn_pod(
    inner: &Arc<Inner>,
    rollout: &str,
    revision: &str,
    template: &PodTemplateSpec,
    shared: PodShared,
    adopts: Vec<Option<Adopt>>,
) -> Result<PodHandle, PlatformError> {
    let ports: Vec<Vec<PortMapping>> = shared.containers.iter().map(|c| c.ports.clone()).collect();
    let plans = build_plans(inner, rollout, revision, template, &shared.name, &ports)?;
    let grace = Duration::from_secs(template.spec.termination_grace_period_seconds.max(0) as u64);
    let name = shared.name.clone();
    let cell = Arc::new(Mutex::new(shared));
    let (stop, stop_rx) = watch::channel(None);
    let task = tokio::spawn({
        let inner = inner.clone();
        let cell = cell.clone();
        let (rollout, revision) = (rollout.to_string(), revision.to_string());
        async move {
            let mut set = tokio::task::JoinSet::new();
            for (plan, adopt) in plans.into_iter().zip(adopts) {
                set.spawn(supervise::supervise_container(
                    inner.clone(),
                    cell.clone(),
                    Arc::new(plan),
                    stop_rx.clone(),
                    adopt,
                ));
            }
            while set.join_next().await.is_some() {}
            inner.remove_pod(&rollout, &revision, &name);
        }
    });
    Ok(PodHandle {
        cell,
        stop,
        task: Some(task),
        grace,
    })
}

/// Command line, environment, directories and limits of every container.
pub(crate) fn build_plans(
    inner: &Inner,
    rollout: &str,
    revision: &str,
    t: &PodTemplateSpec,
    pod: &str,
    ports: &[Vec<PortMapping>],
) -> Result<Vec<ContainerPlan>, PlatformError> {
    let pod_dir = inner.pods_dir().join(pod);
    let all_ports: Vec<PortMapping> = ports.iter().flatten().cloned().collect();
    let grace = Duration::from_secs(t.spec.termination_grace_period_seconds.max(0) as u64);
    let mut plans = Vec::new();
    for (idx, c) in t.spec.containers.iter().enumerate() {
        let own = ports.get(idx).map(Vec::as_slice).unwrap_or_default();
        let own_port = own.first().map_or(0, |m| m.host);
        let image = c.image.clone().unwrap_or_default();
        let tag = ImageRef::parse(&image).tag;
        let vars = image::Vars {
            image: &image,
            tag: &tag,
            port: own_port,
            pod,
        };
        let launch = inner.images.resolve(c, &vars)?;
        let own_dir = pod_dir.join(&c.name);
        let mut env = launch.env;
        if env.iter().any(|(k, _)| k == "PORT") {
            tracing::debug!(container = %c.name, "PORT from the manifest is replaced by the replica's own port");
        }
        env.retain(|(k, _)| k != "PORT");
        env.push(("PORT".into(), own_port.to_string()));
        for m in &all_ports {
            if let Some(cp) = m.container_port {
                env.push((format!("SERIN_PORT_{cp}"), m.host.to_string()));
            }
        }
        env.push(("POD_NAME".into(), pod.to_string()));
        env.push(("HOSTNAME".into(), pod.to_string()));
        env.push(("SERIN_ROLLOUT".into(), rollout.to_string()));
        env.push(("SERIN_REVISION".into(), revision.to_string()));
        env.push(("SERIN_POD_DIR".into(), own_dir.display().to_string()));
        let env = env::clean(env, &own_dir);
        let memory_limit = match c.resources.as_ref().and_then(|r| r.limits.get("memory")) {
            Some(q) => Some(q.to_bytes().map_err(|e| PlatformError::BadMemoryLimit {
                container: c.name.clone(),
                value: q.0.clone(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        plans.push(ContainerPlan {
            idx,
            spec: c.clone(),
            argv: launch.argv,
            target: Target {
                pod_ports: all_ports.clone(),
                own_port,
                own_undeclared: own.first().is_none_or(|m| m.container_port.is_none()),
                env,
                cwd: launch.cwd.unwrap_or(own_dir),
            },
            log: log_file(&inner.state_dir, rollout, pod, &c.name),
            grace,
            memory_limit,
        });
    }
    Ok(plans)
}
