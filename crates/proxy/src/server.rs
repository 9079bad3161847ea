//! The client-facing HTTP/1.1 side, lean for the common request.
//!
//! hyper's server was about half of the proxy's user-space instructions per
//! request after the lean upstream path (`lean`): its dispatch machinery,
//! its parse and encode, and a new header-read timer per request
//! (bench/README.md, issue 17). Here a connection's own task reads request
//! heads into the connection's buffer, parses them with `httparse`, sends
//! each bodiless request through the lean upstream path
//! ([`forward::forward_bodiless`]) and writes the response head and body
//! itself: in one write when the body is already there, one after another
//! for pipelined requests, keep-alive by the usual HTTP/1.0 and 1.1 rules.
//! Two timers live as long as the connection and are moved per request
//! instead of made anew (moving a deadline later is one atomic operation):
//! the header-read timeout against slow clients (also the limit on an idle
//! kept-alive connection, as hyper's) and the request timeout.
//!
//! Anything else hands the connection, with every byte read so far and none
//! consumed of the request at hand, to hyper's server for the rest of its
//! life: a request with a body or an `Expect`, an `Upgrade` (WebSocket), an
//! HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`), a `CONNECT` or a
//! request target that is not a path, a head that does not parse (hyper
//! answers 400 or 431 as before), a head over 64 KiB, a listener being
//! removed, and a Service whose upstreams speak h2c. So every behaviour
//! hyper had stays where the lean loop does not apply.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode};
use http_body::Body;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::Shared;
use crate::config::UpstreamProtocol;
use crate::forward::{self, DownBody};
use crate::lean::{RawHead, RawRequest};
use crate::route::Service;

/// Request header lines the lean loop parses (hyper's default limit; a
/// head with more goes to hyper, which answers 431).
const MAX_HEADERS: usize = 100;
/// A request head not complete within this many bytes goes to hyper
/// (which allows about 400 KB).
const MAX_LEAN_HEAD: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Body data up to this size is copied behind the head into one write;
/// larger data is written from its own buffer.
const COPY_MAX: usize = 16 * 1024;
/// Default time a client has for a request head (hyper's default).
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// One listener's state, shared by its connections.
pub(crate) struct Listener {
    pub(crate) shared: Arc<Shared>,
    pub(crate) slot: usize,
    /// hyper's server, for connections handed over.
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) header_timeout: Duration,
    pub(crate) drain: Drain,
}

/// Graceful shutdown of a listener's connections: once started, an idle
/// connection closes at once and a busy one after its current response
/// (handed-over ones through hyper's own graceful shutdown). Connections
/// register a waker once (again only if their task's waker changes), so a
/// request costs an atomic load, not a subscription.
#[derive(Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    next: u64,
    by_id: HashMap<u64, Waker>,
}

impl Drain {
    /// Start draining: wake every connection waiting for a request.
    pub(crate) fn start(&self) {
        self.draining.store(true, SeqCst);
        let wakers = std::mem::take(&mut self.lock().by_id);
        for w in wakers.into_values() {
            w.wake();
        }
    }

    fn is_draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wakers> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's registration with its listener's [`Drain`].
struct DrainWatch<'a> {
    drain: &'a Drain,
    id: u64,
    waker: Option<Waker>,
}

impl<'a> DrainWatch<'a> {
    fn new(drain: &'a Drain) -> Self {
        let mut w = drain.lock();
        w.next += 1;
        Self {
            drain,
            id: w.next,
            waker: None,
        }
    }

    /// Whether draining has started; if not, the task is woken when it does.
    fn poll(&mut self, cx: &Context<'_>) -> bool {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            self.drain.lock().by_id.insert(self.id, w.clone());
            self.waker = Some(w);
        }
        // Read after registering: `start` sets the flag before waking.
        self.drain.is_draining()
    }
}

impl Drop for DrainWatch<'_> {
    fn drop(&mut self) {
        if self.waker.is_some() {
            self.drain.lock().by_id.remove(&self.id);
        }
    }
}

/// A request the lean loop serves.
struct Lean {
    service: Arc<Service>,
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    http11: bool,
    keep_alive: bool,
}

/// What the bytes read so far hold.
enum Parsed {
    /// A whole head the lean loop serves; it was consumed.
    Lean(Lean),
    /// Not for the lean loop: hyper takes the connection, bytes unconsumed.
    HandOver,
    /// More bytes needed.
    Partial,
}

/// The client connection as the lean loop drives it.
struct Conn {
    io: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The response being written (kept to reuse its allocation).
    wbuf: Vec<u8>,
    /// Where the header fields of the head being parsed are.
    names: Vec<Field>,
    /// The request's header lines for the upstream, when it needs no map.
    req: RawRequest,
    /// The upstream response head's header lines.
    raw: RawHead,
}

/// Where a request header field sits in the read buffer, and what it is.
struct Field {
    name: Range<usize>,
    value: Range<usize>,
    kind: Req,
}

/// What a request header is to the lean loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Plain,
    Host,
    /// `Content-Length` (only `0` stays in the lean loop).
    Length,
    ForwardedFor,
    Connection,
    /// `TE`: hop-by-hop unless it is `trailers`.
    Te,
    /// Other hop-by-hop headers: `Keep-Alive`, `Proxy-Connection`, `Trailer`.
    Drop,
    /// A body, a protocol switch or an expectation: hyper's.
    HandOver,
}

/// Classify a request header by its name's bytes: a length check and at
/// most two case-insensitive compares.
fn request_header(n: &[u8]) -> Req {
    let is = |s: &[u8]| n.eq_ignore_ascii_case(s);
    match n.len() {
        2 if is(b"te") => Req::Te,
        4 if is(b"host") => Req::Host,
        6 if is(b"expect") => Req::HandOver,
        7 if is(b"upgrade") => Req::HandOver,
        7 if is(b"trailer") => Req::Drop,
        10 if is(b"connection") => Req::Connection,
        10 if is(b"keep-alive") => Req::Drop,
        14 if is(b"content-length") => Req::Length,
        15 if is(b"x-forwarded-for") => Req::ForwardedFor,
        16 if is(b"proxy-connection") => Req::Drop,
        17 if is(b"transfer-encoding") => Req::HandOver,
        _ => Req::Plain,
    }
}

/// What ended a wait for request bytes.
enum Wait {
    Read(io::Result<usize>),
    Timeout,
    Drain,
}

/// Serve one client connection: the lean loop while its requests allow it,
/// then hyper's server.
pub(crate) async fn serve(ctx: Arc<Listener>, io: TcpStream, client_ip: Option<HeaderValue>) {
    let mut conn = Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: Vec::with_capacity(1024),
        names: Vec::with_capacity(16),
        req: RawRequest::default(),
        raw: RawHead::default(),
    };
    let mut watch = DrainWatch::new(&ctx.drain);
    let mut head_timer = pin!(tokio::time::sleep(ctx.header_timeout));
    let mut request_timer = pin!(tokio::time::sleep(ctx.header_timeout));
    loop {
        // The head's deadline counts from the end of the last response.
        head_timer
            .as_mut()
            .reset(tokio::time::Instant::now() + ctx.header_timeout);
        let req = loop {
            match conn.parse(&ctx, client_ip.as_ref()) {
                Parsed::Lean(req) => break req,
                Parsed::HandOver => return hand_over(&ctx, conn, client_ip, &mut watch).await,
                Parsed::Partial if conn.buf.len() > MAX_LEAN_HEAD => {
                    return hand_over(&ctx, conn, client_ip, &mut watch).await;
                }
                Parsed::Partial => {}
            }
            let idle = conn.buf.is_empty();
            let wait = poll_fn(|cx| {
                if let Poll::Ready(r) = conn.poll_fill(cx) {
                    return Poll::Ready(Wait::Read(r));
                }
                if head_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wait::Timeout);
                }
                // A head already begun is waited for (within its timeout).
                if idle && watch.poll(cx) {
                    return Poll::Ready(Wait::Drain);
                }
                Poll::Pending
            })
            .await;
            match wait {
                Wait::Read(Ok(n)) if n > 0 => {}
                Wait::Timeout => {
                    if !idle {
                        tracing::debug!("request head not received within the header timeout");
                    }
                    return;
                }
                Wait::Read(_) | Wait::Drain => return,
            }
        };
        let started = Instant::now();
        let Lean {
            service,
            method,
            path,
            headers,
            http11,
            keep_alive,
        } = req;
        let resp = forward::forward_bodiless(
            &ctx.shared,
            &service,
            client_ip.as_ref(),
            &method,
            &path,
            headers,
            started,
            request_timer.as_mut(),
            conn.req.raw.then_some(&conn.req),
            &mut conn.raw,
        )
        .await;
        let keep_alive = keep_alive && !ctx.drain.is_draining();
        match conn
            .respond(resp, method == Method::HEAD, http11, keep_alive)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let _ = conn.io.shutdown().await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "client connection ended while answering");
                return;
            }
        }
    }
}

impl Conn {
    /// Read more bytes into `buf`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        pin!(self.io.read_buf(&mut self.buf)).poll(cx)
    }

    /// Look at the bytes read so far for a request head.
    fn parse(&mut self, ctx: &Listener, client_ip: Option<&HeaderValue>) -> Parsed {
        if self.buf.is_empty() {
            return Parsed::Partial;
        }
        let mut raw = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, &self.buf, &mut raw)
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            // hyper answers what does not parse (400, 431), and knows the
            // HTTP/2 preface.
            Err(_) => return Parsed::HandOver,
        };
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Parsed::HandOver;
        };
        let http11 = version == 1;
        if !target.starts_with('/') {
            return Parsed::HandOver;
        }
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Parsed::HandOver;
        };
        if method == Method::CONNECT {
            return Parsed::HandOver;
        }
        let base = self.buf.as_ptr() as usize;
        let path_at = target.as_ptr() as usize - base;
        let path_range = path_at..path_at + target.len();
        let mut keep_alive = http11;
        let mut named = false;
        self.names.clear();
        for h in req.headers.iter() {
            let kind = request_header(h.name.as_bytes());
            match kind {
                // A body (or a length that does not parse) is hyper's.
                Req::Length if h.value.trim_ascii() != b"0" => return Parsed::HandOver,
                Req::HandOver => return Parsed::HandOver,
                Req::Connection => {
                    for t in h.value.split(|&b| b == b',') {
                        let t = t.trim_ascii();
                        if t.eq_ignore_ascii_case(b"close") {
                            keep_alive = false;
                        } else if t.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive |= !http11;
                        } else if !t.eq_ignore_ascii_case(b"upgrade") && !t.is_empty() {
                            named = true;
                        }
                    }
                }
                _ => {}
            }
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            self.names.push(Field {
                name: name..name + h.name.len(),
                value: value..value + h.value.len(),
                kind,
            });
        }
        // The Service in force when its head is complete (a config swap
        // applies to the next request). hyper answers for a listener being
        // removed, and speaks h2c upstream.
        let service = {
            let table = ctx.shared.table.load();
            table.slots.get(ctx.slot).and_then(Clone::clone)
        };
        let Some(service) = service.filter(|s| s.protocol == UpstreamProtocol::Http1) else {
            return Parsed::HandOver;
        };
        // Only now is the head consumed: the values share its bytes.
        let head = self.buf.split_to(len).freeze();
        let Ok(path) = PathAndQuery::from_maybe_shared(head.slice(path_range)) else {
            self.unsplit(head);
            return Parsed::HandOver;
        };
        // Header routes and mirror routes look at a map; otherwise the
        // header lines go upstream as they came, hop-by-hop ones left out
        // (a `Connection` naming others is the map's rare case).
        let mut headers = HeaderMap::new();
        self.req.lines.clear();
        self.req.has_host = false;
        self.req.has_length = false;
        let plain = !service.reads_headers() && !named;
        self.req.raw = plain;
        if plain {
            let r = &mut self.req;
            let mut xff = false;
            for f in &self.names {
                match f.kind {
                    Req::Drop | Req::Connection => continue,
                    Req::Te if &head[f.value.clone()] != b"trailers" => continue,
                    // One line, every value and then the client's address.
                    Req::ForwardedFor if client_ip.is_some() => {
                        if !xff {
                            xff = true;
                            r.lines.extend_from_slice(b"x-forwarded-for: ");
                            for g in self.names.iter().filter(|g| g.kind == Req::ForwardedFor) {
                                r.lines.extend_from_slice(&head[g.value.clone()]);
                                r.lines.extend_from_slice(b", ");
                            }
                            if let Some(ip) = client_ip {
                                r.lines.extend_from_slice(ip.as_bytes());
                            }
                            r.lines.extend_from_slice(b"\r\n");
                        }
                        continue;
                    }
                    Req::Host => r.has_host = true,
                    Req::Length => r.has_length = true,
                    _ => {}
                }
                r.lines.extend_from_slice(&head[f.name.clone()]);
                r.lines.extend_from_slice(b": ");
                r.lines.extend_from_slice(&head[f.value.clone()]);
                r.lines.extend_from_slice(b"\r\n");
            }
            if !xff && let Some(ip) = client_ip {
                r.lines.extend_from_slice(b"x-forwarded-for: ");
                r.lines.extend_from_slice(ip.as_bytes());
                r.lines.extend_from_slice(b"\r\n");
            }
        } else {
            headers.reserve(self.names.len());
            let mut malformed = false;
            for f in &self.names {
                match (
                    HeaderName::from_bytes(&head[f.name.clone()]),
                    HeaderValue::from_maybe_shared(head.slice(f.value.clone())),
                ) {
                    (Ok(n), Ok(v)) => {
                        headers.append(n, v);
                    }
                    _ => malformed = true,
                }
            }
            if malformed {
                self.unsplit(head);
                return Parsed::HandOver;
            }
        }
        Parsed::Lean(Lean {
            service,
            method,
            path,
            headers,
            http11,
            keep_alive,
        })
    }

    /// Put a consumed head back in front of the unread bytes.
    fn unsplit(&mut self, head: Bytes) {
        let mut all = BytesMut::with_capacity(head.len() + self.buf.len());
        all.extend_from_slice(&head);
        all.extend_from_slice(&self.buf);
        self.buf = all;
    }

    /// Write the whole response; `Ok(false)` when the connection must close
    /// after it.
    async fn respond(
        &mut self,
        resp: Response<DownBody>,
        head_request: bool,
        http11: bool,
        mut keep_alive: bool,
    ) -> io::Result<bool> {
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let bodiless = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(if http11 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
        w.extend_from_slice(status.as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        w.extend_from_slice(b"\r\n");
        // An upstream's header lines as they came, or the proxy's own map.
        let (mut has_length, mut has_date) = (false, false);
        if let DownBody::Lean(_) = body {
            w.extend_from_slice(&self.raw.lines);
            (has_length, has_date) = (self.raw.has_length, self.raw.has_date);
        }
        for (name, value) in &parts.headers {
            if *name == header::CONTENT_LENGTH {
                has_length = true;
            } else if *name == header::DATE {
                has_date = true;
            }
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        if !has_date {
            w.extend_from_slice(b"date: ");
            push_date(w);
            w.extend_from_slice(b"\r\n");
        }
        // How the body is framed to the client (as hyper frames it).
        let mut chunked = false;
        if !(has_length || status.is_informational() || status == StatusCode::NO_CONTENT)
            && let Some(n) = body.size_hint().exact()
            && (!bodiless || n > 0)
        {
            w.extend_from_slice(b"content-length: ");
            push_decimal(w, n);
            w.extend_from_slice(b"\r\n");
        } else if !has_length && !bodiless {
            if http11 {
                chunked = true;
                w.extend_from_slice(b"transfer-encoding: chunked\r\n");
            } else {
                // Until the connection closes.
                keep_alive = false;
            }
        }
        if http11 && !keep_alive {
            w.extend_from_slice(b"connection: close\r\n");
        } else if !http11 && keep_alive {
            w.extend_from_slice(b"connection: keep-alive\r\n");
        }
        w.extend_from_slice(b"\r\n");
        if bodiless {
            // A lean HEAD/204/304 body is already done (its connection pooled).
            drop(body);
            self.flush().await?;
            return Ok(keep_alive);
        }
        loop {
            // What is there now goes out with the head; wait only after
            // writing what is buffered.
            let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    self.flush().await?;
                    poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
                }
            };
            let data = match frame {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue, // trailers: dropped
                },
                Some(Err(e)) => {
                    // Cut short: what arrived goes out, then the connection
                    // closes so the client sees the body end early.
                    let _ = self.flush().await;
                    return Err(io::Error::other(e));
                }
            };
            if data.is_empty() {
                continue;
            }
            if chunked {
                push_hex(&mut self.wbuf, data.len());
                self.wbuf.extend_from_slice(b"\r\n");
            }
            if data.len() <= COPY_MAX {
                self.wbuf.extend_from_slice(&data);
            } else {
                write_two(&mut self.io, &self.wbuf, &data).await?;
                self.wbuf.clear();
            }
            if chunked {
                self.wbuf.extend_from_slice(b"\r\n");
            }
            if self.wbuf.len() >= 4 * COPY_MAX {
                self.flush().await?;
            }
        }
        if chunked {
            self.wbuf.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush().await?;
        Ok(keep_alive)
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }
}

/// Write `a` then `b`, in one `writev` where the socket takes it.
async fn write_two(io: &mut TcpStream, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    io.write_all(b).await
}

fn push_decimal(w: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&digits[i..]);
}

fn push_hex(w: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&digits[i..]);
}

/// The `Date` header's value for a response that has none (the proxy's own
/// answers; upstreams send theirs), formatted once a second per thread.
fn push_date(w: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let _ = DATE.try_with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        w.extend_from_slice(d.1.as_bytes());
    });
}

/// Hand the connection to hyper's server (HTTP/1.1 with upgrades, or h2c)
/// for the rest of its life, every unconsumed byte read so far in front.
async fn hand_over(
    ctx: &Arc<Listener>,
    conn: Conn,
    client_ip: Option<HeaderValue>,
    watch: &mut DrainWatch<'_>,
) {
    let io = Prefixed {
        prefix: conn.buf.freeze(),
        io: conn.io,
    };
    let shared = ctx.shared.clone();
    let slot = ctx.slot;
    let svc = service_fn(move |req| forward::handle(shared.clone(), slot, client_ip.clone(), req));
    let mut hyper_conn = pin!(
        ctx.builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
    );
    let mut shutting_down = false;
    let r = poll_fn(|cx| {
        if !shutting_down && watch.poll(cx) {
            shutting_down = true;
            hyper_conn.as_mut().graceful_shutdown();
        }
        hyper_conn.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// A socket with bytes already read from it in front.
struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_heads_and_chunks() {
        let mut w = Vec::new();
        push_decimal(&mut w, 0);
        w.push(b' ');
        push_decimal(&mut w, 18_446_744_073_709_551_615);
        w.push(b' ');
        push_hex(&mut w, 0);
        w.push(b' ');
        push_hex(&mut w, 0x1a2b);
        assert_eq!(w, b"0 18446744073709551615 0 1a2b");
    }
}
