//! The per-request hot path: pick a revision and endpoint, forward with
//! streaming bodies, retry a connect failure on another endpoint, count.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use crate::Shared;
use crate::config::UpstreamProtocol;
use crate::route::{Endpoint, Pick, Service};
use crate::stats::{ProxyFailure, RevisionStats};

/// Body sent upstream: the client's streaming body, or nothing (which lets
/// a bodiless request be rebuilt for a retry).
pub(crate) type UpBody = Either<Incoming, Empty<Bytes>>;
/// Body sent to the client: the upstream's streaming body, or a proxy error.
pub(crate) type DownBody = Either<Incoming, Full<Bytes>>;
/// Pooled keep-alive client.
pub(crate) type UpClient = Client<HttpConnector, UpBody>;

/// At most this many endpoints are tried for one request.
const MAX_ATTEMPTS: usize = 3;

static HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// `Connection` header names. `upgrade` keeps `Connection: upgrade` and
/// `Upgrade` for a protocol switch.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    if let Some(conn) = h.get(header::CONNECTION) {
        // Rare beyond keep-alive/close/upgrade: allocate only when it names others.
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| {
                !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    if let Some(te) = h.get(header::TE)
        && te.as_bytes() != b"trailers"
    {
        h.remove(header::TE);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A JSON error answered by the proxy itself.
pub(crate) fn error_response(status: u16, error: &str, detail: &str) -> Response<DownBody> {
    let body = serde_json::json!({ "error": error, "detail": detail }).to_string();
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("x-serin-proxy-error", HeaderValue::from_static("1"));
    resp
}

fn fail(
    stats: &RevisionStats,
    f: ProxyFailure,
    started: Instant,
    detail: &str,
) -> Response<DownBody> {
    stats.record_proxy(f, started.elapsed());
    error_response(f.status(), f.reason(), detail)
}

/// Serve one request on the listener of slot `slot`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    slot: usize,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<DownBody>, Infallible> {
    let started = Instant::now();
    let service = {
        let table = shared.table.load();
        table.slots.get(slot).and_then(Clone::clone)
    };
    let Some(service) = service else {
        return Ok(error_response(
            503,
            "no_service",
            "this listener is being removed",
        ));
    };
    Ok(forward(&shared, &service, remote, req, started).await)
}

async fn forward(
    shared: &Shared,
    service: &Service,
    remote: SocketAddr,
    mut req: Request<Incoming>,
    started: Instant,
) -> Response<DownBody> {
    let (revision, first) = match service.pick(req.headers()) {
        Pick::Nothing => {
            return fail(
                &service.orphan_stats,
                ProxyFailure::NoEndpoint,
                started,
                "the service selects no revision",
            );
        }
        Pick::Revision(r) => match r.next_endpoint() {
            Some((i, _)) => (r, i),
            None => {
                return fail(
                    &r.stats,
                    ProxyFailure::NoEndpoint,
                    started,
                    "the chosen revision has no ready endpoint",
                );
            }
        },
        Pick::Endpoint(r, i) => (r, i),
    };

    let upgrade = wants_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let down_version = parts.version;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // HTTP/2 clients send the host as :authority; keep it for HTTP/1 upstreams.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    append_forwarded_for(&mut parts.headers, remote);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    let bodiless = body.is_end_stream();
    let mut body = if bodiless {
        Either::Right(Empty::new())
    } else {
        Either::Left(body)
    };
    let retryable = bodiless && idempotent(&parts.method);
    let attempts = if retryable {
        revision.endpoints.len().min(MAX_ATTEMPTS)
    } else {
        1
    };
    let (client, up_version) = match service.protocol {
        UpstreamProtocol::Http1 => (&shared.http1, Version::HTTP_11),
        UpstreamProtocol::Http2 => (&shared.http2, Version::HTTP_2),
    };

    let mut headers = Some(parts.headers);
    let mut last_connect_error = String::new();
    for attempt in 0..attempts {
        let ep = &revision.endpoints[(first + attempt) % revision.endpoints.len()];
        let last = attempt + 1 == attempts;
        // Keep a copy of the headers only when another attempt may need them.
        let h = if last {
            headers.take().unwrap_or_default()
        } else {
            headers.clone().unwrap_or_default()
        };
        let this_body = if last {
            std::mem::replace(&mut body, Either::Right(Empty::new()))
        } else {
            Either::Right(Empty::new())
        };
        let Some(up_req) = build_request(&parts.method, up_version, ep, &path, h, this_body) else {
            return fail(
                &revision.stats,
                ProxyFailure::Upstream,
                started,
                "bad upstream URI",
            );
        };
        match send(client, ep, up_req, service.timeout).await {
            Ok(mut resp) => {
                let status = resp.status();
                revision
                    .stats
                    .record_upstream(status.as_u16(), started.elapsed());
                if status == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    let upstream_upgrade = hyper::upgrade::on(&mut resp);
                    tokio::spawn(async move {
                        if let (Ok(c), Ok(u)) = tokio::join!(client_upgrade, upstream_upgrade) {
                            let mut c = TokioIo::new(c);
                            let mut u = TokioIo::new(u);
                            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                                tracing::debug!(error = %e, "upgraded connection ended");
                            }
                        }
                    });
                    return resp.map(Either::Left);
                }
                strip_hop_by_hop(resp.headers_mut(), false);
                *resp.version_mut() = down_version;
                return resp.map(Either::Left);
            }
            Err(SendError::Connect(e)) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "connect failed");
                last_connect_error = format!("{}: {e}", ep.addr);
            }
            Err(SendError::Timeout) => {
                return fail(
                    &revision.stats,
                    ProxyFailure::Timeout,
                    started,
                    "no response headers within the request timeout",
                );
            }
            Err(SendError::CutOff) => {
                return fail(
                    &revision.stats,
                    ProxyFailure::Timeout,
                    started,
                    "endpoint left the set and its drain grace expired",
                );
            }
            Err(SendError::Other(e)) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "upstream failed");
                return fail(&revision.stats, ProxyFailure::Upstream, started, &e);
            }
        }
    }
    fail(
        &revision.stats,
        ProxyFailure::Connect,
        started,
        &last_connect_error,
    )
}

fn append_forwarded_for(h: &mut HeaderMap, remote: SocketAddr) {
    use std::io::Write as _;
    // Format the address on the stack: one allocation (the header value).
    let mut buf = [0u8; 48];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    if write!(cur, "{}", remote.ip()).is_err() {
        return;
    }
    let len = usize::try_from(cur.position()).unwrap_or(0);
    let ip = &buf[..len];
    let value = match h.get("x-forwarded-for") {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip);
            HeaderValue::from_bytes(&v)
        }
        None => HeaderValue::from_bytes(ip),
    };
    if let Ok(v) = value {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn build_request(
    method: &Method,
    version: Version,
    ep: &Endpoint,
    path: &PathAndQuery,
    headers: HeaderMap,
    body: UpBody,
) -> Option<Request<UpBody>> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(ep.authority.clone());
    uri.path_and_query = Some(path.clone());
    let uri = Uri::from_parts(uri).ok()?;
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Some(req)
}

enum SendError {
    Connect(String),
    Timeout,
    CutOff,
    Other(String),
}

async fn send(
    client: &UpClient,
    ep: &Endpoint,
    req: Request<UpBody>,
    timeout: std::time::Duration,
) -> Result<Response<Incoming>, SendError> {
    tokio::select! {
        r = client.request(req) => r.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(source_chain(&e))
            } else {
                SendError::Other(source_chain(&e))
            }
        }),
        () = tokio::time::sleep(timeout) => Err(SendError::Timeout),
        () = ep.cut_off() => Err(SendError::CutOff),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Build the pooled clients (one per upstream protocol).
pub(crate) fn clients() -> (UpClient, UpClient) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
    let exec = hyper_util::rt::TokioExecutor::new();
    let http1 = Client::builder(exec.clone())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector.clone());
    let http2 = Client::builder(exec)
        .http2_only(true)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    (http1, http2)
}
