//! The per-request hot path: pick a revision and endpoint, forward with
//! streaming bodies, retry a connect failure on another endpoint, count.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use serin_error_chain::error_chain;
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::UpstreamProtocol;
use crate::route::{Endpoint, Pick, Service};
use crate::stats::{MirrorOutcome, ProxyFailure, RevisionStats};

/// Body sent upstream: the client's streaming body, or one already in
/// memory — empty (which lets a bodiless request be rebuilt for a retry),
/// or read whole so that a mirrored copy can carry it too.
pub(crate) type UpBody = Either<ClientBody, Full<Bytes>>;

/// An upstream body held in memory (`Bytes::new()`: no body at all).
fn in_memory(b: Bytes) -> UpBody {
    Either::Right(Full::new(b))
}
/// Body sent to the client: an upstream's streaming body, or an answer of
/// the proxy's own.
pub(crate) enum DownBody {
    /// Through hyper's client (requests with a body, upgrades, h2c).
    Upstream(UpstreamBody),
    /// Through the lean HTTP/1.1 path (see [`crate::lean`]).
    Lean(crate::lean::LeanBody),
    /// An answer of the proxy's own.
    Proxy(Full<Bytes>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for DownBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Upstream(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Self::Lean(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Self::Proxy(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream(b) => b.is_end_stream(),
            Self::Lean(b) => b.is_end_stream(),
            Self::Proxy(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream(b) => b.size_hint(),
            Self::Lean(b) => b.size_hint(),
            Self::Proxy(b) => b.size_hint(),
        }
    }
}
/// Pooled client for h2c upstreams (one multiplexed connection per endpoint).
pub(crate) type UpClient = Client<HttpConnector, UpBody>;
/// One HTTP/1.1 upstream connection's request handle.
type H1Sender = http1::SendRequest<UpBody>;

/// Idle HTTP/1.1 upstream connections are closed by the next sweep (every
/// 10 s) after this long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per endpoint and thread.
pub(crate) const MAX_IDLE: usize = 512;
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

thread_local! {
    /// Idle keep-alive HTTP/1.1 upstream connections of this thread, indexed
    /// by [`Endpoint::id`] (each proxy worker thread runs its own
    /// single-threaded runtime, so checkout and check-in take no lock, no
    /// hashing and no task hand-off between threads).
    static IDLE: RefCell<Vec<Vec<(Instant, H1Sender)>>> = const { RefCell::new(Vec::new()) };
}

fn checkout(ep: &Endpoint) -> Option<H1Sender> {
    IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(ep.id)?;
        // Most recently used first; the sweep closes those idle too long,
        // so no clock read here.
        while let Some((_, s)) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Close this thread's idle connections that have been idle too long, and
/// forget those the upstream closed (run periodically on every worker).
pub(crate) fn sweep_idle() {
    let _ = IDLE.try_with(|idle| {
        for list in idle.borrow_mut().iter_mut() {
            list.retain(|(since, s)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        }
    });
}

fn check_in(id: usize, s: H1Sender) {
    if s.is_closed() {
        return;
    }
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() <= id {
            idle.resize_with(id + 1, Vec::new);
        }
        let list = &mut idle[id];
        // Most recently used last (checkout pops it first); drop the oldest.
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push((Instant::now(), s));
    });
}

/// What the client's body did, seen from the upstream connection's side: a
/// failed send is the client's fault if reading its body failed, and a
/// timeout is if the proxy was still waiting for the client's next bytes.
#[derive(Debug, Default)]
pub(crate) struct BodyState(AtomicU8);

const BODY_FAILED: u8 = 1;
const BODY_DONE: u8 = 2;
const BODY_WAITING: u8 = 4;

impl BodyState {
    fn has(&self, bit: u8) -> bool {
        self.0.load(Relaxed) & bit != 0
    }
}

/// The client's request body on its way upstream, recording into a
/// [`BodyState`] whether it failed, ended, or is waiting for the client.
pub(crate) struct ClientBody {
    inner: Incoming,
    state: Arc<BodyState>,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        let state = &this.state.0;
        match &r {
            Poll::Pending => {
                state.fetch_or(BODY_WAITING, Relaxed);
            }
            Poll::Ready(Some(Ok(_))) => {
                let done = if this.inner.is_end_stream() {
                    BODY_DONE
                } else {
                    0
                };
                state.fetch_and(!BODY_WAITING, Relaxed);
                state.fetch_or(done, Relaxed);
            }
            Poll::Ready(None) => {
                state.fetch_and(!BODY_WAITING, Relaxed);
                state.fetch_or(BODY_DONE, Relaxed);
            }
            Poll::Ready(Some(Err(_))) => {
                state.fetch_or(BODY_FAILED, Relaxed);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's response body; an HTTP/1.1 connection goes back to the
/// idle pool once the body has been read to its end.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    /// The connection's sender and its endpoint's id.
    pooled: Option<(usize, H1Sender)>,
}

impl UpstreamBody {
    fn new(inner: Incoming, pooled: Option<(usize, H1Sender)>) -> Self {
        Self { inner, pooled }
    }
    fn release(&mut self) {
        if let Some((id, s)) = self.pooled.take() {
            check_in(id, s);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.pooled = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection unusable.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

/// At most this many endpoints are tried for one request.
const MAX_ATTEMPTS: usize = 3;

static HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const HOP_CONNECTION: u8 = 1;
const HOP_TE: u8 = 2;
const HOP_UPGRADE: u8 = 4;
const HOP_OTHER: u8 = 8;

/// Which hop-by-hop headers `n` is, as a bit of the masks above.
fn hop_by_hop_bit(n: &HeaderName) -> u8 {
    if *n == header::CONNECTION {
        HOP_CONNECTION
    } else if *n == header::TE {
        HOP_TE
    } else if *n == header::UPGRADE {
        HOP_UPGRADE
    } else if *n == header::TRANSFER_ENCODING
        || *n == header::TRAILER
        || n.as_str() == "keep-alive"
        || n.as_str() == "proxy-connection"
    {
        HOP_OTHER
    } else {
        0
    }
}

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// `Connection` header names. `upgrade` keeps `Connection: upgrade` and
/// `Upgrade` for a protocol switch.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // One pass over the names (cheap comparisons of standard names) finds
    // which ones are present; only those are looked up and removed. The
    // common cases: none (requests) or `Connection: keep-alive` (responses).
    let present = h.keys().fold(0, |m, n| m | hop_by_hop_bit(n));
    if present & HOP_CONNECTION != 0 {
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
        h.remove(header::CONNECTION);
    }
    if present & HOP_OTHER != 0 {
        for n in &HOP_BY_HOP {
            h.remove(n);
        }
    }
    if present & HOP_TE != 0
        && let Some(te) = h.get(header::TE)
        && te.as_bytes() != b"trailers"
    {
        h.remove(header::TE);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & HOP_UPGRADE != 0 {
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
    let mut resp = Response::new(DownBody::Proxy(Full::new(Bytes::from(body))));
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
    client_ip: Option<HeaderValue>,
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
    Ok(forward(&shared, &service, client_ip.as_ref(), req, started).await)
}

/// At most this many mirrored copies are in flight at once (all Services
/// together); a copy beyond it is dropped and counted, never queued, so a
/// slow canary cannot make the proxy hold memory for traffic it discards.
pub(crate) const MAX_MIRRORS_IN_FLIGHT: usize = 256;

/// Requests with a body are mirrored only when it is at most this long
/// (`Content-Length`): the proxy reads such a body whole before sending it
/// twice, so the bound keeps what copies hold in memory small.
pub(crate) const MAX_MIRROR_BODY: u64 = 64 * 1024;

/// Sends a copy of a request (with `body`, possibly empty) to `target` and
/// discards the answer. Runs on its own task, holding `permit`: the
/// client's request never waits for it, and the copy counts only in the
/// target's mirror counters.
#[allow(clippy::too_many_arguments)]
fn spawn_mirror(
    permit: tokio::sync::OwnedSemaphorePermit,
    shared: &Arc<Shared>,
    service: &Service,
    target: &crate::route::Revision,
    method: &Method,
    path: &PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
) {
    let stats = target.stats.clone();
    let Some((_, ep)) = target.next_endpoint() else {
        stats.record_mirror(MirrorOutcome::Failed);
        return;
    };
    let ep = ep.clone();
    let (client, version) = match service.protocol {
        UpstreamProtocol::Http1 => (None, Version::HTTP_11),
        UpstreamProtocol::Http2 => (Some(shared.http2.clone()), Version::HTTP_2),
    };
    let Some(req) = build_request(method, version, &ep, path, headers, in_memory(body)) else {
        stats.record_mirror(MirrorOutcome::Failed);
        return;
    };
    let timeout = service.timeout;
    tokio::spawn(async move {
        let _permit = permit;
        let copy = async {
            let sent = match &client {
                None => send(send_h1(&ep, req), &ep, timeout, false).await,
                Some(c) => send(send_pooled(c, req), &ep, timeout, true).await,
            };
            let Ok((resp, conn)) = sent else {
                return MirrorOutcome::Failed;
            };
            // Read the answer to its end so the connection can be reused.
            let mut body = UpstreamBody::new(resp.into_body(), conn.map(|c| (ep.id, c)));
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
            MirrorOutcome::Answered
        };
        // The whole copy, answer included, within the request timeout.
        let outcome = tokio::time::timeout(timeout, copy)
            .await
            .unwrap_or(MirrorOutcome::Failed);
        stats.record_mirror(outcome);
    });
}

/// The revision and first endpoint a request goes to, or the proxy's
/// answer when there is none.
fn target<'s>(
    service: &'s Service,
    headers: &HeaderMap,
    started: Instant,
) -> Result<(&'s crate::route::Revision, usize), Box<Response<DownBody>>> {
    match service.pick(headers) {
        Pick::Nothing => Err(Box::new(fail(
            &service.orphan_stats,
            ProxyFailure::NoRevision,
            started,
            "the service selects no revision",
        ))),
        Pick::Revision(r) => match r.next_endpoint() {
            Some((i, _)) => Ok((r, i)),
            None => Err(Box::new(fail(
                &r.stats,
                ProxyFailure::NoEndpoint,
                started,
                "the chosen revision has no ready endpoint",
            ))),
        },
        Pick::Endpoint(r, i) => Ok((r, i)),
    }
}

/// Forward a request without a body or protocol switch, from the lean
/// client-facing side (see [`crate::server`]), to a Service whose upstreams
/// speak HTTP/1.1: what [`forward`] does for such a request, with the
/// request timeout on `deadline`, a timer the client connection keeps
/// (reset per attempt; moving a deadline later is one atomic operation,
/// where a new timer is a registration and a removal in tokio's wheel).
/// An upstream's answer comes with an empty header map: its header lines
/// are in `raw`, for the client side to write as they are. With
/// `raw_request` (a Service that routes and copies by no header), the
/// request's header lines are those and `headers` is empty.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward_bodiless(
    shared: &Arc<Shared>,
    service: &Service,
    client_ip: Option<&HeaderValue>,
    method: &Method,
    path: &PathAndQuery,
    mut headers: HeaderMap,
    started: Instant,
    mut deadline: Pin<&mut tokio::time::Sleep>,
    raw_request: Option<&crate::lean::RawRequest>,
    raw: &mut crate::lean::RawHead,
) -> Response<DownBody> {
    let (revision, first) = match target(service, &headers, started) {
        Ok(t) => t,
        Err(answer) => return *answer,
    };
    strip_hop_by_hop(&mut headers, false);
    // With mirror routes, X-Forwarded-For is in the map (copies carry it).
    let forwarded_for = if service.has_mirrors() {
        if let Some(ip) = client_ip {
            append_forwarded_for(&mut headers, ip);
        }
        if !service.header_routed(&headers)
            && let Some(target) = service.mirror(method, path.path(), &headers)
        {
            match shared.mirrors.clone().try_acquire_owned() {
                Ok(permit) => spawn_mirror(
                    permit,
                    shared,
                    service,
                    target,
                    method,
                    path,
                    headers.clone(),
                    Bytes::new(),
                ),
                Err(_) => target.stats.record_mirror(MirrorOutcome::Dropped),
            }
        }
        None
    } else {
        client_ip
    };
    let retryable = idempotent(method);
    let attempts = if retryable {
        revision.endpoints.len().min(MAX_ATTEMPTS)
    } else {
        1
    };
    let mut last_connect_error = String::new();
    for attempt in 0..attempts {
        let ep = &revision.endpoints[(first + attempt) % revision.endpoints.len()];
        // The first attempt's clock is the request's start.
        let now = if attempt == 0 {
            started
        } else {
            Instant::now()
        };
        let at = tokio::time::Instant::from_std(now) + service.timeout;
        deadline.as_mut().reset(at);
        let send = crate::lean::send(
            ep,
            method,
            path,
            &headers,
            forwarded_for,
            retryable,
            raw_request,
            Some(&mut *raw),
        );
        let sent = tokio::select! {
            biased;
            r = send => match r {
                Err(SendError::Other(_) | SendError::Connect(_)) if ep.is_cut() => {
                    Err(SendError::CutOff)
                }
                r => r,
            },
            () = deadline.as_mut() => Err(SendError::Timeout),
        };
        match sent {
            Ok(resp) => {
                revision
                    .stats
                    .record_upstream(resp.status().as_u16(), started.elapsed());
                return resp.map(DownBody::Lean);
            }
            Err(SendError::Connect(e)) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "connect failed");
                revision.stats.record_connect_failure();
                last_connect_error = format!("{}: {e}", ep.addr);
            }
            Err(e) => return send_failed(&revision.stats, e, ep, started, |_| false),
        }
    }
    fail(
        &revision.stats,
        ProxyFailure::Connect,
        started,
        &last_connect_error,
    )
}

async fn forward(
    shared: &Arc<Shared>,
    service: &Service,
    client_ip: Option<&HeaderValue>,
    mut req: Request<Incoming>,
    started: Instant,
) -> Response<DownBody> {
    let (revision, first) = match target(service, req.headers(), started) {
        Ok(t) => t,
        Err(answer) => return *answer,
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
    let bodiless = body.is_end_stream();
    // The common request takes the lean path (see `lean`): it writes
    // X-Forwarded-For while encoding the head, unless mirror routes may
    // match on the header map (then it is in the map, as for hyper's path).
    let lean = !upgrade && bodiless && service.protocol == UpstreamProtocol::Http1;
    let lean_forwarded_for = if lean && !service.has_mirrors() {
        client_ip
    } else {
        if let Some(ip) = client_ip {
            append_forwarded_for(&mut parts.headers, ip);
        }
        None
    };
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    let mut body = Some(body);
    let mut buffered = None;
    if !upgrade
        && !service.header_routed(&parts.headers)
        && let Some(target) = service.mirror(&parts.method, parts.uri.path(), &parts.headers)
    {
        let small = body
            .as_ref()
            .and_then(|b| b.size_hint().exact())
            .is_some_and(|n| n <= MAX_MIRROR_BODY);
        if !bodiless && !small {
            target.stats.record_mirror(MirrorOutcome::SkippedBody);
        } else if let Ok(permit) = shared.mirrors.clone().try_acquire_owned() {
            let copy = if bodiless {
                Bytes::new()
            } else {
                // Read the (small) body whole, once, for both sends.
                let Some(incoming) = body.take() else {
                    return fail(
                        &revision.stats,
                        ProxyFailure::BadRequestBody,
                        started,
                        "the request body was already taken",
                    );
                };
                match tokio::time::timeout(service.timeout, incoming.collect()).await {
                    Ok(Ok(b)) => b.to_bytes(),
                    Ok(Err(_)) => {
                        return fail(
                            &revision.stats,
                            ProxyFailure::BadRequestBody,
                            started,
                            "the request body could not be read",
                        );
                    }
                    Err(_) => {
                        return fail(
                            &revision.stats,
                            ProxyFailure::ClientTimeout,
                            started,
                            "the request body did not arrive within the request timeout",
                        );
                    }
                }
            };
            buffered = (!bodiless).then(|| copy.clone());
            let headers = parts.headers.clone();
            spawn_mirror(
                permit,
                shared,
                service,
                target,
                &parts.method,
                &path,
                headers,
                copy,
            );
        } else {
            target.stats.record_mirror(MirrorOutcome::Dropped);
        }
    }
    let body_state = body
        .as_ref()
        .filter(|_| !bodiless)
        .map(|_| Arc::new(BodyState::default()));
    let mut body = match (body, &body_state, buffered) {
        (_, _, Some(b)) => in_memory(b),
        (Some(inner), Some(state), None) => Either::Left(ClientBody {
            inner,
            state: state.clone(),
        }),
        _ => in_memory(Bytes::new()),
    };
    let client_did = |bit| body_state.as_ref().is_some_and(|s| s.has(bit));
    let retryable = bodiless && idempotent(&parts.method);
    let attempts = if retryable {
        revision.endpoints.len().min(MAX_ATTEMPTS)
    } else {
        1
    };
    let (client, up_version) = match service.protocol {
        UpstreamProtocol::Http1 => (None, Version::HTTP_11),
        UpstreamProtocol::Http2 => (Some(&shared.http2), Version::HTTP_2),
    };

    let mut headers = Some(parts.headers);
    let mut last_connect_error = String::new();
    for attempt in 0..attempts {
        let ep = &revision.endpoints[(first + attempt) % revision.endpoints.len()];
        let last = attempt + 1 == attempts;
        if lean {
            let Some(h) = headers.as_ref() else { break };
            // A plain timeout, not `send`'s select: nothing to watch but the
            // clock (a cut-off shuts the socket down, failing the read).
            let sent = match tokio::time::timeout(
                service.timeout,
                crate::lean::send(
                    ep,
                    &parts.method,
                    &path,
                    h,
                    lean_forwarded_for,
                    retryable,
                    None,
                    None,
                ),
            )
            .await
            {
                Ok(Err(SendError::Other(_) | SendError::Connect(_))) if ep.is_cut() => {
                    Err(SendError::CutOff)
                }
                Ok(r) => r,
                Err(_) => Err(SendError::Timeout),
            };
            match sent {
                Ok(mut resp) => {
                    revision
                        .stats
                        .record_upstream(resp.status().as_u16(), started.elapsed());
                    *resp.version_mut() = down_version;
                    return resp.map(DownBody::Lean);
                }
                Err(SendError::Connect(e)) => {
                    tracing::debug!(endpoint = %ep.addr, error = %e, "connect failed");
                    revision.stats.record_connect_failure();
                    last_connect_error = format!("{}: {e}", ep.addr);
                    continue;
                }
                Err(e) => return send_failed(&revision.stats, e, ep, started, |_| false),
            }
        }
        // Keep a copy of the headers only when another attempt may need them.
        let h = if last {
            headers.take().unwrap_or_default()
        } else {
            headers.clone().unwrap_or_default()
        };
        let this_body = if last {
            std::mem::replace(&mut body, in_memory(Bytes::new()))
        } else {
            in_memory(Bytes::new())
        };
        let Some(up_req) = build_request(&parts.method, up_version, ep, &path, h, this_body) else {
            return fail(
                &revision.stats,
                ProxyFailure::Upstream,
                started,
                "bad upstream URI",
            );
        };
        let sent = match client {
            None => send(send_h1(ep, up_req), ep, service.timeout, false).await,
            Some(c) => send(send_pooled(c, up_req), ep, service.timeout, true).await,
        };
        match sent {
            Ok((mut resp, conn)) => {
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
                    return resp.map(|b| DownBody::Upstream(UpstreamBody::new(b, None)));
                }
                strip_hop_by_hop(resp.headers_mut(), false);
                *resp.version_mut() = down_version;
                let pooled = conn.map(|c| (ep.id, c));
                return resp.map(|b| DownBody::Upstream(UpstreamBody::new(b, pooled)));
            }
            Err(SendError::Connect(e)) => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "connect failed");
                revision.stats.record_connect_failure();
                last_connect_error = format!("{}: {e}", ep.addr);
            }
            Err(e) => return send_failed(&revision.stats, e, ep, started, client_did),
        }
    }
    fail(
        &revision.stats,
        ProxyFailure::Connect,
        started,
        &last_connect_error,
    )
}

/// The answer to a request whose send failed other than by a connect
/// failure; `client_did` tells what the client's body did.
fn send_failed(
    stats: &RevisionStats,
    e: SendError,
    ep: &Endpoint,
    started: Instant,
    client_did: impl Fn(u8) -> bool,
) -> Response<DownBody> {
    match e {
        SendError::Timeout if client_did(BODY_WAITING) && !client_did(BODY_DONE) => fail(
            stats,
            ProxyFailure::ClientTimeout,
            started,
            "the request body did not arrive within the request timeout",
        ),
        SendError::Timeout => fail(
            stats,
            ProxyFailure::Timeout,
            started,
            "no response headers within the request timeout",
        ),
        SendError::CutOff => fail(
            stats,
            ProxyFailure::Drained,
            started,
            "endpoint left the set and its drain grace expired",
        ),
        SendError::Other(e) if client_did(BODY_FAILED) => {
            tracing::debug!(endpoint = %ep.addr, error = %e, "client body failed");
            fail(
                stats,
                ProxyFailure::BadRequestBody,
                started,
                "the request body could not be read",
            )
        }
        SendError::Other(e) | SendError::Connect(e) => {
            tracing::debug!(endpoint = %ep.addr, error = %e, "upstream failed");
            fail(stats, ProxyFailure::Upstream, started, &e)
        }
    }
}

/// The client's address as a header value, made once per connection.
pub(crate) fn client_ip_value(remote: SocketAddr) -> Option<HeaderValue> {
    HeaderValue::from_str(&remote.ip().to_string()).ok()
}

fn append_forwarded_for(h: &mut HeaderMap, ip: &HeaderValue) {
    let value = match h.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip.as_bytes());
            match HeaderValue::from_bytes(&v) {
                Ok(v) => v,
                Err(_) => return,
            }
        }
        None => ip.clone(),
    };
    h.insert(X_FORWARDED_FOR.clone(), value);
}

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn build_request(
    method: &Method,
    version: Version,
    ep: &Endpoint,
    path: &PathAndQuery,
    headers: HeaderMap,
    body: UpBody,
) -> Option<Request<UpBody>> {
    let mut headers = headers;
    let uri = if version == Version::HTTP_11 {
        // Sent on our own connection: origin-form, and a Host header.
        if !headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(ep.authority.as_str())
        {
            headers.insert(header::HOST, v);
        }
        Uri::from(path.clone())
    } else {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(ep.authority.clone());
        uri.path_and_query = Some(path.clone());
        Uri::from_parts(uri).ok()?
    };
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Some(req)
}

pub(crate) enum SendError {
    Connect(String),
    Timeout,
    CutOff,
    Other(String),
}

type Sent = (Response<Incoming>, Option<H1Sender>);

/// Await `fut` within the request timeout. HTTP/1.1 connection tasks are
/// aborted when their endpoint is cut off (see [`connect`]: nothing to
/// watch per request), which fails the request in flight; h2c requests
/// (`watch_cut`) watch the cut-off here.
async fn send<T>(
    fut: impl Future<Output = Result<T, SendError>>,
    ep: &Endpoint,
    timeout: Duration,
    watch_cut: bool,
) -> Result<T, SendError> {
    let r = tokio::select! {
        biased;
        r = fut => r,
        () = tokio::time::sleep(timeout) => Err(SendError::Timeout),
        () = ep.cut_off(), if watch_cut => Err(SendError::CutOff),
    };
    match r {
        Err(SendError::Other(_) | SendError::Connect(_)) if ep.is_cut() => Err(SendError::CutOff),
        r => r,
    }
}

/// h2c upstream: hyper-util's pooled client (one multiplexed connection).
async fn send_pooled(client: &UpClient, req: Request<UpBody>) -> Result<Sent, SendError> {
    match client.request(req).await {
        Ok(r) => Ok((r, None)),
        Err(e) if e.is_connect() => Err(SendError::Connect(error_chain(&e))),
        Err(e) => Err(SendError::Other(error_chain(&e))),
    }
}

/// HTTP/1.1 upstream: an idle keep-alive connection of this thread, else a
/// new one. A request an idle connection could not take (it was closing) is
/// sent on the next one.
async fn send_h1(ep: &Arc<Endpoint>, mut req: Request<UpBody>) -> Result<Sent, SendError> {
    while let Some(mut s) = checkout(ep) {
        if s.ready().await.is_err() {
            continue;
        }
        match s.try_send_request(req).await {
            Ok(resp) => return Ok((resp, Some(s))),
            Err(mut e) => match e.take_message() {
                Some(r) => req = r,
                None => return Err(SendError::Other(error_chain(&e.into_error()))),
            },
        }
    }
    let mut s = connect(ep)
        .await
        .map_err(|e| SendError::Connect(error_chain(&e)))?;
    if let Err(e) = s.ready().await {
        return Err(SendError::Connect(error_chain(&e)));
    }
    match s.send_request(req).await {
        Ok(resp) => Ok((resp, Some(s))),
        Err(e) => Err(SendError::Other(error_chain(&e))),
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("tcp connect error")]
    Io(#[source] std::io::Error),
    #[error("tcp connect timed out")]
    Timeout,
    #[error("handshake failed")]
    Handshake(#[source] hyper::Error),
}

/// A new HTTP/1.1 connection to `ep`, driven by its own task until it
/// closes or the endpoint is cut off (its drain grace expired: the task is
/// aborted, which fails the request in flight on it).
async fn connect(ep: &Arc<Endpoint>) -> Result<H1Sender, ConnectError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ep.addr))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    let id = ep.next_conn_id();
    let owner = ep.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
        owner.forget_conn(id);
    });
    // The task cannot have run yet (it is on this thread's runtime, and
    // this function has not yielded since spawning it).
    ep.track_conn(id, task.abort_handle());
    Ok(sender)
}

/// Build the pooled h2c client.
pub(crate) fn h2_client() -> UpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let exec = hyper_util::rt::TokioExecutor::new();
    Client::builder(exec)
        .http2_only(true)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("trailer", "x-sum"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
            ("host", "shop"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "host"]);

        // `TE: trailers` is end-to-end; a response's lone keep-alive goes.
        let mut h = map(&[("te", "trailers"), ("connection", "keep-alive")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.get("te").map(HeaderValue::as_bytes),
            Some(&b"trailers"[..])
        );

        // Nothing hop-by-hop: untouched.
        let mut h = map(&[("accept", "*/*"), ("content-length", "3")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);

        // A protocol switch keeps Upgrade and says Connection: upgrade only.
        let mut h = map(&[
            ("connection", "Upgrade, x-secret"),
            ("x-secret", "1"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("upgrade").map(HeaderValue::as_bytes),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get("connection").map(HeaderValue::as_bytes),
            Some(&b"upgrade"[..])
        );
        assert!(h.get("x-secret").is_none());
    }

    #[test]
    fn forwarded_for_is_appended_to_what_the_client_sent() {
        let ip = client_ip_value("10.1.2.3:4567".parse().expect("addr")).expect("value");
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &ip);
        assert_eq!(
            h.get("x-forwarded-for").map(HeaderValue::as_bytes),
            Some(&b"10.1.2.3"[..])
        );
        let mut h = map(&[("x-forwarded-for", "192.0.2.7")]);
        append_forwarded_for(&mut h, &ip);
        assert_eq!(
            h.get("x-forwarded-for").map(HeaderValue::as_bytes),
            Some(&b"192.0.2.7, 10.1.2.3"[..])
        );
        let v6 = client_ip_value("[::1]:80".parse().expect("addr")).expect("value");
        assert_eq!(v6.as_bytes(), b"::1");
    }
}
