use std::ops::RangeInclusive;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::check::{Check, CheckError, CheckFuture};

/// Why an [`HttpCheck`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpCheckError {
    /// The URL did not parse.
    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Parse error.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// Only plain `http://` URLs are supported (no TLS stack is linked).
    #[error("unsupported URL {0:?}: only http:// with a host is supported")]
    Unsupported(String),
}

/// Healthy when `GET url` answers with a status in the accepted range
/// (default `200..=299`). Plain HTTP/1.1 only: dependencies on the same host
/// or inside a cluster are rarely behind TLS, and that keeps TLS out of the tree.
#[derive(Clone)]
pub struct HttpCheck {
    uri: http::Uri,
    accepted: RangeInclusive<u16>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for HttpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCheck")
            .field("uri", &self.uri)
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl HttpCheck {
    /// A check of `url`, e.g. `http://127.0.0.1:8081/health`.
    ///
    /// # Errors
    /// When `url` does not parse or is not `http://host…`.
    pub fn new(url: &str) -> Result<Self, HttpCheckError> {
        let uri: http::Uri = url.parse().map_err(|source| HttpCheckError::InvalidUrl {
            url: url.to_owned(),
            source,
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(HttpCheckError::Unsupported(url.to_owned()));
        }
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build_http();
        Ok(Self {
            uri,
            accepted: 200..=299,
            client,
        })
    }

    /// Accepts statuses in `range` instead of `200..=299`.
    pub fn accept_status(mut self, range: RangeInclusive<u16>) -> Self {
        self.accepted = range;
        self
    }
}

impl Check for HttpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let req = http::Request::get(self.uri.clone())
                .header(http::header::USER_AGENT, "serin-health")
                .body(Empty::<Bytes>::new())
                .map_err(|e| CheckError::other("building request", e))?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| CheckError::other(format!("GET {}", self.uri), e))?;
            let status = resp.status().as_u16();
            if self.accepted.contains(&status) {
                Ok(())
            } else {
                Err(CheckError::HttpStatus {
                    status,
                    accepted: format!("{}..={}", self.accepted.start(), self.accepted.end()),
                })
            }
        })
    }
}
