//! A small HTTP client over hyper 1 + hyper-util: `http://` and `https://`
//! (rustls via `serin-tls`: system roots plus an optional extra CA).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};

/// Largest response body read (protects against a provider streaming garbage).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<serin_tls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A response: status and body.
pub(crate) struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl HttpClient {
    /// Trusts the system's roots.
    pub(crate) fn new() -> Self {
        HttpClient {
            client: serin_tls::system_client(),
        }
    }

    /// Trusts the system's roots and the CAs in `ca` (a PEM file).
    pub(crate) fn with_ca(ca: &std::path::Path) -> Result<Self, serin_tls::TlsError> {
        Ok(HttpClient {
            client: serin_tls::client(&serin_tls::ClientOptions::with_cas([ca]))?,
        })
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<String>,
    ) -> Result<Response, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let method = hyper::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|e| format!("invalid method {method:?}: {e}"))?;
        let mut req = hyper::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("cannot build request: {e}"))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{url}: {}", serin_error_chain::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let limited = http_body_util::Limited::new(resp.into_body(), MAX_BODY);
        let body = limited
            .collect()
            .await
            .map_err(|e| format!("{url}: reading body: {e}"))?
            .to_bytes();
        Ok(Response { status, body })
    }
}

/// Percent-encode a query component (RFC 3986 unreserved kept).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The first `n` characters of a body, for messages.
pub(crate) fn snippet(body: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(body);
    let s: String = s.chars().take(n).collect();
    s.replace('\n', " ")
}
