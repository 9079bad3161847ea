//! File mode: the flag file is polled every [`crate::FILE_POLL_INTERVAL`] (mtime, size and
//! inode, then a content hash) rather than watched with inotify: polling has no dependency,
//! works on every file system (network mounts, bind mounts into containers) and survives
//! editors that replace the file by renaming, and a 250 ms period keeps the update well
//! under a second. A file that fails to load keeps the previous flags and logs the located
//! error. Like flagd, a flag whose targeting does not compile does not take the file down:
//! it is served (answering `PARSE_ERROR`, or its default variant for a wrong argument
//! count) and reported as a located warning at every load.
//!
//! Several sources (files, or directories of flag files read in name order) merge with
//! flagd's precedence: a flag defined in more than one comes from the last.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serin_flags::{FlagSet, Format, Strictness};
use sha2::{Digest, Sha256};

use crate::state::{Shared, Snapshot, SourceFile, flag_to_def, now_unix_ms};

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

/// What the sources hold: the merged flags, where each came from, the located warnings and
/// the version.
struct Loaded {
    set: FlagSet,
    sources: Vec<SourceFile>,
    origins: HashMap<String, usize>,
    warnings: Vec<String>,
    version: String,
}

fn snapshot(l: Loaded) -> Snapshot {
    let set = l.set;
    let defs: BTreeMap<String, serde_json::Value> = set
        .keys()
        .filter_map(|k| set.flag(k).map(|f| (k.to_owned(), flag_to_def(f))))
        .collect();
    Snapshot {
        version: l.version,
        last_modified: now_unix_ms() / 1000,
        flags: set,
        defs,
        sources: l.sources,
        origins: l.origins,
    }
}

/// The names a selector may give a file: as given (without a leading `./`), and canonical.
fn names_of(path: &Path, out: &mut Vec<String>) {
    let shown = path.to_string_lossy();
    let shown = shown.strip_prefix("./").unwrap_or(&shown).to_owned();
    if !out.contains(&shown) {
        out.push(shown);
    }
    if let Ok(c) = std::fs::canonicalize(path) {
        let c = c.to_string_lossy().into_owned();
        if !out.contains(&c) {
            out.push(c);
        }
    }
}

pub(crate) struct FileWatcher {
    /// The sources as given: files, or directories whose `*.json` / `*.yaml` / `*.yml` files
    /// are read in name order.
    sources: Vec<PathBuf>,
    environment: String,
    stamps: Vec<(PathBuf, Option<Stamp>)>,
    version: String,
}

/// The files behind the sources, in precedence order (later wins). A directory contributes
/// its flag files sorted by name; one that cannot be listed contributes nothing (and is
/// logged), so a directory being replaced does not stop the others.
fn expand(sources: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for s in sources {
        if s.is_dir() {
            match std::fs::read_dir(s) {
                Ok(entries) => {
                    let mut files: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.is_file()
                                && matches!(
                                    p.extension().and_then(|e| e.to_str()),
                                    Some("json" | "yaml" | "yml")
                                )
                        })
                        .collect();
                    files.sort();
                    out.extend(files.into_iter().map(|f| (s.clone(), f)));
                }
                Err(e) => {
                    tracing::warn!(dir = %s.display(), error = %e, "flag directory unreadable");
                }
            }
        } else {
            out.push((s.clone(), s.clone()));
        }
    }
    out
}

fn stamps(sources: &[PathBuf]) -> Vec<(PathBuf, Option<Stamp>)> {
    expand(sources)
        .into_iter()
        .map(|(_, p)| {
            let s = stamp(&p);
            (p, s)
        })
        .collect()
}

/// Reads and merges every source: the flags, where each came from, the located warnings and
/// the version (a hash of every file's name and bytes).
fn load_all(sources: &[PathBuf]) -> Result<Loaded, crate::ServerError> {
    let mut set = FlagSet::default();
    let mut warned = Vec::new();
    let mut files = Vec::new();
    let mut origins = HashMap::new();
    let mut hash = Sha256::new();
    for (source, path) in expand(sources) {
        let src = std::fs::read(&path).map_err(|source| serin_flags::FlagsError::Io {
            path: path.clone(),
            source,
        })?;
        hash.update(path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(&src);
        hash.update([0]);
        let one = parse(&path, &src)?;
        warned.extend(warnings(&path, &one));
        let mut names = Vec::new();
        names_of(&source, &mut names);
        names_of(&path, &mut names);
        // Later sources win, so a later file takes over the origin of a key it redefines.
        for k in one.keys() {
            origins.insert(k.to_owned(), files.len());
        }
        files.push(SourceFile { names });
        set.merge(one);
    }
    let d = hash.finalize();
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(Loaded {
        set,
        sources: files,
        origins,
        warnings: warned,
        version: format!("f{hex}"),
    })
}

impl FileWatcher {
    /// Loads the sources once; a bad file is an error here (the server does not start). Also
    /// returns the located warnings about flags that did not compile.
    pub(crate) fn load(
        sources: &[PathBuf],
        environment: &str,
        shared: &Shared,
    ) -> Result<(Self, Vec<String>), crate::ServerError> {
        let stamps = stamps(sources);
        let mut loaded = load_all(sources)?;
        let warnings = std::mem::take(&mut loaded.warnings);
        let version = loaded.version.clone();
        shared.install(environment, snapshot(loaded));
        Ok((
            Self {
                sources: sources.to_vec(),
                environment: environment.to_owned(),
                stamps,
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
            let now = stamps(&self.sources);
            if now == self.stamps {
                continue;
            }
            self.stamps = now;
            match load_all(&self.sources) {
                Ok(loaded) => {
                    if loaded.version == self.version {
                        continue;
                    }
                    for w in &loaded.warnings {
                        tracing::warn!("{w}");
                    }
                    self.version = loaded.version.clone();
                    shared.install(&self.environment, snapshot(loaded));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flag sources have errors; keeping the previous flags");
                }
            }
        }
    }
}
