//! The admin API's secret: a random bearer token that only the proxy and
//! whoever started it (the control plane) hold, kept in a file only its owner
//! can read.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Shortest token accepted from a file (a guessable secret is no secret).
const MIN_LEN: usize = 32;

/// The bearer token every admin request (except `GET /healthz` and
/// `GET /metrics`) must carry as `Authorization: Bearer TOKEN`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading the OS's randomness, or the file, failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or `/dev/urandom`).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is readable or writable by others than its owner.
    #[error("{}: mode {mode:o} lets others read the proxy's admin token; chmod 600 it", path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds too short a token.
    #[error("{}: the admin token must be at least {MIN_LEN} characters", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
    },
}

impl AdminToken {
    /// A fresh token: 32 bytes from the OS, hex-encoded.
    pub fn random() -> Result<Self, TokenError> {
        let path = Path::new("/dev/urandom");
        let mut buf = [0u8; 32];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut buf))
            .map_err(|source| TokenError::Io {
                path: path.into(),
                source,
            })?;
        let mut s = String::with_capacity(64);
        for b in buf {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Ok(Self(s))
    }

    /// The token in `path`; when the file does not exist, a fresh token is
    /// written there first, readable by its owner only (0600). An existing
    /// file that others may read is refused.
    pub fn from_file_or_create(path: &Path) -> Result<Self, TokenError> {
        let io = |source| TokenError::Io {
            path: path.into(),
            source,
        };
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        match open.open(path) {
            Ok(mut f) => {
                let t = Self::random()?;
                f.write_all(t.0.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(t)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::from_file(path),
            Err(e) => Err(io(e)),
        }
    }

    /// The token in an existing `path` (surrounding whitespace ignored);
    /// refused when others than the owner may read or write the file.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let io = |source| TokenError::Io {
            path: path.into(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TokenError::Permissions {
                    path: path.into(),
                    mode,
                });
            }
        }
        let mut s = String::new();
        f.read_to_string(&mut s).map_err(io)?;
        let s = s.trim();
        if s.len() < MIN_LEN {
            return Err(TokenError::TooShort { path: path.into() });
        }
        Ok(Self(s.to_string()))
    }

    /// The secret itself, to send as `Authorization: Bearer …`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value carries this token. The
    /// scheme is case-insensitive (RFC 9110 §11.1); the comparison of the
    /// secret takes the same time wherever the first difference is.
    pub(crate) fn accepts(&self, authorization: &[u8]) -> bool {
        let Some((scheme, rest)) = authorization.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let given = rest.trim_ascii();
        let want = self.0.as_bytes();
        if given.len() != want.len() {
            return false;
        }
        given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_token_with_any_case_of_bearer() {
        let t = AdminToken("a".repeat(64));
        let good = format!("Bearer {}", "a".repeat(64));
        assert!(t.accepts(good.as_bytes()));
        assert!(t.accepts(good.to_lowercase().as_bytes()));
        assert!(t.accepts(format!("BEARER  {} ", "a".repeat(64)).as_bytes()));
        assert!(!t.accepts(format!("Bearer {}", "a".repeat(63)).as_bytes()));
        assert!(!t.accepts(format!("Bearer {}b", "a".repeat(63)).as_bytes()));
        assert!(!t.accepts(format!("Basic {}", "a".repeat(64)).as_bytes()));
        assert!(!t.accepts(b"Bearer"));
        assert!(!t.accepts(b""));
    }

    #[test]
    fn random_tokens_differ_and_are_long() {
        let (a, b) = (
            AdminToken::random().expect("random"),
            AdminToken::random().expect("random"),
        );
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[cfg(unix)]
    #[test]
    fn token_files_are_created_0600_and_loose_ones_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("serin-proxy-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("admin.token");
        let _ = std::fs::remove_file(&path);
        let t = AdminToken::from_file_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Read back, not replaced.
        assert_eq!(AdminToken::from_file_or_create(&path).expect("read"), t);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            AdminToken::from_file(&path),
            Err(TokenError::Permissions { mode: 0o644, .. })
        ));
        std::fs::write(&path, "short").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            AdminToken::from_file(&path),
            Err(TokenError::TooShort { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
