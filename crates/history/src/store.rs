//! [`History`]: deployment records in their own redb file.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::record::{DeploymentRecord, Outcome, ProxyCounters};

/// id → record as JSON (JSON so that added fields stay readable).
const DEPLOYMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("deployments");

/// History failures.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database could not be opened, read or written.
    #[error("history store: {0}")]
    Db(String),
    /// A stored record did not decode (written by an incompatible version).
    #[error("history store: record {id}: {message}")]
    Decode {
        /// Record id.
        id: u64,
        /// What failed.
        message: String,
    },
    /// No record with this id.
    #[error("history store: no deployment with id {0}")]
    NotFound(u64),
}

fn dberr<E: std::fmt::Display>(e: E) -> HistoryError {
    HistoryError::Db(e.to_string())
}

/// The durable deployment history. Every write commits (redb's default
/// immediate durability: fsync) before it returns.
pub struct History {
    db: Database,
}

impl History {
    /// Opens (or creates) the history file.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let db = Database::create(path).map_err(dberr)?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(DEPLOYMENTS).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(Self { db })
    }

    /// Records the start of a deployment with the next free id and returns it.
    /// `counters` is the proxy's snapshot at the start; pass the end snapshot
    /// to [`History::finish`].
    pub fn start(
        &self,
        rollout: &str,
        strategy: &str,
        from_revision: Option<&str>,
        to_revision: &str,
        started_at_ms: u64,
    ) -> Result<DeploymentRecord, HistoryError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let record = {
            let mut t = tx.open_table(DEPLOYMENTS).map_err(dberr)?;
            let last = t.last().map_err(dberr)?.map(|(k, _)| k.value());
            let record = DeploymentRecord {
                id: last.map_or(1, |l| l.saturating_add(1)),
                rollout: rollout.to_string(),
                strategy: strategy.to_string(),
                from_revision: from_revision.map(str::to_string),
                to_revision: to_revision.to_string(),
                started_at_ms,
                ended_at_ms: None,
                outcome: Outcome::InProgress,
                abort_reason: None,
                requests: 0,
                failed_requests: 0,
                time_to_rollback_ms: None,
                time_to_recovery_ms: None,
            };
            let bytes = serde_json::to_vec(&record).map_err(dberr)?;
            t.insert(record.id, bytes.as_slice()).map_err(dberr)?;
            record
        };
        tx.commit().map_err(dberr)?;
        Ok(record)
    }

    /// Records a deployment's outcome. `during` holds the requests served
    /// while it ran (see [`ProxyCounters::since`]).
    pub fn finish(
        &self,
        id: u64,
        outcome: Outcome,
        ended_at_ms: u64,
        abort_reason: Option<&str>,
        during: ProxyCounters,
    ) -> Result<DeploymentRecord, HistoryError> {
        let mut record = self.get(id)?.ok_or(HistoryError::NotFound(id))?;
        record.outcome = outcome;
        record.ended_at_ms = Some(ended_at_ms);
        record.abort_reason = abort_reason.map(str::to_string);
        record.requests = during.requests;
        record.failed_requests = during.failed;
        self.put(&record)?;
        Ok(record)
    }

    /// Inserts or replaces a record by id (what the [`crate::Tracker`] returns).
    pub fn put(&self, record: &DeploymentRecord) -> Result<(), HistoryError> {
        let bytes = serde_json::to_vec(record).map_err(dberr)?;
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(DEPLOYMENTS).map_err(dberr)?;
            t.insert(record.id, bytes.as_slice()).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)
    }

    /// One record.
    pub fn get(&self, id: u64) -> Result<Option<DeploymentRecord>, HistoryError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(DEPLOYMENTS).map_err(dberr)?;
        let Some(v) = t.get(id).map_err(dberr)? else {
            return Ok(None);
        };
        decode(id, v.value()).map(Some)
    }

    /// Records started at or after `since_ms` (0 for all), oldest first.
    pub fn list(&self, since_ms: u64) -> Result<Vec<DeploymentRecord>, HistoryError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(DEPLOYMENTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            let record = decode(k.value(), v.value())?;
            if record.started_at_ms >= since_ms {
                out.push(record);
            }
        }
        Ok(out)
    }
}

fn decode(id: u64, bytes: &[u8]) -> Result<DeploymentRecord, HistoryError> {
    serde_json::from_slice(bytes).map_err(|e| HistoryError::Decode {
        id,
        message: e.to_string(),
    })
}
