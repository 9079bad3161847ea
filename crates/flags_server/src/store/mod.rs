//! Durable storage of flag definitions and the audit log.
//!
//! Two implementations share one contract (and one test suite): [`RedbStore`], embedded and
//! the default, and [`PgStore`], for several flag servers sharing state. Every
//! [`Store::commit`] is durable when it returns (redb commits with fsync; PostgreSQL with
//! `synchronous_commit` on), so a change acknowledged to a client survives a crash.

mod pg;
mod redb_store;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use pg::{ALL_ENVIRONMENTS, PgStore};
pub use redb_store::RedbStore;

/// One environment's flags as stored: the definitions (flagd format, one flag each) and the
/// version, which grows by one on every commit to the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentFlags {
    /// Commit counter of the environment (0: never written).
    pub version: u64,
    /// Flag key → flagd flag definition.
    pub flags: BTreeMap<String, Value>,
}

/// One change inside a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The flag.
    pub key: String,
    /// The definition the change was computed from (`None`: the flag did not exist). The
    /// commit fails with [`StoreError::Conflict`] if the stored one differs, so concurrent
    /// read-modify-write (also across servers) never loses an update.
    pub before: Option<Value>,
    /// The new definition (`None`: delete).
    pub after: Option<Value>,
    /// What was done (`create`, `update`, `delete`, `percentage`, `toggle`, `kill-switch`…).
    pub action: String,
}

/// One audit-log record: who changed which flag when, from what to what.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increasing id (per store).
    pub id: u64,
    /// The environment.
    pub environment: String,
    /// The flag.
    pub flag: String,
    /// What was done.
    pub action: String,
    /// The name of the admin key that did it.
    pub actor: String,
    /// When, in Unix milliseconds.
    pub at_unix_ms: i64,
    /// The definition before (`null`: created).
    pub before: Option<Value>,
    /// The definition after (`null`: deleted).
    pub after: Option<Value>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this flag.
    pub flag: Option<String>,
    /// Only entries with an id below this (paging, newest first).
    pub before_id: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The flag changed since it was read.
    #[error("flag {key:?} was changed concurrently; retry")]
    Conflict {
        /// The flag.
        key: String,
    },
    /// The embedded database failed.
    #[error("embedded store: {0}")]
    Redb(String),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// A durable store of flags per environment and of the audit log.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The environments that have ever been written.
    async fn environments(&self) -> Result<Vec<String>, StoreError>;

    /// One environment's flags and version (empty and version 0 if never written).
    async fn load(&self, environment: &str) -> Result<EnvironmentFlags, StoreError>;

    /// Applies all `changes` atomically, appends one audit entry per change, bumps the
    /// environment's version and returns it. Durable when it returns. Fails with
    /// [`StoreError::Conflict`] (and changes nothing) if any `before` is stale.
    async fn commit(
        &self,
        environment: &str,
        changes: Vec<Change>,
        actor: &str,
        at_unix_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Audit entries of an environment, newest first.
    async fn audit(
        &self,
        environment: &str,
        query: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Environments changed by other processes sharing the store (PostgreSQL LISTEN/NOTIFY);
    /// `None` when the store cannot be shared.
    fn external_changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}
