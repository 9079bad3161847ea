//! The local admin API the control plane talks to:
//! `PUT|GET /v1/config`, `GET /v1/stats`, `GET /metrics`, `GET /healthz`.
//! Everything but `GET /healthz` and `GET /metrics` (read-only, for probes
//! and Prometheus) needs `Authorization: Bearer <admin token>`: without it,
//! anyone on the machine could point a Service's traffic at their own
//! endpoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{ConfigError, ProxyConfig, ProxyError, Shared};

/// Largest accepted config document.
const MAX_CONFIG_BYTES: usize = 8 << 20;

type AdminResponse = Response<Full<Bytes>>;

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    let svc = service_fn(move |req| handle(shared.clone(), req));
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    conns.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "admin connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    conns.abort_all();
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> AdminResponse {
    let body = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode response: {e}\"}}").into_bytes());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: &str, field: &str) -> AdminResponse {
    json(
        status,
        &serde_json::json!({ "error": message, "field": field }),
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<AdminResponse, Infallible> {
    let path = req.uri().path();
    let open = req.method() == Method::GET && matches!(path, "/healthz" | "/metrics");
    if !open
        && !req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| shared.token.accepts(v.as_bytes()))
    {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "this admin endpoint needs `Authorization: Bearer <the proxy's admin token>`",
            "",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(resp);
    }
    let resp = match (req.method(), path) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        (&Method::GET, "/v1/config") => json(StatusCode::OK, &crate::effective(&shared)),
        (&Method::PUT, "/v1/config") => put_config(&shared, req).await,
        (&Method::GET, "/v1/stats") => json(StatusCode::OK, &crate::stats_snapshot(&shared)),
        (&Method::GET, "/metrics") => {
            let mut resp = Response::new(Full::new(Bytes::from(crate::metrics_text(&shared))));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        (_, "/healthz" | "/v1/config" | "/v1/stats" | "/metrics") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", "")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; see /v1/config, /v1/stats, /metrics, /healthz",
            "",
        ),
    };
    Ok(resp)
}

async fn put_config(shared: &Arc<Shared>, req: Request<Incoming>) -> AdminResponse {
    let body = match Limited::new(req.into_body(), MAX_CONFIG_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body (at most {MAX_CONFIG_BYTES} bytes): {e}"),
                "",
            );
        }
    };
    let config = match parse(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.message, &e.field),
    };
    match crate::apply(shared, config).await {
        Ok(effective) => json(StatusCode::OK, &effective),
        Err(e) => {
            let status = match e {
                ProxyError::Bind { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            error(status, &e.to_string(), e.field())
        }
    }
}

/// Parse with the JSON path of a type error (`services[0].weights[1].weight`).
fn parse(body: &[u8]) -> Result<ProxyConfig, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let config: ProxyConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ConfigError {
            // serde_path_to_error says "." for the root and "?" when unknown.
            field: if path == "." || path == "?" {
                String::new()
            } else {
                path
            },
            message: format!("invalid config JSON: {inner}"),
        }
    })?;
    config.validate()?;
    Ok(config)
}
