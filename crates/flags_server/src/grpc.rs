//! flagd's gRPC services (`serin-flags-grpc`) over this server's snapshots, mounted on the
//! same router and port as OFREP: HTTP/2 requests with gRPC paths reach them.
//!
//! Who may read what: with API keys, a **server** key reads its own environment (a selector
//! naming another is `PERMISSION_DENIED`); client keys (browsers) and admin tokens are refused,
//! since sync hands out whole definitions. Without keys (loopback only), the selector picks
//! any environment and an empty selector means the default one. The selector is flagd's
//! `flagd-selector` metadata (or the deprecated request field) and names an environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use serin_flags::FlagSet;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::keys::KeyKind;
use crate::state::{ChangeEvent, Shared};

pub(crate) struct GrpcBackend(pub(crate) Arc<Shared>);

impl serin_flags_grpc::Backend for GrpcBackend {
    type Change = ChangeEvent;

    fn scope(&self, metadata: &MetadataMap, selector: &str) -> Result<String, Status> {
        let headers = metadata.clone().into_headers();
        let key = self.0.authenticate(&headers).map_err(|e| {
            if e.status == StatusCode::UNAUTHORIZED {
                Status::unauthenticated(e.details)
            } else {
                Status::permission_denied(e.details)
            }
        })?;
        match key {
            None if selector.is_empty() => Ok(self.0.default_environment.clone()),
            None if crate::keys::valid_environment(selector) => Ok(selector.to_owned()),
            None => Err(Status::invalid_argument(format!(
                "selector {selector:?} must name an environment (1-64 of [A-Za-z0-9_.-])"
            ))),
            Some(k) if k.kind != KeyKind::Server => Err(Status::permission_denied(
                "flagd's gRPC services need a server key (client keys and admin tokens are refused)",
            )),
            Some(k) if selector.is_empty() || selector == k.environment => {
                Ok(k.environment.clone())
            }
            Some(k) => Err(Status::permission_denied(format!(
                "this key reads environment {:?}, not {selector:?}",
                k.environment
            ))),
        }
    }

    fn with_flags<R>(&self, environment: &str, f: impl FnOnce(&FlagSet) -> R) -> R {
        f(&self.0.snapshot(environment).flags)
    }

    fn definitions(&self, environment: &str) -> (String, BTreeMap<String, Value>) {
        let s = self.0.snapshot(environment);
        (s.version.clone(), s.defs.clone())
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
        self.0.events.subscribe()
    }

    fn environment_of(change: &ChangeEvent) -> &str {
        &change.environment
    }

    fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.shutdown.clone()
    }
}
