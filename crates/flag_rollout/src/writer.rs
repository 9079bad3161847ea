//! How a percentage reaches the flag server: the [`SetPercentage`] trait and
//! its HTTP implementation over the management API.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a percentage was not set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Refused for good: no such flag, not a two-variant flag, flags served
    /// read-only from a file, a bad token. Retrying will not help; nothing
    /// was changed.
    #[error("{0}")]
    Refused(String),
    /// Could not be done now (unreachable, store failure, concurrent
    /// change): worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

/// Sets a flag's rollout percentage (`fractional` split between its two
/// variants), as `PATCH …/flags/{key} {"percentage": N}` does.
pub trait SetPercentage: Sync {
    /// Sets `flag` to `pct` % on. Setting the percentage it already has is
    /// a success.
    fn set_percentage(
        &self,
        flag: &str,
        pct: u8,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// Writes through a flag server's management API over HTTP/1.1, `http://`
/// or `https://` (the system roots plus `tls`' extra CAs), with an admin
/// token; the audit log names the token.
#[derive(Clone, Debug)]
pub struct HttpWriter {
    /// Flag server base URL (`http://127.0.0.1:8016`, `https://flags:8016`).
    pub server: String,
    /// Environment (`production`).
    pub environment: String,
    /// Admin token.
    pub admin_token: String,
    /// What an `https://` server is trusted by.
    pub tls: serin_tls::ClientOptions,
}

impl SetPercentage for HttpWriter {
    async fn set_percentage(&self, flag: &str, pct: u8) -> Result<(), WriteError> {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(
            serin_tls::https_connector(&self.tls)
                .map_err(|e| WriteError::Refused(format!("the flag server's TLS: {e}")))?,
        );
        let uri = format!(
            "{}/api/v1/environments/{}/flags/{}",
            self.server.trim_end_matches('/'),
            self.environment,
            flag
        );
        let req = hyper::Request::patch(uri)
            .header("authorization", format!("Bearer {}", self.admin_token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"percentage\": {pct}}}"))))
            .map_err(|e| WriteError::Refused(e.to_string()))?;
        let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| WriteError::Unavailable("timed out".into()))?
            // The causes too: hyper's own error says only `client error
            // (Connect)`, the TLS one (`invalid peer certificate: …`) is
            // below it.
            .map_err(|e| WriteError::Unavailable(serin_error_chain::error_chain(&e)))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = v["errorCode"].as_str().unwrap_or("");
        let details = v["errorDetails"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let message = format!("PATCH {pct} % answered {status}: {details}");
        // A concurrent change or an unavailable store passes; anything else
        // the server said no to stays a no.
        if status.is_server_error() || (status.as_u16() == 409 && code == "CONFLICT") {
            Err(WriteError::Unavailable(message))
        } else {
            Err(WriteError::Refused(message))
        }
    }
}
