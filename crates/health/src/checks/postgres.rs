use std::sync::Arc;

use tokio_postgres::{Client, Config, NoTls};

use crate::check::{Check, CheckError, CheckFuture};

/// PostgreSQL check: `SELECT 1`, either through the service's own client or
/// over a fresh connection per check.
#[derive(Clone)]
pub struct PostgresCheck {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Client(Arc<Client>),
    Connect(Box<Config>),
}

impl std::fmt::Debug for PostgresCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Client(_) => "client",
            Mode::Connect(_) => "connect",
        };
        f.debug_struct("PostgresCheck")
            .field("mode", &mode)
            .finish()
    }
}

impl PostgresCheck {
    /// Pings through the client the service already uses, so readiness fails
    /// exactly when the service's own queries would. A closed client stays
    /// unhealthy until the service replaces it.
    ///
    /// For a pool (deadpool, bb8, sqlx), wrap its "get a connection and
    /// `SELECT 1`" in [`check_fn`](crate::check_fn).
    pub fn from_client(client: Arc<Client>) -> Self {
        Self {
            mode: Mode::Client(client),
        }
    }

    /// Dials `config` (without TLS) on every check and runs `SELECT 1`, so the
    /// check recovers on its own when the server comes back.
    pub fn connect_each_time(config: Config) -> Self {
        Self {
            mode: Mode::Connect(Box::new(config)),
        }
    }
}

impl Check for PostgresCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match &self.mode {
                Mode::Client(client) => {
                    if client.is_closed() {
                        return Err(CheckError::msg("PostgreSQL connection is closed"));
                    }
                    select_one(client).await
                }
                Mode::Connect(config) => {
                    let (client, connection) = config
                        .connect(NoTls)
                        .await
                        .map_err(|e| CheckError::other("PostgreSQL connect", e))?;
                    // The connection future drives the socket; it ends when
                    // `client` is dropped at the end of this check.
                    let driver = tokio::spawn(connection);
                    let result = select_one(&client).await;
                    drop(client);
                    let _ = driver.await;
                    result
                }
            }
        })
    }
}

async fn select_one(client: &Client) -> Result<(), CheckError> {
    client
        .simple_query("SELECT 1")
        .await
        .map(drop)
        .map_err(|e| CheckError::other("PostgreSQL SELECT 1", e))
}
