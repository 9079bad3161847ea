//! Pushes configuration to `serin proxy` over its loopback admin API,
//! authenticated with the proxy's admin token.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::routing::ProxyConfig;

/// Talks to one proxy's admin API.
#[derive(Clone)]
pub struct ProxyClient {
    admin: SocketAddr,
    token: serin_proxy::AdminToken,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl ProxyClient {
    /// A client for the proxy whose admin API listens on `admin` and
    /// accepts `token`.
    pub fn new(admin: SocketAddr, token: serin_proxy::AdminToken) -> Self {
        Self {
            admin,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token.expose()))
            .body(Full::new(Bytes::from(body)))?;
        let res = tokio::time::timeout(std::time::Duration::from_secs(5), self.http.request(req))
            .await??;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, bytes))
    }

    /// True when the proxy answers its health endpoint.
    pub async fn healthy(&self) -> bool {
        matches!(
            self.call(hyper::Method::GET, "/healthz", Vec::new()).await,
            Ok((200, _))
        )
    }

    /// True when the proxy accepts this client's token (an authenticated
    /// read of its configuration succeeds).
    pub async fn authorized(&self) -> bool {
        matches!(
            self.call(hyper::Method::GET, "/v1/config", Vec::new())
                .await,
            Ok((200, _))
        )
    }

    /// Replaces the whole configuration; returns the configuration in force
    /// (with the ports the proxy picked).
    pub async fn apply(&self, config: &ProxyConfig) -> anyhow::Result<ProxyConfig> {
        let (status, body) = self
            .call(
                hyper::Method::PUT,
                "/v1/config",
                serde_json::to_vec(config)?,
            )
            .await?;
        if status != 200 {
            anyhow::bail!(
                "proxy rejected the configuration ({status}): {}",
                String::from_utf8_lossy(&body)
            );
        }
        self.current().await
    }

    /// The proxy's cumulative per-revision counters.
    pub async fn stats(&self) -> anyhow::Result<serin_proxy::StatsSnapshot> {
        let (status, body) = self
            .call(hyper::Method::GET, "/v1/stats", Vec::new())
            .await?;
        if status != 200 {
            anyhow::bail!("proxy GET /v1/stats answered {status}");
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// The configuration in force.
    pub async fn current(&self) -> anyhow::Result<ProxyConfig> {
        let (status, body) = self
            .call(hyper::Method::GET, "/v1/config", Vec::new())
            .await?;
        if status != 200 {
            anyhow::bail!("proxy GET /v1/config answered {status}");
        }
        Ok(serde_json::from_slice(&body)?)
    }
}
