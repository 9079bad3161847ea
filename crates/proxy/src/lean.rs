//! The lean HTTP/1.1 upstream path, for the common request: no body, no
//! protocol switch, an HTTP/1.1 upstream.
//!
//! hyper's client runs each connection as a task of its own and hands every
//! request to it through a channel and its response back through a oneshot,
//! and parses and encodes through its general machinery; that was about a
//! third of the proxy's user-space instructions per request (callgrind,
//! bench/README.md). Here the request's own task writes the head straight
//! into the socket, from the client's parsed header map or, for the lean
//! client side (`server`), from its header lines as they came
//! ([`RawRequest`]); it reads the response head with `httparse` into a
//! `HeaderMap`, or for the lean client side into header lines
//! ([`RawHead`]), hop-by-hop headers dropped on the way either way, and
//! streams the body from the socket as the client reads it
//! (`Content-Length`, chunked or until close). A connection goes back to
//! this thread's idle pool once its response has been read to the end.
//!
//! Everything else (request bodies, upgrades, h2c upstreams, mirrored
//! copies) takes hyper's client in `forward`.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serin_error_chain::error_chain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::forward::{CONNECT_TIMEOUT, IDLE_TIMEOUT, MAX_IDLE, SendError, X_FORWARDED_FOR};
use crate::route::Endpoint;

/// Response header lines accepted (hyper's default).
const MAX_HEADERS: usize = 100;
/// A response head (or a chunk-size or trailer line) longer than this is
/// refused.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

thread_local! {
    /// Idle lean connections of this thread by [`Endpoint::id`] (as in
    /// `forward`'s pool: each worker thread runs its own runtime, so no lock).
    static IDLE: RefCell<Vec<Vec<(Instant, Conn)>>> = const { RefCell::new(Vec::new()) };
}

/// One upstream HTTP/1.1 connection, driven by whichever request holds it.
pub(crate) struct Conn {
    io: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request head being written (kept to reuse its allocation).
    wbuf: Vec<u8>,
    /// Response header names and value offsets, between parsing the head
    /// and building its map (kept to reuse its allocation).
    names: Vec<Kept>,
    ep: Arc<Endpoint>,
    id: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.ep.forget_socket(self.id);
    }
}

impl Conn {
    /// Whether an idle connection can take a request: nothing arrived on it
    /// since its last response (no readiness event: no syscall), or a read
    /// finds nothing there.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be left over from the last read: look.
            Poll::Ready(Ok(())) => matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Read more bytes into `buf`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        // tokio's `read_buf` clears the socket's readiness after a short
        // read, so the next one waits for an event instead of a syscall.
        std::pin::pin!(self.io.read_buf(&mut self.buf)).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Write the request head: the client's headers as they are (hop-by-hop
    /// ones were removed), `Host` if the client sent none, its address
    /// appended to `X-Forwarded-For`.
    fn encode(
        &mut self,
        method: &Method,
        path: &PathAndQuery,
        headers: &HeaderMap,
        forwarded_for: Option<&HeaderValue>,
        raw: Option<&RawRequest>,
    ) {
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(method.as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(path.as_str().as_bytes());
        w.extend_from_slice(b" HTTP/1.1\r\n");
        let mut host = false;
        let mut length = false;
        let mut xff_written = forwarded_for.is_none();
        if let Some(r) = raw {
            // Lines ready to go (see `RawRequest`).
            w.extend_from_slice(&r.lines);
            host = r.has_host;
            length = r.has_length;
            xff_written = true;
        }
        for (name, value) in headers.iter().filter(|_| raw.is_none()) {
            if *name == header::HOST {
                host = true;
            } else if *name == header::CONTENT_LENGTH {
                length = true;
            } else if *name == X_FORWARDED_FOR
                && let Some(ip) = forwarded_for
            {
                // One line: every value the client sent, then its address.
                if !xff_written {
                    xff_written = true;
                    w.extend_from_slice(b"x-forwarded-for: ");
                    for v in headers.get_all(&X_FORWARDED_FOR) {
                        w.extend_from_slice(v.as_bytes());
                        w.extend_from_slice(b", ");
                    }
                    w.extend_from_slice(ip.as_bytes());
                    w.extend_from_slice(b"\r\n");
                }
                continue;
            }
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        if !xff_written && let Some(ip) = forwarded_for {
            w.extend_from_slice(b"x-forwarded-for: ");
            w.extend_from_slice(ip.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        if !host {
            w.extend_from_slice(b"host: ");
            w.extend_from_slice(self.ep.authority.as_str().as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        // A bodiless request of a method that usually has one says so.
        if !length && matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            w.extend_from_slice(b"content-length: 0\r\n");
        }
        w.extend_from_slice(b"\r\n");
    }

    /// Read and parse the response head (skipping 1xx interim responses);
    /// with `raw`, its header lines go there instead of into a map.
    async fn read_head(
        &mut self,
        head_request: bool,
        mut raw: Option<&mut RawHead>,
    ) -> Result<Head, LeanError> {
        let mut seen_any = false;
        loop {
            if !self.buf.is_empty() {
                seen_any = true;
                match self.parse_head(head_request, raw.as_deref_mut())? {
                    Parsed::Head(head) => return Ok(head),
                    Parsed::Interim => continue,
                    Parsed::Partial if self.buf.len() > MAX_HEAD => {
                        return Err(LeanError::Protocol("response head too large"));
                    }
                    Parsed::Partial => {}
                }
            }
            match self.fill().await {
                Ok(0) if seen_any => {
                    return Err(LeanError::Protocol(
                        "connection closed before the response head ended",
                    ));
                }
                Ok(0) => return Err(LeanError::Closed),
                Ok(_) => {}
                Err(e) if seen_any => return Err(LeanError::Io(e)),
                Err(e) => return Err(LeanError::Reset(e)),
            }
        }
    }

    /// Parse a whole head out of `buf`, if there is one; an interim (1xx)
    /// response is consumed. Hop-by-hop headers are left out; the others
    /// go into the head's map, or with `raw` as lines into `raw`.
    fn parse_head(
        &mut self,
        head_request: bool,
        raw: Option<&mut RawHead>,
    ) -> Result<Parsed, LeanError> {
        let mut parsed = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            &self.buf,
            &mut parsed,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(_) => return Err(LeanError::Protocol("malformed response head")),
        };
        let status = res
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(LeanError::Protocol("malformed status code"))?;
        let http11 = res.version == Some(1);
        let base = self.buf.as_ptr() as usize;
        self.names.clear();
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = !http11;
        let mut named = false;
        let mut has_date = false;
        for h in res.headers.iter() {
            let start = h.name.as_ptr() as usize - base;
            let at = Kept {
                name: start..start + h.name.len(),
                value: h.value.as_ptr() as usize - base
                    ..h.value.as_ptr() as usize - base + h.value.len(),
                kind: Kind::Plain,
            };
            let kind = match hop_by_hop(h.name.as_bytes()) {
                Hop::No => Kind::Plain,
                Hop::Date => {
                    has_date = true;
                    Kind::Plain
                }
                Hop::Length => {
                    let n = parse_length(h.value)
                        .ok_or(LeanError::Protocol("malformed content-length"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(LeanError::Protocol("conflicting content-lengths"));
                    }
                    length = Some(n);
                    Kind::Length
                }
                Hop::TransferEncoding => {
                    // Chunked only if it is the last coding; any other
                    // coding is read until the connection closes.
                    chunked = last_token_is(h.value, b"chunked");
                    if !chunked {
                        length = None;
                        close = true;
                    }
                    continue;
                }
                Hop::Connection => {
                    let mut names_others = false;
                    for t in h.value.split(|&b| b == b',') {
                        let t = t.trim_ascii();
                        if t.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if t.eq_ignore_ascii_case(b"keep-alive") {
                            if !http11 {
                                close = false;
                            }
                        } else if !t.is_empty() {
                            names_others = true;
                        }
                    }
                    // Kept (until the head is built) only when it names
                    // other headers to leave out.
                    if !names_others {
                        continue;
                    }
                    named = true;
                    Kind::Connection
                }
                Hop::Te if h.value == b"trailers" => Kind::Plain,
                Hop::Te | Hop::Other => continue,
            };
            self.names.push(Kept { kind, ..at });
        }
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(LeanError::Protocol(
                    "protocol switch that was not asked for",
                ));
            }
            self.buf.advance(len);
            return Ok(Parsed::Interim);
        }
        // Rare: `Connection` names more hop-by-hop headers.
        let connection: Vec<Range<usize>> = if named {
            self.names
                .iter()
                .filter(|k| k.kind == Kind::Connection)
                .map(|k| k.value.clone())
                .collect()
        } else {
            Vec::new()
        };
        let left_out = |buf: &[u8], k: &Kept| {
            k.kind == Kind::Connection
                || (chunked && k.kind == Kind::Length)
                || connection.iter().any(|v| {
                    buf[v.clone()]
                        .split(|&b| b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(&buf[k.name.clone()]))
                })
        };
        let headers = match raw {
            Some(raw) => {
                raw.lines.clear();
                raw.has_date = has_date;
                raw.has_length = false;
                for k in &self.names {
                    if left_out(&self.buf[..], k) {
                        continue;
                    }
                    raw.has_length |= k.kind == Kind::Length;
                    raw.lines.extend_from_slice(&self.buf[k.name.clone()]);
                    raw.lines.extend_from_slice(b": ");
                    raw.lines.extend_from_slice(&self.buf[k.value.clone()]);
                    raw.lines.extend_from_slice(b"\r\n");
                }
                self.buf.advance(len);
                HeaderMap::new()
            }
            None => {
                let head = self.buf.split_to(len).freeze();
                let mut headers = HeaderMap::with_capacity(self.names.len());
                for k in &self.names {
                    if left_out(&head[..], k) {
                        continue;
                    }
                    let name = HeaderName::from_bytes(&head[k.name.clone()])
                        .map_err(|_| LeanError::Protocol("malformed header name"))?;
                    let value = HeaderValue::from_maybe_shared(head.slice(k.value.clone()))
                        .map_err(|_| LeanError::Protocol("malformed header value"))?;
                    headers.append(name, value);
                }
                headers
            }
        };
        let framing = if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked(Chunk::Size)
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            close = true;
            Framing::Close
        };
        Ok(Parsed::Head(Head {
            status,
            headers,
            framing,
            reuse: !close,
        }))
    }
}

/// A response head's header lines as the upstream sent them (hop-by-hop
/// ones left out), for a client side that writes them as they are instead
/// of through a `HeaderMap` (see `server`): no name lookup, no value
/// objects, no map per response.
#[derive(Debug, Default)]
pub(crate) struct RawHead {
    /// `name: value\r\n` lines.
    pub(crate) lines: Vec<u8>,
    /// Whether a `Content-Length` line is among them.
    pub(crate) has_length: bool,
    /// Whether a `Date` line is among them.
    pub(crate) has_date: bool,
}

/// A request head's header lines ready for the upstream, for a client
/// side that needs no `HeaderMap` for the request (see `server`):
/// hop-by-hop ones left out, one `X-Forwarded-For` line with the client's
/// address appended.
#[derive(Debug, Default)]
pub(crate) struct RawRequest {
    /// `name: value\r\n` lines.
    pub(crate) lines: Vec<u8>,
    /// Whether a `Host` line is among them.
    pub(crate) has_host: bool,
    /// Whether a `Content-Length` line is among them.
    pub(crate) has_length: bool,
    /// Whether `lines` is what the current request sends (else its map).
    pub(crate) raw: bool,
}

/// Where a response header kept for the head sits in the read buffer.
struct Kept {
    name: Range<usize>,
    value: Range<usize>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// `Content-Length` (left out when the body is chunked).
    Length,
    /// A `Connection` header that names headers to leave out (itself left out).
    Connection,
}

/// Which hop-by-hop header a name is (or `Date`), from its bytes: a
/// length check and at most two case-insensitive compares.
#[derive(Debug, PartialEq, Eq)]
enum Hop {
    No,
    Date,
    Length,
    TransferEncoding,
    Connection,
    Te,
    Other,
}

fn hop_by_hop(n: &[u8]) -> Hop {
    let is = |s: &[u8]| n.eq_ignore_ascii_case(s);
    match n.len() {
        2 if is(b"te") => Hop::Te,
        4 if is(b"date") => Hop::Date,
        7 if is(b"upgrade") || is(b"trailer") => Hop::Other,
        10 if is(b"connection") => Hop::Connection,
        10 if is(b"keep-alive") => Hop::Other,
        14 if is(b"content-length") => Hop::Length,
        16 if is(b"proxy-connection") => Hop::Other,
        17 if is(b"transfer-encoding") => Hop::TransferEncoding,
        _ => Hop::No,
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn last_token_is(v: &[u8], token: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

enum Parsed {
    Head(Head),
    /// A 1xx before the response: skipped.
    Interim,
    /// More bytes needed.
    Partial,
}

struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    reuse: bool,
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding, at this step.
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
    /// Read to its end.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// Why a lean exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeanError {
    /// The connection closed before any byte of a response.
    #[error("upstream closed the connection before answering")]
    Closed,
    /// Writing the request, or reading before any byte of a response, failed.
    #[error("upstream connection failed before answering")]
    Reset(#[source] io::Error),
    #[error("upstream connection failed")]
    Io(#[source] io::Error),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("upstream closed the connection in the middle of the body")]
    Truncated,
}

impl LeanError {
    /// Nothing of a response arrived: a request sent on a reused idle
    /// connection the upstream had just closed.
    fn before_answer(&self) -> bool {
        matches!(self, Self::Closed | Self::Reset(_))
    }
}

/// Send a bodiless request on an idle connection of this thread, else a
/// new one, and read the response head (with `raw`, its header lines go
/// there and the response's map stays empty). With `raw_request`, the
/// request's header lines are those, not `headers` and `forwarded_for`.
/// An idempotent request on an idle connection the upstream closed
/// meanwhile is sent again on the next one.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    ep: &Arc<Endpoint>,
    method: &Method,
    path: &PathAndQuery,
    headers: &HeaderMap,
    forwarded_for: Option<&HeaderValue>,
    idempotent: bool,
    raw_request: Option<&RawRequest>,
    mut raw: Option<&mut RawHead>,
) -> Result<Response<LeanBody>, SendError> {
    loop {
        let (mut conn, reused) = match checkout(ep) {
            Some(c) => (c, true),
            None => (connect(ep).await?, false),
        };
        conn.encode(method, path, headers, forwarded_for, raw_request);
        let head = match conn.io.write_all(&conn.wbuf).await {
            Ok(()) => {
                conn.read_head(*method == Method::HEAD, raw.as_deref_mut())
                    .await
            }
            Err(e) => Err(LeanError::Reset(e)),
        };
        match head {
            Ok(head) => {
                let mut body = LeanBody {
                    conn: Some(conn),
                    framing: head.framing,
                    reuse: head.reuse,
                };
                if body.framing == Framing::Length(0) {
                    body.finish();
                }
                let mut resp = Response::new(body);
                *resp.status_mut() = head.status;
                *resp.headers_mut() = head.headers;
                return Ok(resp);
            }
            Err(e) if reused && idempotent && e.before_answer() => {
                tracing::debug!(endpoint = %ep.addr, error = %e, "idle connection was closed; sending again");
            }
            Err(e) => return Err(SendError::Other(error_chain(&e))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("tcp connect error")]
    Io(#[source] io::Error),
    #[error("tcp connect timed out")]
    Timeout,
    #[error("endpoint left the set and its drain grace expired")]
    Cut,
}

async fn connect(ep: &Arc<Endpoint>) -> Result<Conn, SendError> {
    let conn = async {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ep.addr))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Io)?;
        let _ = stream.set_nodelay(true);
        // A duplicate of the socket, for the endpoint to shut it down when
        // it is cut off (this connection has no task to abort).
        let std = stream.into_std().map_err(ConnectError::Io)?;
        let handle = std.try_clone().map_err(ConnectError::Io)?;
        let io = TcpStream::from_std(std).map_err(ConnectError::Io)?;
        let id = ep.next_conn_id();
        if !ep.track_socket(id, handle) {
            return Err(ConnectError::Cut);
        }
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(512),
            names: Vec::with_capacity(16),
            ep: ep.clone(),
            id,
        })
    };
    conn.await.map_err(|e| match e {
        ConnectError::Cut => SendError::CutOff,
        e => SendError::Connect(error_chain(&e)),
    })
}

fn checkout(ep: &Endpoint) -> Option<Conn> {
    IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(ep.id)?;
        // Most recently used first; the sweep closes those idle too long.
        while let Some((_, c)) = list.pop() {
            if c.still_open() {
                return Some(c);
            }
        }
        None
    })
    .ok()
    .flatten()
}

fn check_in(conn: Conn) {
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let id = conn.ep.id;
        if idle.len() <= id {
            idle.resize_with(id + 1, Vec::new);
        }
        let list = &mut idle[id];
        // Most recently used last (checkout pops it first); drop the oldest.
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push((Instant::now(), conn));
    });
}

/// Close this thread's idle lean connections that have been idle too long
/// or were closed by the upstream.
pub(crate) fn sweep_idle() {
    let _ = IDLE.try_with(|idle| {
        let now = Instant::now();
        for list in idle.borrow_mut().iter_mut() {
            list.retain(|(since, c)| now.duration_since(*since) < IDLE_TIMEOUT && c.still_open());
        }
    });
}

/// A lean response's body, read from the upstream connection as the
/// client asks for it; the connection goes back to the idle pool once the
/// body has been read to its end.
pub(crate) struct LeanBody {
    conn: Option<Conn>,
    framing: Framing,
    reuse: bool,
}

impl LeanBody {
    /// The body has been read whole: pool the connection if it can take
    /// another request.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take()
            && self.reuse
            && conn.buf.is_empty()
        {
            check_in(conn);
        }
    }

    fn fail(&mut self, e: LeanError) -> Poll<Option<Result<Frame<Bytes>, LeanError>>> {
        self.framing = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = LeanError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, LeanError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                this.framing = Framing::Done;
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if conn.buf.is_empty() {
                        match ready!(conn.poll_fill(cx)) {
                            Ok(0) => return this.fail(LeanError::Truncated),
                            Ok(_) => {}
                            Err(e) => return this.fail(LeanError::Io(e)),
                        }
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    let data = conn.buf.split_to(n).freeze();
                    this.framing = Framing::Length(left - n as u64);
                    if left == n as u64 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close => {
                    if conn.buf.is_empty() {
                        match ready!(conn.poll_fill(cx)) {
                            Ok(0) => {
                                this.framing = Framing::Done;
                                this.conn = None;
                                return Poll::Ready(None);
                            }
                            Ok(_) => {}
                            Err(e) => return this.fail(LeanError::Io(e)),
                        }
                    }
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    if conn.buf.is_empty() {
                        match ready!(conn.poll_fill(cx)) {
                            Ok(0) => return this.fail(LeanError::Truncated),
                            Ok(_) => {}
                            Err(e) => return this.fail(LeanError::Io(e)),
                        }
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    let data = conn.buf.split_to(n).freeze();
                    this.framing = Framing::Chunked(if left == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(step) => {
                    // Size, DataEnd and Trailers steps consume whole lines.
                    let Some(eol) = conn.buf.iter().position(|&b| b == b'\n') else {
                        if conn.buf.len() > MAX_HEAD {
                            return this.fail(LeanError::Protocol("chunk line too long"));
                        }
                        match ready!(conn.poll_fill(cx)) {
                            Ok(0) => return this.fail(LeanError::Truncated),
                            Ok(_) => continue,
                            Err(e) => return this.fail(LeanError::Io(e)),
                        }
                    };
                    let line = conn.buf.split_to(eol + 1);
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    match step {
                        Chunk::Size => {
                            let Some(size) = parse_chunk_size(line) else {
                                return this.fail(LeanError::Protocol("malformed chunk size"));
                            };
                            this.framing = Framing::Chunked(if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            });
                        }
                        Chunk::DataEnd => {
                            if !line.is_empty() {
                                return this.fail(LeanError::Protocol("chunk without its CRLF"));
                            }
                            this.framing = Framing::Chunked(Chunk::Size);
                        }
                        // Trailer fields are dropped (as a proxy may);
                        // the empty line ends the body.
                        Chunk::Trailers => {
                            if line.is_empty() {
                                this.finish();
                                return Poll::Ready(None);
                            }
                        }
                        Chunk::Data(_) => {}
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A chunk-size line: hex digits, then maybe `;extensions`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(line)
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_lengths_and_codings() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"A;name=value"), Some(10));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"xyz"), None);
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b"4 2"), None);
        assert!(last_token_is(b"gzip, chunked", b"chunked"));
        assert!(!last_token_is(b"chunked, gzip", b"chunked"));
    }
}
