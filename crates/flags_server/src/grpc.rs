//! flagd's gRPC services (`serin-flags-grpc`) over this server's snapshots, mounted on the
//! same router and port as OFREP (and, with `--port` / `--sync-port`, on their own ports):
//! HTTP/2 requests with gRPC paths reach them.
//!
//! Who may read what: with API keys, a **server** key reads its own environment (a selector
//! naming another is `PERMISSION_DENIED`); client keys (browsers) and admin tokens are refused,
//! since sync hands out whole definitions. Without keys (loopback only), any environment.
//!
//! Selectors (flagd's `flagd-selector` metadata, or sync's deprecated request field):
//! `source=<file>`, `file:<file>` or a bare `<file>` select the flags whose winning definition
//! comes from that `--file` source (a directory source, or one file of it); `flagSetId=<id>`
//! the flags with that flag-set id; `environment=<name>` (Serin's) an environment; a bare
//! name that is no source is taken as an environment when flags come from a store (or it is
//! the one a file is served as). Anything else is `INVALID_ARGUMENT` `INVALID_SELECTOR`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;
use serin_flags::FlagSet;
use serin_flags_grpc::{Filter, Scope, Selector, invalid_selector};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::keys::KeyKind;
use crate::state::{Backend, ChangeEvent, Shared, Snapshot};

pub(crate) struct GrpcBackend(pub(crate) Arc<Shared>);

/// The indices of the source files a selector names (`./` dropped; canonical paths match).
fn sources_named(snapshot: &Snapshot, name: &str) -> Vec<usize> {
    let name = name.strip_prefix("./").unwrap_or(name);
    let canonical = std::fs::canonicalize(name)
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    snapshot
        .sources
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.names
                .iter()
                .any(|n| n == name || Some(n) == canonical.as_ref())
        })
        .map(|(i, _)| i)
        .collect()
}

impl GrpcBackend {
    /// The environment the caller's key (or its absence) allows, given the one the selector
    /// asks for (`None`: no preference).
    fn environment(&self, metadata: &MetadataMap, wanted: Option<&str>) -> Result<String, Status> {
        let headers = metadata.clone().into_headers();
        let key = self.0.authenticate(&headers).map_err(|e| {
            if e.status == StatusCode::UNAUTHORIZED {
                Status::unauthenticated(e.details)
            } else {
                Status::permission_denied(e.details)
            }
        })?;
        match key {
            None => match wanted {
                None => Ok(self.0.default_environment.clone()),
                Some(env) if crate::keys::valid_environment(env) => Ok(env.to_owned()),
                Some(env) => Err(invalid_selector(format!(
                    "environment {env:?} must be 1-64 of [A-Za-z0-9_.-]"
                ))),
            },
            Some(k) if k.kind != KeyKind::Server => Err(Status::permission_denied(
                "flagd's gRPC services need a server key (client keys and admin tokens are refused)",
            )),
            Some(k) if wanted.is_none_or(|w| w == k.environment) => Ok(k.environment.clone()),
            Some(k) => Err(Status::permission_denied(format!(
                "this key reads environment {:?}, not {:?}",
                k.environment,
                wanted.unwrap_or_default()
            ))),
        }
    }

    /// A source selector within the file environment.
    fn source_scope(&self, metadata: &MetadataMap, name: &str) -> Result<Scope, Status> {
        let file_env = self.0.default_environment.clone();
        let environment = self.environment(metadata, Some(&file_env))?;
        let snapshot = self.0.snapshot(&environment);
        let found = sources_named(&snapshot, name);
        if found.is_empty() {
            let known: Vec<&str> = snapshot
                .sources
                .iter()
                .filter_map(|s| s.names.first().map(String::as_str))
                .collect();
            return Err(invalid_selector(if known.is_empty() {
                format!("no source {name:?}: flags here come from a store, not from --file sources")
            } else {
                format!("no source {name:?}; the sources are {}", known.join(", "))
            }));
        }
        Ok(Scope {
            environment,
            filter: Filter::Sources(found),
        })
    }
}

impl serin_flags_grpc::Backend for GrpcBackend {
    type Change = ChangeEvent;

    fn scope(&self, metadata: &MetadataMap, selector: &Selector) -> Result<Scope, Status> {
        let whole = |environment| Scope {
            environment,
            filter: Filter::All,
        };
        match selector {
            Selector::All => self.environment(metadata, None).map(whole),
            Selector::Environment(env) => self.environment(metadata, Some(env)).map(whole),
            Selector::FlagSetId(id) => Ok(Scope {
                environment: self.environment(metadata, None)?,
                filter: Filter::FlagSetId(id.clone()),
            }),
            Selector::Source(name) => self.source_scope(metadata, name),
            Selector::Bare(name) => {
                let is_source = matches!(self.0.backend, Backend::File)
                    && !sources_named(&self.0.snapshot(&self.0.default_environment), name)
                        .is_empty();
                if is_source {
                    self.source_scope(metadata, name)
                } else if matches!(self.0.backend, Backend::Store(_))
                    || *name == self.0.default_environment
                {
                    // Serin's environments, named the way older flagd providers name sources.
                    self.environment(metadata, Some(name)).map(whole)
                } else {
                    self.source_scope(metadata, name)
                }
            }
        }
    }

    fn with_flags<R>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&FlagSet, &dyn Fn(&str) -> bool) -> R,
    ) -> R {
        let s = self.0.snapshot(&scope.environment);
        match &scope.filter {
            Filter::All => f(&s.flags, &|_| true),
            Filter::FlagSetId(id) => f(&s.flags, &|k| {
                serin_flags_grpc::in_flag_set(&s.flags, k, id)
            }),
            Filter::Sources(found) => f(&s.flags, &|k| {
                s.origins.get(k).is_some_and(|i| found.contains(i))
            }),
        }
    }

    fn definitions(&self, scope: &Scope) -> (String, BTreeMap<String, Value>) {
        let s = self.0.snapshot(&scope.environment);
        let defs = match &scope.filter {
            Filter::All => s.defs.clone(),
            Filter::FlagSetId(id) => s
                .defs
                .iter()
                .filter(|(k, _)| serin_flags_grpc::in_flag_set(&s.flags, k, id))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Filter::Sources(found) => s
                .defs
                .iter()
                .filter(|(k, _)| s.origins.get(*k).is_some_and(|i| found.contains(i)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        (s.version.clone(), defs)
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
