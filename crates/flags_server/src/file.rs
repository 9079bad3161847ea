//! File mode: the flag file is polled every [`crate::FILE_POLL_INTERVAL`] (mtime, size and
//! inode, then a content hash) rather than watched with inotify: polling has no dependency,
//! works on every file system (network mounts, bind mounts into containers) and survives
//! editors that replace the file by renaming, and a 250 ms period keeps the update well
//! under a second. A file that fails to load keeps the previous flags and logs the located
//! error. Like flagd, a flag whose targeting does not compile does not take the file down:
//! it is served (answering `PARSE_ERROR`, or its default variant for a wrong argument
//! count) and reported as a located warning at every load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serin_flags::{FlagSet, Format, Strictness};
use sha2::{Digest, Sha256};

use crate::state::{Shared, Snapshot, flag_to_def, now_unix_ms};

#[derive(PartialEq, Eq, Clone, Copy)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

pub(crate) struct FileWatcher {
    path: PathBuf,
    environment: String,
    stamp: Option<Stamp>,
    version: String,
}

/// Parses file contents already read (so the version and the flags come from the same bytes),
/// leniently, as flagd does; [`FlagSet::warnings`] lists the flags that did not compile.
fn parse(path: &Path, src: &[u8]) -> Result<FlagSet, serin_flags::FlagsError> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Format::Yaml,
        _ => Format::Json,
    };
    let text = String::from_utf8_lossy(src);
    FlagSet::from_str_with(&text, format, Strictness::Lenient).map_err(|e| {
        serin_flags::FlagsError::InFile {
            path: path.to_owned(),
            inner: Box::new(e),
        }
    })
}

/// Each tolerated problem, prefixed with the file (`file:line:col: /pointer: message`).
pub(crate) fn warnings(path: &Path, set: &FlagSet) -> Vec<String> {
    set.warnings()
        .iter()
        .map(|w| format!("{}:{}", path.display(), w.message))
        .collect()
}

fn log_warnings(path: &Path, set: &FlagSet) -> Vec<String> {
    let all = warnings(path, set);
    for w in &all {
        tracing::warn!("{w}");
    }
    all
}

fn content_version(src: &[u8]) -> String {
    let d = Sha256::digest(src);
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("f{hex}")
}

fn snapshot(set: FlagSet, version: String) -> Snapshot {
    let defs: BTreeMap<String, serde_json::Value> = set
        .keys()
        .filter_map(|k| set.flag(k).map(|f| (k.to_owned(), flag_to_def(f))))
        .collect();
    Snapshot {
        version,
        last_modified: now_unix_ms() / 1000,
        flags: set,
        defs,
    }
}

impl FileWatcher {
    /// Loads the file once; a bad file is an error here (the server does not start). Also
    /// returns the located warnings about flags that did not compile.
    pub(crate) fn load(
        path: &Path,
        environment: &str,
        shared: &Shared,
    ) -> Result<(Self, Vec<String>), crate::ServerError> {
        let stamp = stamp(path);
        let src = std::fs::read(path).map_err(|source| serin_flags::FlagsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let set = parse(path, &src)?;
        let warnings = warnings(path, &set);
        let version = content_version(&src);
        shared.install(environment, snapshot(set, version.clone()));
        Ok((
            Self {
                path: path.to_owned(),
                environment: environment.to_owned(),
                stamp,
                version,
            },
            warnings,
        ))
    }

    pub(crate) async fn run(mut self, shared: Arc<Shared>) {
        let mut tick = tokio::time::interval(crate::FILE_POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&self.path);
            if now == self.stamp {
                continue;
            }
            self.stamp = now;
            let Ok(src) = std::fs::read(&self.path) else {
                tracing::warn!(file = %self.path.display(), "flag file unreadable; keeping the previous flags");
                continue;
            };
            let version = content_version(&src);
            if version == self.version {
                continue;
            }
            match parse(&self.path, &src) {
                Ok(set) => {
                    log_warnings(&self.path, &set);
                    self.version = version.clone();
                    shared.install(&self.environment, snapshot(set, version));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flag file has errors; keeping the previous flags");
                }
            }
        }
    }
}
