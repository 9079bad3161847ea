//! Connection limits for Serin's HTTP servers (the standalone flag server and
//! the control-plane API): a cap on open connections, a deadline for a
//! request's headers that also closes idle keep-alive connections, and a JSON
//! 503 for connections over the cap. hyper's defaults have no cap and axum's
//! `serve` exposes no timeouts, hence this accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;

/// Limits of one HTTP server (`apiLimits:` in serin.yaml; `serin flags serve
/// --max-connections --header-read-timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConnLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; a kept-alive
    /// connection with no new request for this long is closed too.
    pub header_read_timeout_secs: u64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 512,
            header_read_timeout_secs: 10,
        }
    }
}

/// Answer to a connection over the cap (written before reading anything).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 62\r\nretry-after: 1\r\nconnection: close\r\n\r\n{\"error\":\"too many connections; retry in a moment\",\"code\":503}";

/// A hyper service built from a request handler (the router, or the flag
/// server's fast path in front of it).
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// The response body.
    type Body: hyper::body::Body<
            Data = bytes::Bytes,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        > + Send
        + 'static;
    /// Serves one request.
    fn handle(&self, req: Request<Incoming>) -> BoxResponse<Self::Body>;
}

/// A response being computed, independent of the handler that started it.
pub(crate) type BoxResponse<B> = std::pin::Pin<Box<dyn Future<Output = Response<B>> + Send>>;

impl Handler for axum::Router {
    type Body = Body;
    fn handle(&self, req: Request<Incoming>) -> BoxResponse<Body> {
        use tower_service::Service as _;
        // The router is always ready: calling a clone is what `oneshot` does.
        let fut = self.clone().call(req.map(Body::new));
        Box::pin(async move {
            let Ok(r) = fut.await;
            r
        })
    }
}

/// Serves `router` on `listener` (plain TCP or TLS) within `limits` until the
/// listener fails for good; the control plane's API server.
pub async fn serve_router<L>(listener: L, router: axum::Router, limits: ConnLimits)
where
    L: axum::serve::Listener,
{
    serve(listener, router, limits, std::future::pending()).await;
}

/// The accept loop: every connection holds a permit of the cap for its
/// lifetime; `stop` ends accepting, lets requests in flight finish and closes
/// idle connections.
pub(crate) async fn serve<L, H>(
    mut listener: L,
    handler: H,
    limits: ConnLimits,
    stop: impl Future<Output = ()>,
) where
    L: axum::serve::Listener,
    H: Handler,
{
    tokio::pin!(stop);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs.max(1)));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let (io, _peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut stop => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection refused: too many open connections"
            );
            tokio::spawn(async move {
                let mut io = io;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = io.write_all(BUSY).await;
                    let _ = io.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let h = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fut = h.handle(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answer_is_well_formed_json() {
        let text = std::str::from_utf8(BUSY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["code"], 503);
    }

    #[test]
    fn limits_read_from_yaml_with_defaults() {
        let l: ConnLimits = serde_saphyr::from_str("maxConnections: 8\n").expect("valid limits");
        assert_eq!(
            l,
            ConnLimits {
                max_connections: 8,
                ..ConnLimits::default()
            }
        );
    }
}
