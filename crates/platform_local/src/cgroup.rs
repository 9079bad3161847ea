//! cgroup v2 memory limits, used when the platform's own cgroup lets it
//! create children with the memory controller (a delegated subtree). Any
//! failure means "not available" and the RSS watch alone enforces limits.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// A leaf cgroup holding one container's process group.
#[derive(Debug)]
pub(crate) struct Cgroup(PathBuf);

fn parent() -> Option<PathBuf> {
    let root = Path::new(ROOT);
    if !root.join("cgroup.controllers").exists() {
        return None; // cgroup v1 or none
    }
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    Some(root.join(own.trim_start_matches('/')))
}

fn dir_name(pod: &str, container: &str) -> String {
    format!("serin-{pod}-{container}")
}

impl Cgroup {
    /// Creates (or reuses) the container's cgroup with `memory.max = limit`.
    pub fn create(pod: &str, container: &str, limit: u64) -> Option<Cgroup> {
        let parent = parent()?;
        let has_memory = |p: &Path| {
            fs::read_to_string(p.join("cgroup.subtree_control"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"))
        };
        if !has_memory(&parent) {
            // Fails when our own cgroup holds processes (no internal processes rule).
            fs::write(parent.join("cgroup.subtree_control"), "+memory").ok()?;
            if !has_memory(&parent) {
                return None;
            }
        }
        let dir = parent.join(dir_name(pod, container));
        if let Err(e) = fs::create_dir(&dir)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return None;
        }
        let cg = Cgroup(dir);
        if fs::write(cg.0.join("memory.max"), limit.to_string()).is_err() {
            cg.remove();
            return None;
        }
        // Swap would let a process sit above its limit instead of being killed.
        let _ = fs::write(cg.0.join("memory.swap.max"), "0");
        Some(cg)
    }

    /// The cgroup of an adopted container, if it had one.
    pub fn open(pod: &str, container: &str) -> Option<Cgroup> {
        let dir = parent()?.join(dir_name(pod, container));
        dir.join("memory.max").exists().then_some(Cgroup(dir))
    }

    /// Moves a process into the cgroup (its later children follow).
    pub fn add(&self, pid: u32) -> bool {
        fs::write(self.0.join("cgroup.procs"), pid.to_string()).is_ok()
    }

    /// Kernel OOM kills so far (`memory.events`).
    pub fn oom_kills(&self) -> u64 {
        fs::read_to_string(self.0.join("memory.events"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) {
        let _ = fs::remove_dir(&self.0);
    }
}
