//! The PostgreSQL store, for several flag servers sharing state. Tables (named with a
//! configurable prefix, default `serin_`) are created on startup; every commit ends with
//! `pg_notify('<prefix>flags_changed', environment)` inside the transaction, and each server
//! LISTENs on that channel, so the others reload the environment and tell their SSE clients.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{Mutex, broadcast};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{AuditEntry, AuditQuery, Change, EnvironmentFlags, Store, StoreError};

/// Payload sent on the change stream after the LISTEN connection was re-established: some
/// notifications may have been missed, so every environment must be reloaded.
pub const ALL_ENVIRONMENTS: &str = "*";

/// A store in PostgreSQL (plain TCP, no TLS).
pub struct PgStore {
    url: String,
    prefix: String,
    client: Mutex<Option<Client>>,
    changes: broadcast::Sender<String>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn bad_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || prefix.len() > 40
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || prefix.as_bytes()[0].is_ascii_digit()
}

async fn connect(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects (`url` as tokio-postgres takes it, e.g.
    /// `host=127.0.0.1 user=postgres dbname=test` or `postgres://postgres@127.0.0.1/test`),
    /// creates the tables if missing and starts listening for other servers' changes.
    /// `prefix` (`[a-z_][a-z0-9_]*`, at most 40 characters) names the tables.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        if bad_prefix(prefix) {
            return Err(StoreError::Corrupt(format!(
                "table prefix {prefix:?} must match [a-z_][a-z0-9_]* (at most 40 characters)"
            )));
        }
        let client = connect(url).await?;
        let p = prefix;
        // An advisory lock, so servers starting together do not race on CREATE TABLE.
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(726201);
                 CREATE TABLE IF NOT EXISTS {p}flags (
                     env TEXT NOT NULL, key TEXT NOT NULL, definition TEXT NOT NULL,
                     PRIMARY KEY (env, key));
                 CREATE TABLE IF NOT EXISTS {p}versions (
                     env TEXT PRIMARY KEY, version BIGINT NOT NULL);
                 CREATE TABLE IF NOT EXISTS {p}audit (
                     id BIGSERIAL PRIMARY KEY, env TEXT NOT NULL, flag TEXT NOT NULL,
                     action TEXT NOT NULL, actor TEXT NOT NULL, at_ms BIGINT NOT NULL,
                     before TEXT, after TEXT);
                 CREATE INDEX IF NOT EXISTS {p}audit_env ON {p}audit (env, id);
                 COMMIT;"
            ))
            .await?;
        let (changes, _) = broadcast::channel(256);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(
            url.to_owned(),
            format!("{p}flags_changed"),
            changes.clone(),
            ready_tx,
        ));
        // Wait until LISTEN is active, so no change made after `connect` returns is missed.
        if tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .is_err()
        {
            listener.abort();
            return Err(StoreError::Corrupt(
                "postgres LISTEN did not start within 10 s".into(),
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            client: Mutex::new(Some(client)),
            changes,
            listener,
        })
    }

    fn channel(&self) -> String {
        format!("{}flags_changed", self.prefix)
    }

    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url).await?);
        }
        Ok(guard)
    }

    /// Drops this store's tables (for tests that use a throw-away prefix).
    pub async fn drop_tables(&self) -> Result<(), StoreError> {
        let p = &self.prefix;
        let mut guard = self.client().await?;
        let client = guard
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("no client".into()))?;
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {p}flags; DROP TABLE IF EXISTS {p}versions; \
                 DROP TABLE IF EXISTS {p}audit;"
            ))
            .await?;
        Ok(())
    }
}

/// Keeps a LISTEN connection open, forwarding notification payloads; on reconnect sends
/// [`ALL_ENVIRONMENTS`] because notifications may have been missed meanwhile.
async fn listen(
    url: String,
    channel: String,
    tx: broadcast::Sender<String>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut connection)) => {
                let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut stream =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(msg) = stream.next().await {
                        match msg {
                            Ok(AsyncMessage::Notification(n)) => {
                                if ntx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "postgres LISTEN connection failed");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
                    tracing::warn!(error = %e, "postgres LISTEN failed");
                } else {
                    match ready.take() {
                        Some(r) => {
                            let _ = r.send(());
                        }
                        None => {
                            let _ = tx.send(ALL_ENVIRONMENTS.to_owned());
                        }
                    }
                    while let Some(env) = nrx.recv().await {
                        let _ = tx.send(env);
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "postgres LISTEN connect failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn parse(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_opt(text: Option<String>) -> Result<Option<Value>, StoreError> {
    text.as_deref().map(parse).transpose()
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn environments(&self) -> Result<Vec<String>, StoreError> {
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("no client".into()))?;
        let rows = client
            .query(
                &format!("SELECT env FROM {}versions ORDER BY env", self.prefix),
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn load(&self, environment: &str) -> Result<EnvironmentFlags, StoreError> {
        let p = &self.prefix;
        let mut guard = self.client().await?;
        let client = guard
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("no client".into()))?;
        // One snapshot for the version and the flags.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let version: i64 = tx
            .query_opt(
                &format!("SELECT version FROM {p}versions WHERE env = $1"),
                &[&environment],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0);
        let rows = tx
            .query(
                &format!("SELECT key, definition FROM {p}flags WHERE env = $1"),
                &[&environment],
            )
            .await?;
        tx.commit().await?;
        let mut out = EnvironmentFlags {
            version: u64::try_from(version).unwrap_or(0),
            ..Default::default()
        };
        for r in rows {
            let def: String = r.get(1);
            out.flags.insert(r.get(0), parse(&def)?);
        }
        Ok(out)
    }

    async fn commit(
        &self,
        environment: &str,
        changes: Vec<Change>,
        actor: &str,
        at_unix_ms: i64,
    ) -> Result<u64, StoreError> {
        let p = &self.prefix;
        let mut guard = self.client().await?;
        let client = guard
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("no client".into()))?;
        let tx = client.transaction().await?;
        // Bumping the version first takes the environment's row lock: commits to one
        // environment are serialized across all servers, and the reads below see the latest.
        let version: i64 = tx
            .query_one(
                &format!(
                    "INSERT INTO {p}versions (env, version) VALUES ($1, 1)
                     ON CONFLICT (env) DO UPDATE SET version = {p}versions.version + 1
                     RETURNING version"
                ),
                &[&environment],
            )
            .await?
            .get(0);
        for c in &changes {
            let current: Option<String> = tx
                .query_opt(
                    &format!("SELECT definition FROM {p}flags WHERE env = $1 AND key = $2"),
                    &[&environment, &c.key],
                )
                .await?
                .map(|r| r.get(0));
            if parse_opt(current)? != c.before {
                return Err(StoreError::Conflict { key: c.key.clone() });
            }
            match &c.after {
                Some(def) => {
                    tx.execute(
                        &format!(
                            "INSERT INTO {p}flags (env, key, definition) VALUES ($1, $2, $3)
                             ON CONFLICT (env, key) DO UPDATE SET definition = EXCLUDED.definition"
                        ),
                        &[&environment, &c.key, &def.to_string()],
                    )
                    .await?;
                }
                None => {
                    tx.execute(
                        &format!("DELETE FROM {p}flags WHERE env = $1 AND key = $2"),
                        &[&environment, &c.key],
                    )
                    .await?;
                }
            }
            tx.execute(
                &format!(
                    "INSERT INTO {p}audit (env, flag, action, actor, at_ms, before, after)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &environment,
                    &c.key,
                    &c.action,
                    &actor,
                    &at_unix_ms,
                    &c.before.as_ref().map(Value::to_string),
                    &c.after.as_ref().map(Value::to_string),
                ],
            )
            .await?;
        }
        tx.execute("SELECT pg_notify($1, $2)", &[&self.channel(), &environment])
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    async fn audit(
        &self,
        environment: &str,
        query: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let p = &self.prefix;
        let guard = self.client().await?;
        let client = guard
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("no client".into()))?;
        let before = query
            .before_id
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT id, flag, action, actor, at_ms, before, after FROM {p}audit
                     WHERE env = $1 AND ($2::TEXT IS NULL OR flag = $2) AND id < $3
                     ORDER BY id DESC LIMIT $4"
                ),
                &[&environment, &query.flag, &before, &limit],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                    environment: environment.to_owned(),
                    flag: r.get(1),
                    action: r.get(2),
                    actor: r.get(3),
                    at_unix_ms: r.get(4),
                    before: parse_opt(r.get(5))?,
                    after: parse_opt(r.get(6))?,
                })
            })
            .collect()
    }

    fn external_changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.changes.subscribe())
    }
}
