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

/// Whether flag `key` of `snapshot` is in a selector's `filter`.
pub(crate) fn in_scope(snapshot: &Snapshot, filter: &Filter, key: &str) -> bool {
    match filter {
        Filter::All => true,
        Filter::FlagSetId(id) => serin_flags_grpc::in_flag_set(&snapshot.flags, key, id),
        Filter::Sources(found) => snapshot.origins.get(key).is_some_and(|i| found.contains(i)),
    }
}

/// What a flagd selector selects. `environment` is the caller's key check: given the
/// environment the selector asks for (`None`: no preference), the one the caller reads, or
/// the refusal. Shared by the gRPC services and OFREP's `Flagd-Selector` header, so a
/// selector means the same on every protocol.
pub(crate) fn scope_for(
    shared: &Shared,
    selector: &Selector,
    environment: &dyn Fn(Option<&str>) -> Result<String, Status>,
) -> Result<Scope, Status> {
    let whole = |environment| Scope {
        environment,
        filter: Filter::All,
    };
    match selector {
        Selector::All => environment(None).map(whole),
        Selector::Environment(env) => environment(Some(env)).map(whole),
        Selector::FlagSetId(id) => Ok(Scope {
            environment: environment(None)?,
            filter: Filter::FlagSetId(id.clone()),
        }),
        Selector::Source(name) => source_scope(shared, environment, name),
        Selector::Bare(name) => {
            let is_source = matches!(shared.backend, Backend::File)
                && !sources_named(&shared.snapshot(&shared.default_environment), name).is_empty();
            if is_source {
                source_scope(shared, environment, name)
            } else if matches!(shared.backend, Backend::Store(_))
                || *name == shared.default_environment
            {
                // Serin's environments, named the way older flagd providers name sources.
                environment(Some(name)).map(whole)
            } else {
                source_scope(shared, environment, name)
            }
        }
    }
}

/// A source selector within the file environment.
fn source_scope(
    shared: &Shared,
    environment: &dyn Fn(Option<&str>) -> Result<String, Status>,
    name: &str,
) -> Result<Scope, Status> {
    let environment = environment(Some(&shared.default_environment))?;
    let snapshot = shared.snapshot(&environment);
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
}

impl serin_flags_grpc::Backend for GrpcBackend {
    type Change = ChangeEvent;

    fn scope(&self, metadata: &MetadataMap, selector: &Selector) -> Result<Scope, Status> {
        scope_for(&self.0, selector, &|wanted| {
            self.environment(metadata, wanted)
        })
    }

    fn with_flags<R>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&FlagSet, &dyn Fn(&str) -> bool) -> R,
    ) -> R {
        let s = self.0.snapshot(&scope.environment);
        match &scope.filter {
            Filter::All => f(&s.flags, &|_| true),
            filter => f(&s.flags, &|k| in_scope(&s, filter, k)),
        }
    }

    fn definitions(&self, scope: &Scope) -> (String, BTreeMap<String, Value>) {
        let s = self.0.snapshot(&scope.environment);
        let defs = match &scope.filter {
            Filter::All => s.defs.clone(),
            filter => s
                .defs
                .iter()
                .filter(|(k, _)| in_scope(&s, filter, k))
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
