//! The embedded store: one redb file, three tables — flags by (environment, key), the version
//! of each environment, and the audit log by id. redb commits with fsync by default
//! (`Durability::Immediate`), so a commit that returned survives a crash or power loss.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use super::{AuditEntry, AuditQuery, Change, EnvironmentFlags, Store, StoreError};

const FLAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("flags");
const VERSIONS: TableDefinition<&str, u64> = TableDefinition::new("environment_versions");
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit_log");

fn re(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redb(e.to_string())
}

fn parse(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The embedded, single-process store (the default).
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl RedbStore {
    /// Opens (or creates) the database file; its directory is created if missing. Fails if
    /// another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| re(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| re(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(re)?;
        {
            tx.open_table(FLAGS).map_err(re)?;
            tx.open_table(VERSIONS).map_err(re)?;
            tx.open_table(AUDIT).map_err(re)?;
        }
        tx.commit().map_err(re)?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(re)?
    }
}

fn load_env(db: &Database, env: &str) -> Result<EnvironmentFlags, StoreError> {
    let tx = db.begin_read().map_err(re)?;
    let versions = tx.open_table(VERSIONS).map_err(re)?;
    let version = versions
        .get(env)
        .map_err(re)?
        .map(|v| v.value())
        .unwrap_or(0);
    let flags = tx.open_table(FLAGS).map_err(re)?;
    let mut out = EnvironmentFlags {
        version,
        ..Default::default()
    };
    for item in flags.range((env, "")..).map_err(re)? {
        let (k, v) = item.map_err(re)?;
        let (e, key) = k.value();
        if e != env {
            break;
        }
        out.flags.insert(key.to_owned(), parse(v.value())?);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn environments(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(re)?;
            let versions = tx.open_table(VERSIONS).map_err(re)?;
            let mut out = Vec::new();
            for item in versions.iter().map_err(re)? {
                let (k, _) = item.map_err(re)?;
                out.push(k.value().to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn load(&self, environment: &str) -> Result<EnvironmentFlags, StoreError> {
        let env = environment.to_owned();
        self.blocking(move |db| load_env(db, &env)).await
    }

    async fn commit(
        &self,
        environment: &str,
        changes: Vec<Change>,
        actor: &str,
        at_unix_ms: i64,
    ) -> Result<u64, StoreError> {
        let env = environment.to_owned();
        let actor = actor.to_owned();
        self.blocking(move |db| {
            // redb has one writer at a time, so reading `before` inside the write
            // transaction makes the check-and-set atomic.
            let tx = db.begin_write().map_err(re)?;
            let version;
            {
                let mut flags = tx.open_table(FLAGS).map_err(re)?;
                let mut versions = tx.open_table(VERSIONS).map_err(re)?;
                let mut audit = tx.open_table(AUDIT).map_err(re)?;
                let first_id = audit
                    .last()
                    .map_err(re)?
                    .map(|(k, _)| k.value() + 1)
                    .unwrap_or(1);
                for (c, id) in changes.iter().zip(first_id..) {
                    let current = match flags.get((env.as_str(), c.key.as_str())).map_err(re)? {
                        Some(v) => Some(parse(v.value())?),
                        None => None,
                    };
                    if current != c.before {
                        return Err(StoreError::Conflict { key: c.key.clone() });
                    }
                    match &c.after {
                        Some(def) => {
                            let text = def.to_string();
                            flags
                                .insert((env.as_str(), c.key.as_str()), text.as_str())
                                .map_err(re)?;
                        }
                        None => {
                            flags.remove((env.as_str(), c.key.as_str())).map_err(re)?;
                        }
                    }
                    let entry = AuditEntry {
                        id,
                        environment: env.clone(),
                        flag: c.key.clone(),
                        action: c.action.clone(),
                        actor: actor.clone(),
                        at_unix_ms,
                        before: c.before.clone(),
                        after: c.after.clone(),
                    };
                    let text = serde_json::to_string(&entry)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    audit.insert(id, text.as_str()).map_err(re)?;
                }
                let old = versions.get(env.as_str()).map_err(re)?.map(|v| v.value());
                version = old.unwrap_or(0) + 1;
                versions.insert(env.as_str(), version).map_err(re)?;
            }
            tx.commit().map_err(re)?;
            Ok(version)
        })
        .await
    }

    async fn audit(
        &self,
        environment: &str,
        query: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let env = environment.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(re)?;
            let audit = tx.open_table(AUDIT).map_err(re)?;
            let upper = query.before_id.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for item in audit.range(..upper).map_err(re)?.rev() {
                if out.len() >= query.limit {
                    break;
                }
                let (_, v) = item.map_err(re)?;
                let entry: AuditEntry = serde_json::from_str(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if entry.environment == env && query.flag.as_ref().is_none_or(|f| *f == entry.flag)
                {
                    out.push(entry);
                }
            }
            Ok(out)
        })
        .await
    }
}
