//! The two HTTP calls the SDK makes (plain `http://` over hyper 1): the definitions
//! (`GET /sdk/v1/flags`, conditional on the ETag) and the SSE change stream
//! (`GET /ofrep/v1/events`), plus a minimal `text/event-stream` parser.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::SyncError;

/// Largest definitions document accepted (protects memory against a misbehaving server).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Answer to a conditional fetch of the definitions.
pub(crate) enum Fetched {
    /// 304: the cached version is current.
    NotModified,
    /// 200: a new document.
    New {
        /// The ETag without quotes (the flag-configuration version).
        version: String,
        /// The environment the server says the key belongs to.
        environment: Option<String>,
        /// The flagd JSON document.
        body: Bytes,
    },
}

pub(crate) struct Http {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// `http://host:port[/prefix]` without a trailing slash.
    base: String,
    key: Option<String>,
    request_timeout: Duration,
}

impl Http {
    pub(crate) fn new(
        base: String,
        key: Option<String>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            client,
            base,
            key,
            request_timeout,
        }
    }

    fn request(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<Request<Empty<Bytes>>, SyncError> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| SyncError::Http(format!("bad URL: {e}")))?;
        let mut req = Request::get(uri);
        if let Some(k) = &self.key {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {k}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.body(Empty::new())
            .map_err(|e| SyncError::Http(format!("bad request: {e}")))
    }

    async fn send(
        &self,
        req: Request<Empty<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, SyncError> {
        match tokio::time::timeout(self.request_timeout, self.client.request(req)).await {
            Err(_) => Err(SyncError::Unreachable("request timed out".into())),
            Ok(Err(e)) => Err(SyncError::Unreachable(e.to_string())),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// `GET /sdk/v1/flags`, with `If-None-Match` when a version is known.
    pub(crate) async fn fetch(&self, known: Option<&str>) -> Result<Fetched, SyncError> {
        let tag = known.map(|v| format!("\"{v}\""));
        let mut extra = vec![("accept", "application/json")];
        if let Some(t) = &tag {
            extra.push(("if-none-match", t.as_str()));
        }
        let req = self.request("/sdk/v1/flags", &extra)?;
        let res = self.send(req).await?;
        let status = res.status();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag");
        let environment = header("x-serin-environment");
        let body = self.read_body(res).await?;
        match status {
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
            StatusCode::OK => {
                let version = etag
                    .as_deref()
                    .map(|t| {
                        t.trim()
                            .trim_start_matches("W/")
                            .trim_matches('"')
                            .to_owned()
                    })
                    .ok_or_else(|| {
                        SyncError::Protocol("the definitions came without an ETag".into())
                    })?;
                Ok(Fetched::New {
                    version,
                    environment,
                    body,
                })
            }
            s => Err(status_error(s, &body)),
        }
    }

    async fn read_body(&self, res: hyper::Response<Incoming>) -> Result<Bytes, SyncError> {
        let limited = http_body_util::Limited::new(res.into_body(), MAX_BODY);
        match tokio::time::timeout(self.request_timeout, limited.collect()).await {
            Err(_) => Err(SyncError::Unreachable(
                "reading the answer timed out".into(),
            )),
            Ok(Err(e)) => Err(SyncError::Unreachable(format!("reading the answer: {e}"))),
            Ok(Ok(c)) => Ok(c.to_bytes()),
        }
    }

    /// Opens `GET /ofrep/v1/events`; the body is the endless event stream.
    pub(crate) async fn open_events(&self) -> Result<Incoming, SyncError> {
        let req = self.request("/ofrep/v1/events", &[("accept", "text/event-stream")])?;
        let res = self.send(req).await?;
        if res.status() != StatusCode::OK {
            let status = res.status();
            let body = self.read_body(res).await.unwrap_or_default();
            return Err(status_error(status, &body));
        }
        Ok(res.into_body())
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> SyncError {
    let detail = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        SyncError::Rejected {
            status: status.as_u16(),
            detail,
        }
    } else {
        SyncError::Status {
            status: status.as_u16(),
            detail,
        }
    }
}

/// Splits a `text/event-stream` into events and yields each event's `data`.
#[derive(Default)]
pub(crate) struct SseParser {
    buf: String,
}

impl SseParser {
    /// Feeds bytes; returns the `data` of every event completed by them (multi-line data
    /// joined with `\n`, as the SSE spec says). Comments (keep-alives) yield nothing.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.push_str(&String::from_utf8_lossy(bytes));
        if self.buf.contains('\r') {
            self.buf = self.buf.replace("\r\n", "\n").replace('\r', "\n");
        }
        let mut out = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let event: String = self.buf.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

/// The flag-configuration version an OFREP `refetchEvaluation` event announces, if any.
pub(crate) fn event_etag(data: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v.get("etag")?.as_str().map(str::to_owned)
}

/// Reads the next chunk of an event stream, `None` at its end.
pub(crate) async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, SyncError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(SyncError::Unreachable(format!("event stream: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_split_chunks_comments_and_crlf() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\n").is_empty());
        assert!(
            p.push(b"event: message\nid: 7\ndata: {\"etag\":")
                .is_empty()
        );
        let got = p.push(b"\"7\"}\n\nevent: message\r\ndata: x\r\ndata: y\r\n\r\n");
        assert_eq!(got, vec!["{\"etag\":\"7\"}".to_owned(), "x\ny".to_owned()]);
        assert_eq!(event_etag(&got[0]).as_deref(), Some("7"));
        assert_eq!(event_etag("{\"type\":\"refetchEvaluation\"}"), None);
        assert_eq!(event_etag("not json"), None);
    }
}
