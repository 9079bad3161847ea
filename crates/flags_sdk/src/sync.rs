//! The background task: holds the SSE change stream open, refetches the definitions when
//! an event announces a version it does not have, reconnects with exponential backoff, and
//! keeps the status current. The last good set is never dropped.

use std::sync::Arc;
use std::time::Duration;

use crate::http::{SseParser, event_etag, next_chunk};
use crate::{Shared, Status, SyncError};

/// Axum's SSE keep-alive comes every 15 s; three missed ones mean a dead connection.
const IDLE_LIMIT: Duration = Duration::from_secs(45);

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = shared.backoff_min;
    loop {
        match shared.http.open_events().await {
            Ok(mut body) => {
                // Subscribed first, then fetched: a change between the two is not missed.
                match shared.refresh().await {
                    Ok(()) => {
                        shared.set_status(Status::Ready);
                        backoff = shared.backoff_min;
                        let end = follow(&shared, &mut body).await;
                        tracing::warn!(error = %end, "flag change stream ended; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "fetching flag definitions failed"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the flag change stream"),
        }
        shared.mark_unreachable();
        tokio::time::sleep(jittered(backoff)).await;
        backoff = (backoff * 2).min(shared.backoff_max);
    }
}

/// Reads events until the stream fails; returns why it ended.
async fn follow(shared: &Shared, body: &mut hyper::body::Incoming) -> SyncError {
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(IDLE_LIMIT, next_chunk(body)).await {
            Err(_) => return SyncError::Unreachable("no keep-alive for 45 s".into()),
            Ok(Err(e)) => return e,
            Ok(Ok(None)) => return SyncError::Unreachable("the server closed the stream".into()),
            Ok(Ok(Some(c))) => c,
        };
        for data in parser.push(&chunk) {
            let announced = event_etag(&data);
            if announced.is_some() && announced == shared.version() {
                continue;
            }
            if let Err(e) = shared.refresh().await {
                return e;
            }
        }
    }
}

/// ±25 % around `d`, so that many SDKs do not reconnect in lockstep after an outage. The
/// jitter comes from the clock's nanoseconds: it needs to differ between processes, not be
/// unpredictable.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_millis(400);
        for _ in 0..100 {
            let j = jittered(d);
            assert!(
                j >= Duration::from_millis(300) && j <= Duration::from_millis(500),
                "{j:?}"
            );
        }
    }
}
