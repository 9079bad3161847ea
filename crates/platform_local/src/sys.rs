//! Linux process plumbing: /proc, process-group signals, log rotation.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal};

/// Fields of `/proc/PID/stat` the platform uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stat {
    pub state: char,
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with the pid, identifies a process.
    pub start_ticks: u64,
    pub rss_pages: u64,
}

pub(crate) fn parse_stat(s: &str) -> Option<Stat> {
    // `comm` may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
        rss_pages: f.get(21)?.parse().ok()?,
    })
}

/// `/proc/PID/stat` of a process, if it exists.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True when `pid` is a live (non-zombie) process that started at `start_ticks`.
pub(crate) fn same_process_alive(pid: u32, start_ticks: u64) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X' && s.start_ticks == start_ticks)
}

/// Live (non-zombie) members of a process group, with their RSS in bytes.
pub(crate) fn group_members(pgid: u32) -> Vec<(u32, u64)> {
    let page = rustix::param::page_size() as u64;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let s = stat(pid)?;
            (s.pgrp as i64 == pgid as i64 && s.state != 'Z' && s.state != 'X')
                .then_some((pid, s.rss_pages * page))
        })
        .collect()
}

/// Sends `sig` to a whole process group; a group that is already gone is fine.
pub(crate) fn signal_group(pgid: u32, sig: Signal) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, sig)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(pgid, ?sig, error = %e, "signalling process group failed");
    }
}

/// Kills every listed process group at once (SIGKILL).
pub fn kill_groups_now(pgids: &[u32]) {
    for &g in pgids {
        signal_group(g, Signal::KILL);
    }
}

/// `create_dir_all` with mode 0700 for the folders it creates.
pub(crate) fn private_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens a log file for appending; the same file serves stdout and stderr.
/// O_APPEND lets the platform copy-truncate it while the process keeps
/// writing, and lets a re-adopted process keep its log without a pipe
/// through the platform.
pub(crate) fn open_log(path: &Path) -> io::Result<(fs::File, fs::File)> {
    if let Some(dir) = path.parent() {
        private_dirs(dir)?;
    }
    // Logs may carry anything a replica prints: readable by this user only.
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    let g = f.try_clone()?;
    Ok((f, g))
}

/// `path.N` for rotated generation N (1 = newest).
pub(crate) fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Size-based copy-truncate rotation: `log` → `log.1` → … → `log.keep`.
///
/// Copy-truncate because the child holds the file itself (no pipe through us),
/// so it survives a restart of `serin up`; as with logrotate's `copytruncate`,
/// what the child writes between the copy and the truncate is lost.
pub(crate) fn rotate_if_needed(path: &Path, max_bytes: u64, keep: u32) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes || keep == 0 {
        return Ok(false);
    }
    for n in (1..keep).rev() {
        let from = rotated(path, n);
        if from.exists() {
            fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    fs::copy(path, rotated(path, 1))?;
    fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// A free loopback TCP port (bind 127.0.0.1:0, read it, release it).
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "123 (a (b) c) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 555 1000 42 18446744073709551615";
        let st = parse_stat(s).expect("parses");
        assert_eq!(
            (st.state, st.pgrp, st.start_ticks, st.rss_pages),
            ('S', 77, 555, 42)
        );
    }

    #[test]
    fn own_process_is_alive_and_identified() {
        let me = std::process::id();
        let st = stat(me).expect("own stat");
        assert!(same_process_alive(me, st.start_ticks));
        assert!(!same_process_alive(me, st.start_ticks + 1));
    }

    #[test]
    fn rotation_keeps_generations() {
        let dir = std::env::temp_dir().join(format!("serin-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("tmp");
        let log = dir.join("x.log");
        for i in 0..4u8 {
            fs::write(&log, vec![b'a' + i; 20]).expect("write");
            assert!(rotate_if_needed(&log, 10, 2).expect("rotate"));
        }
        assert_eq!(fs::read(rotated(&log, 1)).expect("1"), vec![b'd'; 20]);
        assert_eq!(fs::read(rotated(&log, 2)).expect("2"), vec![b'c'; 20]);
        assert!(!rotated(&log, 3).exists());
        assert_eq!(fs::metadata(&log).expect("log").len(), 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
