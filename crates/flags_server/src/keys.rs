//! API keys: server-side SDK keys, client keys and admin tokens, each scoped to one
//! environment. Only SHA-256 hashes are kept — in the keys file and in memory — and key values
//! are never logged.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Server-side SDK key: single-flag and bulk evaluation with any context, change stream.
    Server,
    /// Client (browser / mobile) key: bulk evaluation and change stream only.
    Client,
    /// Admin token: the management API of its environment.
    Admin,
}

impl KeyKind {
    /// Lower-case name, as written in the keys file.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Server => "server",
            KeyKind::Client => "client",
            KeyKind::Admin => "admin",
        }
    }
}

/// One configured key (its hash, never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// A name for the audit log and for logs (e.g. `checkout-backend`).
    pub name: String,
    /// What the key may do.
    pub kind: KeyKind,
    /// The environment it is scoped to (e.g. `production`).
    pub environment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    kind: KeyKind,
    environment: String,
    sha256: String,
}

/// Why a keys file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not follow the format (the message has line:column).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
}

/// The configured keys, by SHA-256 hash of the key value.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], KeyInfo>,
}

/// The SHA-256 of a key value, as lower-case hex (what the keys file stores).
pub fn hash_key(key: &str) -> String {
    hex(&digest(key))
}

fn digest(key: &str) -> [u8; 32] {
    let out = Sha256::digest(key.as_bytes());
    let mut a = [0u8; 32];
    a.copy_from_slice(out.as_slice());
    a
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Whether `name` is an acceptable environment name: 1–64 of `[A-Za-z0-9_.-]`.
pub fn valid_environment(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl KeyRing {
    /// No keys: evaluation is open (loopback only) and the management API is disabled.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a keys file:
    ///
    /// ```yaml
    /// keys:
    ///   - name: checkout-backend
    ///     kind: server          # server | client | admin
    ///     environment: production
    ///     sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    /// ```
    pub fn from_yaml_str(src: &str, path: &str) -> Result<Self, KeysError> {
        let options = serde_saphyr::options! { strict_booleans: true };
        let file: KeysFile =
            serde_saphyr::from_str_with_options(src, options).map_err(|e| KeysError::Invalid {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let mut ring = KeyRing::default();
        for (i, k) in file.keys.into_iter().enumerate() {
            let invalid = |message: String| KeysError::Invalid {
                path: path.to_owned(),
                message: format!("keys[{i}] ({}): {message}", k.name),
            };
            let hash = unhex(&k.sha256).ok_or_else(|| {
                invalid("sha256 must be 64 hex digits (see `serin flags hash-key`)".into())
            })?;
            if !valid_environment(&k.environment) {
                return Err(invalid(format!(
                    "environment {:?} must be 1-64 of [A-Za-z0-9_.-]",
                    k.environment
                )));
            }
            let info = KeyInfo {
                name: k.name.clone(),
                kind: k.kind,
                environment: k.environment.clone(),
            };
            if ring.by_hash.insert(hash, info).is_some() {
                return Err(invalid("the same key is listed twice".into()));
            }
        }
        Ok(ring)
    }

    /// Reads and parses a keys file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, KeysError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| KeysError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml_str(&src, &shown)
    }

    /// Adds a key by its value (for embedding and tests; the value itself is not kept).
    pub fn insert(&mut self, key: &str, info: KeyInfo) {
        self.by_hash.insert(digest(key), info);
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Whether any admin token is configured.
    pub fn has_admin(&self) -> bool {
        self.by_hash.values().any(|k| k.kind == KeyKind::Admin)
    }

    /// The key whose value is `key`, if configured.
    pub fn lookup(&self, key: &str) -> Option<&KeyInfo> {
        self.by_hash.get(&digest(key))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        // sha256("password"), a well-known vector.
        assert_eq!(
            hash_key("password"),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn parses_keys_file_and_looks_up_by_value() {
        let src = format!(
            "keys:\n  - name: backend\n    kind: server\n    environment: production\n    sha256: {}\n",
            hash_key("s3cret")
        );
        let ring = KeyRing::from_yaml_str(&src, "keys.yaml").expect("valid");
        let k = ring.lookup("s3cret").expect("configured");
        assert_eq!(k.kind, KeyKind::Server);
        assert_eq!(k.environment, "production");
        assert!(ring.lookup("other").is_none());
        assert!(!ring.has_admin());
    }

    #[test]
    fn rejects_bad_hash_and_unknown_kind_with_location() {
        let bad = "keys:\n  - name: x\n    kind: server\n    environment: prod\n    sha256: abc\n";
        let e = KeyRing::from_yaml_str(bad, "k.yaml").expect_err("bad hash");
        assert!(e.to_string().contains("keys[0] (x): sha256"), "{e}");
        let bad = "keys:\n  - name: x\n    kind: root\n    environment: prod\n    sha256: abc\n";
        let e = KeyRing::from_yaml_str(bad, "k.yaml").expect_err("bad kind");
        assert!(e.to_string().contains("k.yaml: "), "{e}");
        assert!(e.to_string().contains("3:"), "located: {e}");
    }
}
