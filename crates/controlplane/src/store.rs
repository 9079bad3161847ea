//! The control plane's embedded store (redb): rollout status, the route in
//! effect, every revision's pod template (for undo), and events. Every write
//! commits durably before it returns, so a crash loses nothing acknowledged.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serin_engine as e;

/// Key → JSON. Keys: `status/{rollout}`, `route/{rollout}`,
/// `rev/{rollout}/{hash}`, `event/{rollout}/{seq:020}`.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("store: {0}")]
    Db(String),
    /// A record did not decode (written by an incompatible version).
    #[error("store: record {key}: {message}")]
    Decode {
        /// Key.
        key: String,
        /// What failed.
        message: String,
    },
}

fn dberr<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// One revision of a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// Pod template hash.
    pub hash: String,
    /// 1, 2, … in order of first appearance.
    pub number: u64,
    /// The pod template, as JSON.
    pub template: serde_json::Value,
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Milliseconds since the epoch.
    pub at: u64,
    /// What happened.
    pub event: e::Event,
}

/// The embedded store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(dberr)?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(KV).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(Self { db })
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(KV).map_err(dberr)?;
        let Some(v) = t.get(key).map_err(dberr)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Decode {
                key: key.into(),
                message: e.to_string(),
            })
    }

    fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(dberr)?;
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(KV).map_err(dberr)?;
            t.insert(key, bytes.as_slice()).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(KV).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                    key: k.value().to_string(),
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// Any JSON record by key (small control-plane records: analysis
    /// phases, driver errors).
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.get(key)
    }

    /// Writes a JSON record durably.
    pub fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.put(key, value)
    }

    /// Removes a record durably; true if it existed.
    pub fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let existed = {
            let mut t = tx.open_table(KV).map_err(dberr)?;
            t.remove(key).map_err(dberr)?.is_some()
        };
        tx.commit().map_err(dberr)?;
        Ok(existed)
    }

    /// Every JSON record whose key starts with `prefix`, in key order.
    pub fn scan_json<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.scan(prefix)
    }

    /// Like [`Store::scan_json`], with each record's key.
    pub fn scan_entries<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(KV).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            let value = serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                key: k.value().to_string(),
                message: e.to_string(),
            })?;
            out.push((k.value().to_string(), value));
        }
        Ok(out)
    }

    /// The engine status of a rollout (default when never reconciled).
    pub fn status(&self, rollout: &str) -> Result<e::RolloutStatus, StoreError> {
        Ok(self.get(&format!("status/{rollout}"))?.unwrap_or_default())
    }

    /// Persists a status.
    pub fn put_status(&self, rollout: &str, s: &e::RolloutStatus) -> Result<(), StoreError> {
        self.put(&format!("status/{rollout}"), s)
    }

    /// Persists a status and, when given, a new route in one durable commit
    /// (an abort's status and its route back to stable land together).
    pub fn put_status_and_route(
        &self,
        rollout: &str,
        s: &e::RolloutStatus,
        route: Option<&e::Route>,
    ) -> Result<(), StoreError> {
        let status = serde_json::to_vec(s).map_err(dberr)?;
        let route = route.map(serde_json::to_vec).transpose().map_err(dberr)?;
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(KV).map_err(dberr)?;
            t.insert(format!("status/{rollout}").as_str(), status.as_slice())
                .map_err(dberr)?;
            if let Some(r) = &route {
                t.insert(format!("route/{rollout}").as_str(), r.as_slice())
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)
    }

    /// The route in effect for a rollout.
    pub fn route(&self, rollout: &str) -> Result<e::Route, StoreError> {
        Ok(self.get(&format!("route/{rollout}"))?.unwrap_or_default())
    }

    /// Persists the route in effect.
    pub fn put_route(&self, rollout: &str, r: &e::Route) -> Result<(), StoreError> {
        self.put(&format!("route/{rollout}"), r)
    }

    /// The user's overrides of a rollout (pause, undo, restart; none yet:
    /// the default).
    pub fn overrides(&self, rollout: &str) -> Result<serin_driver::Overrides, StoreError> {
        Ok(self
            .get::<StoredOverrides>(&format!("overrides/{rollout}"))?
            .unwrap_or_default()
            .into())
    }

    /// Persists the user's overrides of a rollout.
    pub fn put_overrides(
        &self,
        rollout: &str,
        o: &serin_driver::Overrides,
    ) -> Result<(), StoreError> {
        self.put(&format!("overrides/{rollout}"), &StoredOverrides::from(o))
    }

    /// All revisions of a rollout, by number.
    pub fn revisions(&self, rollout: &str) -> Result<Vec<RevisionRecord>, StoreError> {
        let mut v: Vec<RevisionRecord> = self.scan(&format!("rev/{rollout}/"))?;
        v.sort_by_key(|r| r.number);
        Ok(v)
    }

    /// Records a revision if new; returns its number.
    pub fn ensure_revision(
        &self,
        rollout: &str,
        hash: &str,
        template: &serde_json::Value,
    ) -> Result<u64, StoreError> {
        let key = format!("rev/{rollout}/{hash}");
        if let Some(r) = self.get::<RevisionRecord>(&key)? {
            return Ok(r.number);
        }
        let number = self.revisions(rollout)?.last().map_or(1, |r| r.number + 1);
        self.put(
            &key,
            &RevisionRecord {
                hash: hash.into(),
                number,
                template: template.clone(),
            },
        )?;
        Ok(number)
    }

    /// Appends an event.
    pub fn push_event(&self, rollout: &str, at: u64, event: &e::Event) -> Result<(), StoreError> {
        let seq = self
            .scan::<EventRecord>(&format!("event/{rollout}/"))?
            .len();
        self.put(
            &format!("event/{rollout}/{seq:020}"),
            &EventRecord {
                at,
                event: event.clone(),
            },
        )
    }

    /// Events of a rollout, oldest first.
    pub fn events(&self, rollout: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.scan(&format!("event/{rollout}/"))
    }
}

/// The user's overrides as redb keeps them (`overrides/{rollout}`; the
/// format of state written by earlier versions). The driver's
/// [`serin_driver::Overrides`] is what they mean; Argo writes them into the
/// object's spec, Serin's manifests are the user's files.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct StoredOverrides {
    paused: bool,
    /// (template hash to run instead, manifest hash it overrides)
    undo: Option<(String, String)>,
    /// (restartAt set by `serin restart`, the manifest's restartAt it
    /// overrides)
    #[serde(default)]
    restart: Option<(u64, Option<u64>)>,
}

impl From<StoredOverrides> for serin_driver::Overrides {
    fn from(o: StoredOverrides) -> Self {
        Self {
            paused: o.paused,
            undo: o
                .undo
                .map(|(revision, manifest)| serin_driver::overrides::Undo {
                    revision: e::RevisionHash::new(revision),
                    over_manifest: e::RevisionHash::new(manifest),
                }),
            restart: o
                .restart
                .map(|(at, over_manifest)| serin_driver::overrides::Restart { at, over_manifest }),
        }
    }
}

impl From<&serin_driver::Overrides> for StoredOverrides {
    fn from(o: &serin_driver::Overrides) -> Self {
        Self {
            paused: o.paused,
            undo: o
                .undo
                .as_ref()
                .map(|u| (u.revision.0.clone(), u.over_manifest.0.clone())),
            restart: o.restart.as_ref().map(|r| (r.at, r.over_manifest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_numbers_revisions_in_order() {
        let dir = std::env::temp_dir().join(format!("serin-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.redb");
        let _ = std::fs::remove_file(&path);
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(
                s.ensure_revision("app", "aaa", &serde_json::json!({"x": 1}))
                    .unwrap(),
                1
            );
            assert_eq!(
                s.ensure_revision("app", "bbb", &serde_json::json!({"x": 2}))
                    .unwrap(),
                2
            );
            assert_eq!(
                s.ensure_revision("app", "aaa", &serde_json::json!({"x": 1}))
                    .unwrap(),
                1
            );
            let st = e::RolloutStatus {
                phase: e::Phase::Paused,
                ..Default::default()
            };
            s.put_status("app", &st).unwrap();
            s.push_event("app", 5, &e::Event::ProgressDeadlineExceeded)
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.status("app").unwrap().phase, e::Phase::Paused);
        let revs = s.revisions("app").unwrap();
        assert_eq!(
            revs.iter()
                .map(|r| (r.hash.as_str(), r.number))
                .collect::<Vec<_>>(),
            vec![("aaa", 1), ("bbb", 2)]
        );
        assert_eq!(s.events("app").unwrap().len(), 1);
        assert_eq!(s.status("other").unwrap(), e::RolloutStatus::default());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
