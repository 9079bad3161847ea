//! The environment a replica starts with: what the kubelet gives a container,
//! not what `serin up` happened to inherit (tokens, cloud credentials, shell
//! settings of whoever started it).

use std::path::{Path, PathBuf};

/// The `PATH` a container gets when neither its image mapping nor its
/// manifest sets one: the default of Docker and containerd images.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The complete environment of a replica: a minimal `PATH` and `HOME` (its own
/// working directory) unless `env` sets them, then `env` itself (image
/// mapping, manifest `env:`, `PORT`, `POD_NAME`, … as the platform built it).
/// Nothing of the platform's own process environment is passed on; the
/// spawn clears it.
pub(crate) fn clean(env: Vec<(String, String)>, own_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(env.len() + 2);
    if !env.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        out.push(("HOME".to_string(), own_dir.display().to_string()));
    }
    out.extend(env);
    out
}

/// The program to execute: a bare name (`serin`, `node`) is looked up in the
/// platform's own `PATH`, as the operator who wrote `images:` meant it, even
/// though the replica itself gets [`DEFAULT_PATH`]. A relative path is the
/// replica's own (`cwd`) when it exists there, else the platform's working
/// directory's (`target/release/serin` as written where `serin up` runs —
/// replicas no longer share that directory); an absolute path is used as is.
pub(crate) fn resolve_program(prog: &str, cwd: &Path) -> PathBuf {
    if prog.contains('/') {
        let path = Path::new(prog);
        if path.is_absolute() || cwd.join(path).exists() {
            return path.to_path_buf();
        }
        return std::env::current_dir()
            .map(|ours| ours.join(path))
            .ok()
            .filter(|p| p.exists())
            .unwrap_or_else(|| path.to_path_buf());
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(prog))
            .find(|p| is_executable(p))
    });
    found.unwrap_or_else(|| PathBuf::from(prog))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The pods directory `serin up` uses for a state directory: a sibling named
/// `<state dir>-pods` (`.serin` → `.serin-pods`), so that a replica's working
/// directory (and anything it writes or deletes relative to it) is outside
/// the state dir with its token, store and configuration.
pub fn pods_dir_beside(state_dir: &Path) -> PathBuf {
    let abs = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "serin".to_string());
    abs.with_file_name(format!("{name}-pods"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_path_and_home_unless_set() {
        let dir = Path::new("/srv/pods/p/app");
        let env = clean(vec![("PORT".into(), "1".into())], dir);
        assert_eq!(
            env,
            vec![
                ("PATH".into(), DEFAULT_PATH.into()),
                ("HOME".into(), "/srv/pods/p/app".into()),
                ("PORT".into(), "1".into()),
            ]
        );
        let env = clean(
            vec![
                ("PATH".into(), "/opt/bin".into()),
                ("HOME".into(), "/h".into()),
            ],
            dir,
        );
        assert_eq!(
            env,
            vec![
                ("PATH".into(), "/opt/bin".into()),
                ("HOME".into(), "/h".into())
            ]
        );
    }

    #[test]
    fn bare_programs_resolve_in_our_path() {
        // `sh` is on every PATH this runs with; a path stays as written.
        let nowhere = Path::new("/nonexistent-serin-dir");
        assert!(resolve_program("sh", nowhere).is_absolute());
        assert_eq!(resolve_program("./x", nowhere), PathBuf::from("./x"));
        assert_eq!(
            resolve_program("no-such-program-xyz", nowhere),
            PathBuf::from("no-such-program-xyz")
        );
        // A relative path that exists where we run (this crate's Cargo.toml,
        // tests run in the crate's folder) but not in the replica's folder
        // resolves against ours; one that exists in the replica's stays.
        let ours = std::env::current_dir().expect("cwd");
        assert_eq!(
            resolve_program("./Cargo.toml", nowhere),
            ours.join("./Cargo.toml")
        );
        assert_eq!(
            resolve_program("./Cargo.toml", &ours),
            PathBuf::from("./Cargo.toml")
        );
    }

    #[test]
    fn pods_dir_is_a_sibling_of_the_state_dir() {
        assert_eq!(
            pods_dir_beside(Path::new("/w/.serin")),
            PathBuf::from("/w/.serin-pods")
        );
        let rel = pods_dir_beside(Path::new("state"));
        assert!(rel.is_absolute() && rel.ends_with("state-pods"));
        assert!(!rel.starts_with(std::path::absolute("state").unwrap()));
    }
}
