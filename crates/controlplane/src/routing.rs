//! From manifests + engine routes + ready pods to the proxy's configuration.
//! Pure: the same inputs always give the same `ProxyConfig`.
//!
//! How Kubernetes objects map onto local listeners:
//! - every `Service` gets a listener. If a Rollout names it as its
//!   stable/canary/active/preview service, it sends to the one revision the
//!   engine's route selects for that role; otherwise (a plain Service over the
//!   app's labels) it spreads over every ready pod of every revision, which is
//!   exactly how a rolling update or a basic canary shares traffic;
//! - every Istio `VirtualService` a Rollout routes through gets a listener
//!   named after it, carrying the engine's weights and header routes (the
//!   VirtualService's own `match.headers` routes send to the canary);
//! - a Rollout that no Service selects gets a listener named after itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serin_engine as e;
use serin_spec as m;

// The proxy's configuration types have one home, the proxy crate (the
// admin API's wire format); routing only builds values of them.
pub use serin_proxy::{
    HeaderMatch, HeaderRoute, MirrorMatch, MirrorRoute, ProxyConfig, RevisionEndpoints,
    ServiceConfig, ValueMatch, WeightedRevision,
};

/// What the platform runs for one rollout, reduced to what routing needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutEndpoints {
    /// Ready, non-terminating endpoints per revision hash.
    pub ready: BTreeMap<String, Vec<SocketAddr>>,
    /// Ready endpoints of experiment steps' pods, per workload hash. No
    /// Service selects them; only a weighted route names them.
    pub experiments: BTreeMap<String, Vec<SocketAddr>>,
}

/// One rollout's inputs to routing.
pub struct RolloutRouting<'a> {
    /// The manifest.
    pub rollout: &'a m::Rollout,
    /// The engine's route in effect.
    pub route: &'a e::Route,
    /// Ready endpoints.
    pub endpoints: &'a RolloutEndpoints,
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn labels(r: &m::Rollout) -> BTreeMap<String, String> {
    r.spec
        .template
        .as_ref()
        .map(|t| t.metadata.labels.clone())
        .unwrap_or_default()
}

fn app_of(r: &m::Rollout) -> String {
    let l = labels(r);
    l.get("app")
        .cloned()
        .unwrap_or_else(|| r.metadata.name.clone().unwrap_or_default())
}

fn role_of(r: &m::Rollout, service: &str) -> Option<e::ServiceRole> {
    let s = &r.spec.strategy;
    if let Some(c) = &s.canary {
        if c.stable_service.as_deref() == Some(service) {
            return Some(e::ServiceRole::Stable);
        }
        if c.canary_service.as_deref() == Some(service) {
            return Some(e::ServiceRole::Canary);
        }
        // pingPong: locally ping serves the stable and pong the canary (no
        // role swap; docs/engine.md says why that is invisible to clients of
        // the weighted listener).
        if let Some(pp) = &c.ping_pong {
            if pp.ping_service == service {
                return Some(e::ServiceRole::Stable);
            }
            if pp.pong_service == service {
                return Some(e::ServiceRole::Canary);
            }
        }
    }
    if let Some(b) = &s.blue_green {
        if b.active_service == service {
            return Some(e::ServiceRole::Active);
        }
        if b.preview_service.as_deref() == Some(service) {
            return Some(e::ServiceRole::Preview);
        }
    }
    None
}

fn revision(ep: &RolloutEndpoints, hash: &str) -> RevisionEndpoints {
    RevisionEndpoints {
        hash: hash.to_string(),
        endpoints: ep.ready.get(hash).cloned().unwrap_or_default(),
    }
}

fn all_revisions(ep: &RolloutEndpoints) -> Vec<RevisionEndpoints> {
    ep.ready.keys().map(|h| revision(ep, h)).collect()
}

/// The engine's weights, and a listener entry for every experiment
/// template they name (Argo's `additionalDestinations`): its pods then
/// get their share, counted under their own hash.
fn weighted(
    route: &e::Route,
    ep: &RolloutEndpoints,
    revisions: &mut Vec<RevisionEndpoints>,
) -> Vec<WeightedRevision> {
    for w in &route.weights {
        if !revisions.iter().any(|r| r.hash == w.revision.0) {
            // Pods gone since the engine saw them: their share gets a 503,
            // as a revision without ready endpoints does, until the next route.
            let endpoints = ep
                .experiments
                .get(&w.revision.0)
                .or_else(|| ep.ready.get(&w.revision.0))
                .cloned()
                .unwrap_or_default();
            revisions.push(RevisionEndpoints {
                hash: w.revision.0.clone(),
                endpoints,
            });
        }
    }
    route
        .weights
        .iter()
        .map(|w| WeightedRevision {
            hash: w.revision.0.clone(),
            weight: w.weight,
        })
        .collect()
}

fn listen(ports: &BTreeMap<String, u16>, name: &str) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports.get(name).copied().unwrap_or(0)))
}

fn header_match(name: &str, v: &e::StringMatch) -> HeaderMatch {
    let (exact, prefix, regex) = match v {
        e::StringMatch::Exact(s) => (Some(s.clone()), None, None),
        e::StringMatch::Prefix(s) => (None, Some(s.clone()), None),
        e::StringMatch::Regex(s) => (None, None, Some(s.clone())),
    };
    HeaderMatch {
        name: name.to_string(),
        exact,
        prefix,
        regex,
    }
}

fn value_match(v: &e::StringMatch) -> ValueMatch {
    match v {
        e::StringMatch::Exact(s) => ValueMatch {
            exact: Some(s.clone()),
            ..ValueMatch::default()
        },
        e::StringMatch::Prefix(s) => ValueMatch {
            prefix: Some(s.clone()),
            ..ValueMatch::default()
        },
        e::StringMatch::Regex(s) => ValueMatch {
            regex: Some(s.clone()),
            ..ValueMatch::default()
        },
    }
}

/// The engine's mirror route as the proxy's, copying to revision `hash`.
fn mirror_route(m: &e::MirrorRoute, hash: &str) -> MirrorRoute {
    MirrorRoute {
        matches: m
            .matches
            .iter()
            .map(|mm| MirrorMatch {
                method: mm.method.as_ref().map(value_match),
                path: mm.path.as_ref().map(value_match),
                headers: mm
                    .headers
                    .iter()
                    .map(|h| header_match(&h.name, &h.value))
                    .collect(),
            })
            .collect(),
        percentage: m.percentage,
        hash: hash.to_string(),
    }
}

/// Builds the proxy configuration. `ports` maps listener names to fixed
/// ports (serin.yaml `services:`); others get port 0.
pub fn proxy_config(
    set: &m::ManifestSet,
    rollouts: &[RolloutRouting<'_>],
    ports: &BTreeMap<String, u16>,
) -> ProxyConfig {
    let mut services = Vec::new();
    let mut selected: Vec<bool> = vec![false; rollouts.len()];
    for (_, svc) in set.services() {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let Some((i, rr)) = rollouts
            .iter()
            .enumerate()
            .find(|(_, rr)| selects(&svc.spec.selector, &labels(rr.rollout)))
        else {
            continue;
        };
        selected[i] = true;
        let revisions =
            match role_of(rr.rollout, &name).and_then(|role| rr.route.services.get(&role)) {
                Some(h) => vec![revision(rr.endpoints, &h.0)],
                None => all_revisions(rr.endpoints),
            };
        services.push(ServiceConfig {
            name: name.clone(),
            app: app_of(rr.rollout),
            listen: listen(ports, &name),
            revisions,
            weights: Vec::new(),
            header_routes: Vec::new(),
            ..service_defaults()
        });
    }
    for (i, rr) in rollouts.iter().enumerate() {
        let r = rr.rollout;
        // Every traffic router's object (VirtualService, Ingress,
        // TrafficSplit, Mapping, HTTPRoute, ...) is one weighted listener.
        let objects: Vec<m::RouterObject> = r
            .spec
            .strategy
            .canary
            .as_ref()
            .and_then(|c| c.traffic_routing.as_ref())
            .map(|t| t.router_objects(r.metadata.name.as_deref().unwrap_or("")))
            .unwrap_or_default();
        let stable = rr.route.services.get(&e::ServiceRole::Stable);
        let canary = rr.route.services.get(&e::ServiceRole::Canary);
        for obj in objects {
            selected[i] = true;
            let vs = set
                .virtual_services()
                .filter(|_| obj.router == "istio")
                .find(|(_, v)| v.metadata.name.as_deref() == Some(obj.name.as_str()))
                .map(|(_, v)| v);
            let mut header_routes = Vec::new();
            let canary_service = r
                .spec
                .strategy
                .canary
                .as_ref()
                .and_then(|c| c.canary_service.clone());
            if let (Some(vs), Some(canary)) = (vs, canary) {
                for http in &vs.spec.http {
                    let to_canary = http
                        .route
                        .iter()
                        .all(|d| Some(&d.destination.host) == canary_service.as_ref());
                    if !to_canary || http.route.is_empty() {
                        continue;
                    }
                    for mt in &http.r#match {
                        if mt.headers.is_empty() {
                            continue;
                        }
                        let matches = mt
                            .headers
                            .iter()
                            .map(|(k, v)| HeaderMatch {
                                name: k.clone(),
                                exact: v.exact.clone(),
                                prefix: v.prefix.clone(),
                                regex: v.regex.clone(),
                            })
                            .collect();
                        header_routes.push(HeaderRoute {
                            matches,
                            hash: canary.0.clone(),
                        });
                    }
                }
            }
            if let Some(canary) = canary
                && stable != Some(canary)
            {
                for (header, value) in &obj.canary_headers {
                    // nginx: `canary-by-header-value` matches exactly;
                    // without one, the header's value `always` does.
                    header_routes.push(HeaderRoute {
                        matches: vec![HeaderMatch {
                            name: header.clone(),
                            exact: Some(value.clone().unwrap_or_else(|| "always".into())),
                            prefix: None,
                            regex: None,
                        }],
                        hash: canary.0.clone(),
                    });
                }
            }
            if let Some(canary) = canary {
                for hr in &rr.route.header_routes {
                    header_routes.push(HeaderRoute {
                        matches: hr
                            .matches
                            .iter()
                            .map(|m| header_match(&m.name, &m.value))
                            .collect(),
                        hash: canary.0.clone(),
                    });
                }
            }
            // setMirrorRoute: copies of matching requests to the canary.
            let mirror_routes = match canary {
                Some(canary) if stable != Some(canary) => rr
                    .route
                    .mirror_routes
                    .iter()
                    .map(|m| mirror_route(m, &canary.0))
                    .collect(),
                _ => Vec::new(),
            };
            let mut revisions = Vec::new();
            for h in [stable, canary].into_iter().flatten() {
                if !revisions.iter().any(|r: &RevisionEndpoints| r.hash == h.0) {
                    revisions.push(revision(rr.endpoints, &h.0));
                }
            }
            let weights = weighted(rr.route, rr.endpoints, &mut revisions);
            // The router object replaces a plain Service of the same name
            // (e.g. SMI's root Service): clients calling it get the split.
            services.retain(|s| s.name != obj.name);
            services.push(ServiceConfig {
                listen: listen(ports, &obj.name),
                name: obj.name,
                app: app_of(r),
                revisions,
                weights,
                header_routes,
                mirror_routes,
                ..service_defaults()
            });
        }
    }
    for (i, rr) in rollouts.iter().enumerate() {
        if selected[i] {
            continue;
        }
        let name = rr.rollout.metadata.name.clone().unwrap_or_default();
        let mut revisions = all_revisions(rr.endpoints);
        let weights = weighted(rr.route, rr.endpoints, &mut revisions);
        services.push(ServiceConfig {
            name: name.clone(),
            app: app_of(rr.rollout),
            listen: listen(ports, &name),
            revisions,
            weights,
            header_routes: Vec::new(),
            ..service_defaults()
        });
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    ProxyConfig {
        services,
        ..ProxyConfig::default()
    }
}

/// The proxy's defaults for what routing does not decide (request timeout,
/// upstream protocol); struct update syntax fills a listener from it.
fn service_defaults() -> ServiceConfig {
    ServiceConfig {
        name: String::new(),
        app: String::new(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        revisions: Vec::new(),
        weights: Vec::new(),
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
        request_timeout_ms: None,
        upstream_protocol: serin_proxy::UpstreamProtocol::default(),
    }
}
