use crate::check::{Check, CheckError, CheckFuture};

/// Healthy when a TCP connection to the address can be opened (then closed).
#[derive(Debug, Clone)]
pub struct TcpCheck {
    addr: String,
}

impl TcpCheck {
    /// `addr` is `host:port`; host names are resolved on every check.
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

impl Check for TcpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            tokio::net::TcpStream::connect(&self.addr)
                .await
                .map(drop)
                .map_err(|source| CheckError::Connect {
                    target: self.addr.clone(),
                    source,
                })
        })
    }
}
