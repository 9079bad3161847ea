use redis::aio::ConnectionLike;

use crate::check::{Check, CheckError, CheckFuture};

/// Redis check: `PING` through the service's own connection — a
/// `redis::aio::ConnectionManager` (reconnects by itself, so the check
/// recovers when Redis returns) or a `MultiplexedConnection`.
#[derive(Clone)]
pub struct RedisCheck<C> {
    conn: C,
}

impl<C> std::fmt::Debug for RedisCheck<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCheck").finish_non_exhaustive()
    }
}

impl<C> RedisCheck<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Pings through a clone of `conn` (clones share the underlying connection).
    pub fn new(conn: C) -> Self {
        Self { conn }
    }
}

impl<C> Check for RedisCheck<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let reply: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| CheckError::other("Redis PING", e))?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(CheckError::UnexpectedReply(format!(
                    "PING answered {reply:?}"
                )))
            }
        })
    }
}
