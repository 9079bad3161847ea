//! Traffic on a cluster: which revision each Service selects (the
//! `rollouts-pod-template-hash` selector key), the weights, header routes
//! and mirror routes of Istio VirtualServices (split by Service host, or by
//! DestinationRule subset whose hash labels Serin sets), and Gateway API
//! HTTPRoutes' weights, header rules and mirror rules. Everything is written with
//! server-side apply as field manager `serin`, owning only what it sets: a
//! Service's one selector key, a VirtualService's `spec.http` or a
//! DestinationRule's `spec.subsets` (atomic lists in Istio's schema, so
//! they are sent whole, as read, with only weights, hash labels and Serin's
//! managed routes changed). Hosts, gateways, TCP/TLS routes and other
//! owners' fields are never touched.

use serde_json::{Value, json};
use serin_engine::{RevisionHash, Route, ServiceRole, StringMatch};

use crate::object::RolloutObject;
use crate::{Error, LABEL_HASH};

/// One VirtualService a rollout routes through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VsRef {
    pub name: String,
    pub namespace: String,
    /// HTTP route names to set weights on (empty: the only route).
    pub routes: Vec<String>,
}

/// A rollout's routing objects, from its spec.
#[derive(Clone, Debug, Default)]
pub(crate) struct Routing {
    /// Services and the role whose revision they select.
    pub services: Vec<(ServiceRole, String)>,
    pub virtual_services: Vec<VsRef>,
    /// Gateway API HTTPRoutes (the `argoproj-labs/gatewayAPI` plugin's config).
    pub http_routes: Vec<VsRef>,
    pub stable_service: Option<String>,
    pub canary_service: Option<String>,
    /// `trafficRouting.managedRoutes`, in precedence order.
    pub managed_routes: Vec<String>,
    /// `trafficRouting.istio.destinationRule`: split by subset, not by Service.
    pub destination_rule: Option<DrRef>,
    /// The Rollout's name (experiment Services are named after it).
    pub rollout: String,
    /// The Services of this Rollout's experiment workloads the engine
    /// still knows of (running or being removed): destinations and
    /// backendRefs naming one that the route no longer weighs are removed.
    /// Set by the adapter from the stored status; other destinations are
    /// never removed.
    pub experiment_services: Vec<String>,
}

/// The Service a weighted experiment template's pods are reached through
/// (Argo's experiment Service): `{rollout}-{workload hash}`, cut to a
/// DNS label's 63 characters.
pub(crate) fn experiment_service(rollout: &str, hash: &RevisionHash) -> String {
    let mut name = format!("{rollout}-{}", hash.0);
    if name.len() > 63 {
        // Keep the hash (the unique part): cut the rollout's name.
        let keep = 63usize.saturating_sub(hash.0.len() + 1);
        name = format!(
            "{}-{}",
            &rollout[..keep.min(rollout.len())].trim_end_matches('-'),
            hash.0
        );
    }
    name
}

/// The weighted destinations of `route` that are neither the stable's nor
/// the canary's revision: a weighted experiment's templates (Argo's
/// `additionalDestinations`), as (Service, weight).
pub(crate) fn experiment_weights(rollout: &str, route: &Route) -> Vec<(String, u32)> {
    let stable = route.services.get(&ServiceRole::Stable);
    let canary = route.services.get(&ServiceRole::Canary);
    route
        .weights
        .iter()
        .filter(|w| Some(&w.revision) != stable && Some(&w.revision) != canary && w.weight > 0)
        .map(|w| (experiment_service(rollout, &w.revision), w.weight))
        .collect()
}

/// The DestinationRule whose subsets select the stable and the canary pods
/// (Istio subset-level splitting): Serin sets each subset's
/// `rollouts-pod-template-hash` label, the VirtualService's destinations
/// name the subsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DrRef {
    pub name: String,
    pub namespace: String,
    pub canary_subset: String,
    pub stable_subset: String,
}

impl Routing {
    pub fn of(obj: &RolloutObject) -> Self {
        let ns = obj.namespace().to_string();
        let mut r = Routing {
            rollout: obj.name().to_string(),
            ..Routing::default()
        };
        let s = |p: &[&str]| obj.spec_str(p).map(str::to_string);
        r.stable_service = s(&["strategy", "canary", "stableService"]);
        r.canary_service = s(&["strategy", "canary", "canaryService"]);
        for (role, name) in [
            (ServiceRole::Stable, r.stable_service.clone()),
            (ServiceRole::Canary, r.canary_service.clone()),
            (
                ServiceRole::Active,
                s(&["strategy", "blueGreen", "activeService"]),
            ),
            (
                ServiceRole::Preview,
                s(&["strategy", "blueGreen", "previewService"]),
            ),
        ] {
            if let Some(n) = name {
                r.services.push((role, n));
            }
        }
        let tr = obj.spec.pointer("/strategy/canary/trafficRouting");
        if let Some(istio) = tr.and_then(|t| t.get("istio")) {
            let mut refs: Vec<&Value> = istio.get("virtualService").into_iter().collect();
            if let Some(list) = istio.get("virtualServices").and_then(Value::as_array) {
                refs.extend(list);
            }
            for v in refs {
                let Some(full) = v.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let (name, vns) = match full.split_once('.') {
                    Some((n, s)) => (n.to_string(), s.to_string()),
                    None => (full.to_string(), ns.clone()),
                };
                let routes = v
                    .get("routes")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                r.virtual_services.push(VsRef {
                    name,
                    namespace: vns,
                    routes,
                });
            }
            if let Some(dr) = istio.get("destinationRule") {
                let f = |k: &str| dr.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                r.destination_rule = Some(DrRef {
                    name: f("name"),
                    namespace: ns.clone(),
                    canary_subset: f("canarySubsetName"),
                    stable_subset: f("stableSubsetName"),
                });
            }
        }
        if let Some(g) = tr.and_then(|t| t.pointer("/plugins/argoproj-labs~1gatewayAPI")) {
            let gns = g
                .get("namespace")
                .and_then(Value::as_str)
                .map_or(ns.clone(), str::to_string);
            let mut names: Vec<String> = g
                .get("httpRoute")
                .and_then(Value::as_str)
                .map(str::to_string)
                .into_iter()
                .collect();
            if let Some(list) = g.get("httpRoutes").and_then(Value::as_array) {
                names.extend(
                    list.iter()
                        .filter_map(|h| h.get("name").and_then(Value::as_str))
                        .map(str::to_string),
                );
            }
            for name in names {
                r.http_routes.push(VsRef {
                    name,
                    namespace: gns.clone(),
                    routes: Vec::new(),
                });
            }
        }
        if let Some(list) = tr
            .and_then(|t| t.get("managedRoutes"))
            .and_then(Value::as_array)
        {
            r.managed_routes = list
                .iter()
                .filter_map(|m| m.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
        }
        r
    }
}

/// The Service name of a destination host (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`).
fn short_host(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// (stable, canary) weights of `route`; `None` when it sets no weights.
pub(crate) fn split(route: &Route) -> Option<(u32, u32)> {
    if route.weights.is_empty() {
        return None;
    }
    let stable = route.services.get(&ServiceRole::Stable);
    let canary = route.services.get(&ServiceRole::Canary);
    let canary_w: u32 = route
        .weights
        .iter()
        .filter(|w| Some(&w.revision) == canary && canary != stable)
        .map(|w| w.weight)
        .sum();
    let canary_w = canary_w.min(100);
    // A weighted experiment's share comes out of the stable's (as Argo).
    let others: u32 = route
        .weights
        .iter()
        .filter(|w| Some(&w.revision) != canary && Some(&w.revision) != stable)
        .map(|w| w.weight)
        .sum();
    Some((
        100u32.saturating_sub(canary_w).saturating_sub(others),
        canary_w,
    ))
}

/// `http` of a VirtualService with `route` applied: weights of the stable
/// and canary destinations on the named routes, and Serin's managed header
/// routes on top. Applying it to its own output changes nothing, so
/// "already in force" is `vs_http(current) == current`.
pub(crate) fn vs_http(
    http: &[Value],
    vs: &VsRef,
    r: &Routing,
    route: &Route,
) -> Result<Vec<Value>, Error> {
    // A DestinationRule splits by subset; without one, by Service.
    if r.destination_rule.is_none() && (r.stable_service.is_none() || r.canary_service.is_none()) {
        return Err(Error::Invalid(
            "Istio routing needs canaryService and stableService, or a destinationRule".into(),
        ));
    }
    let stable = r.stable_service.as_deref().unwrap_or_default();
    let canary = r.canary_service.as_deref().unwrap_or_default();
    // Which arm a destination is: by subset with a DestinationRule (all
    // destinations then name its host), by Service host otherwise.
    let arm = |d: &Value| -> Option<ServiceRole> {
        match &r.destination_rule {
            Some(dr) => {
                let subset = d.pointer("/destination/subset").and_then(Value::as_str)?;
                if subset == dr.stable_subset {
                    Some(ServiceRole::Stable)
                } else if subset == dr.canary_subset {
                    Some(ServiceRole::Canary)
                } else {
                    None
                }
            }
            None => {
                let host = d
                    .pointer("/destination/host")
                    .and_then(Value::as_str)
                    .map(short_host)?;
                if host == stable {
                    Some(ServiceRole::Stable)
                } else if host == canary {
                    Some(ServiceRole::Canary)
                } else {
                    None
                }
            }
        }
    };
    let (stable_arm, canary_arm) = match &r.destination_rule {
        Some(dr) => (
            format!("subsets {} and {}", dr.stable_subset, dr.canary_subset),
            dr.canary_subset.as_str(),
        ),
        None => (format!("Services {stable} and {canary}"), canary),
    };
    let name_of = |h: &Value| h.get("name").and_then(Value::as_str).map(str::to_string);
    let is_managed = |h: &Value| name_of(h).is_some_and(|n| r.managed_routes.contains(&n));
    let mut out: Vec<Value> = http.iter().filter(|h| !is_managed(h)).cloned().collect();
    let targets = |out: &[Value]| -> Result<Vec<usize>, Error> {
        if vs.routes.is_empty() {
            if out.len() != 1 {
                return Err(Error::Invalid(format!(
                    "VirtualService {}: it has {} HTTP routes; name the ones to split in trafficRouting.istio.virtualService.routes",
                    vs.name,
                    out.len()
                )));
            }
            return Ok(vec![0]);
        }
        vs.routes
            .iter()
            .map(|want| {
                out.iter()
                    .position(|h| name_of(h).as_deref() == Some(want.as_str()))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "VirtualService {}: no HTTP route named {want}",
                            vs.name
                        ))
                    })
            })
            .collect()
    };
    let experiments = experiment_weights(&r.rollout, route);
    if let Some((stable_w, canary_w)) = split(route) {
        for i in targets(&out)? {
            let label = name_of(&out[i]).unwrap_or_else(|| format!("http[{i}]"));
            let dests = out[i]
                .get_mut("route")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "VirtualService {}: route {label} has no destinations",
                        vs.name
                    ))
                })?;
            let mut seen = (false, false);
            let mut kept = Vec::with_capacity(dests.len());
            let mut routed = Vec::new();
            for mut d in std::mem::take(dests) {
                let w = match arm(&d) {
                    Some(ServiceRole::Stable) => {
                        seen.0 = true;
                        stable_w
                    }
                    Some(_) => {
                        seen.1 = true;
                        canary_w
                    }
                    None => {
                        let host = d
                            .pointer("/destination/host")
                            .and_then(Value::as_str)
                            .map(short_host)
                            .unwrap_or_default()
                            .to_string();
                        match experiments.iter().find(|(svc, _)| *svc == host) {
                            Some((_, w)) => {
                                routed.push(host);
                                *w
                            }
                            // An experiment that is over: its destination goes.
                            None if r.experiment_services.contains(&host) => continue,
                            None => {
                                kept.push(d);
                                continue;
                            }
                        }
                    }
                };
                if let Some(o) = d.as_object_mut() {
                    o.insert("weight".into(), json!(w));
                }
                kept.push(d);
            }
            // A running weighted experiment's templates (Argo's
            // additionalDestinations): their Services, after the rest.
            for (svc, w) in &experiments {
                if !routed.contains(svc) {
                    kept.push(json!({"destination": {"host": svc}, "weight": w}));
                }
            }
            *dests = kept;
            if !(seen.0 && seen.1) {
                return Err(Error::Invalid(format!(
                    "VirtualService {}: route {label} needs destinations for both {stable_arm}",
                    vs.name
                )));
            }
        }
    }
    for name in route
        .header_routes
        .iter()
        .map(|h| &h.name)
        .chain(route.mirror_routes.iter().map(|m| &m.name))
    {
        if !r.managed_routes.contains(name) {
            return Err(Error::Invalid(format!(
                "route {name}: not listed in spec.strategy.canary.trafficRouting.managedRoutes"
            )));
        }
    }
    // The canary's destination as the (first) weighted route names it: the
    // target of header routes and mirrors, with its subset and port.
    let canary_destination = |out: &[Value]| -> Result<Value, Error> {
        let i = targets(out)?[0];
        out[i]["route"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| arm(d) == Some(ServiceRole::Canary)))
            .and_then(|d| d.get("destination").cloned())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "VirtualService {}: no destination for {canary_arm} to route or mirror to",
                    vs.name
                ))
            })
    };
    let string_match = |m: &StringMatch| match m {
        StringMatch::Exact(x) => json!({"exact": x}),
        StringMatch::Prefix(x) => json!({"prefix": x}),
        StringMatch::Regex(x) => json!({"regex": x}),
    };
    // Managed routes go first, in managedRoutes order (Argo's orderRoutes).
    let mut top = Vec::new();
    for name in &r.managed_routes {
        if let Some(hr) = route
            .header_routes
            .iter()
            .find(|h| &h.name == name && !h.matches.is_empty())
        {
            let mut headers = serde_json::Map::new();
            for m in &hr.matches {
                headers.insert(m.name.clone(), string_match(&m.value));
            }
            let destination = match &r.destination_rule {
                // Without a DestinationRule: the canary Service, as before
                // subsets existed (no port: the Service's only one).
                None => json!({"host": canary}),
                Some(dr) => {
                    let d = canary_destination(&out)?;
                    json!({"host": d["host"], "subset": dr.canary_subset})
                }
            };
            top.push(json!({
                "name": name,
                "match": [{"headers": headers}],
                "route": [{"destination": destination, "weight": 100}],
            }));
        } else if let Some(mr) = route
            .mirror_routes
            .iter()
            .find(|m| &m.name == name && !m.matches.is_empty())
        {
            // As Argo's createMirrorRoute: the matching requests keep the
            // weighted route's destinations (and its weights as they change);
            // a copy of `percentage` of them goes to the canary.
            let matches: Vec<Value> = mr
                .matches
                .iter()
                .map(|m| {
                    let mut one = serde_json::Map::new();
                    if let Some(v) = &m.method {
                        one.insert("method".into(), string_match(v));
                    }
                    if let Some(v) = &m.path {
                        one.insert("uri".into(), string_match(v));
                    }
                    if !m.headers.is_empty() {
                        let mut headers = serde_json::Map::new();
                        for h in &m.headers {
                            headers.insert(h.name.clone(), string_match(&h.value));
                        }
                        one.insert("headers".into(), Value::Object(headers));
                    }
                    Value::Object(one)
                })
                .collect();
            let i = targets(&out)?[0];
            let dests = out[i]["route"].clone();
            top.push(json!({
                "name": name,
                "match": matches,
                "route": dests,
                "mirror": canary_destination(&out)?,
                // An integer: the server gives a whole float back as one,
                // and the output must equal what is read back.
                "mirrorPercentage": {"value": mr.percentage},
            }));
        }
    }
    top.extend(out);
    Ok(top)
}

/// `spec.subsets` of a DestinationRule with the stable and canary subsets'
/// `rollouts-pod-template-hash` label set to the revisions `route`'s
/// stable and canary Services select (Argo's `UpdateHash`); other subsets
/// and fields are kept as read (Argo drops other subsets). Idempotent like
/// [`vs_http`].
pub(crate) fn dr_subsets(
    subsets: &[Value],
    dr: &DrRef,
    route: &Route,
) -> Result<Vec<Value>, Error> {
    let mut out = subsets.to_vec();
    for (subset, role) in [
        (&dr.stable_subset, ServiceRole::Stable),
        (&dr.canary_subset, ServiceRole::Canary),
    ] {
        let s = out
            .iter_mut()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(subset.as_str()))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "DestinationRule {}/{}: no subset named {subset} (trafficRouting.istio.destinationRule)",
                    dr.namespace, dr.name
                ))
            })?;
        let Some(o) = s.as_object_mut() else {
            continue;
        };
        let labels = o.entry("labels").or_insert_with(|| json!({}));
        let Some(labels) = labels.as_object_mut() else {
            return Err(Error::Invalid(format!(
                "DestinationRule {}/{}: subset {subset} has labels that are not a map",
                dr.namespace, dr.name
            )));
        };
        match route.services.get(&role) {
            Some(h) => {
                labels.insert(LABEL_HASH.into(), json!(h.0));
            }
            None => {
                labels.remove(LABEL_HASH);
            }
        }
        if labels.is_empty() {
            o.remove("labels");
        }
    }
    Ok(out)
}

/// `spec.rules` of a Gateway API HTTPRoute with `route`'s weights on the
/// backendRefs of the stable and canary Services, in every rule that names
/// both (as Argo's Gateway API plugin does). Idempotent like [`vs_http`].
pub(crate) fn httproute_rules(
    rules: &[Value],
    hr: &VsRef,
    r: &Routing,
    route: &Route,
) -> Result<Vec<Value>, Error> {
    let (Some(stable), Some(canary)) = (&r.stable_service, &r.canary_service) else {
        return Err(Error::Invalid(
            "Gateway API routing needs canaryService and stableService".into(),
        ));
    };
    for name in route
        .header_routes
        .iter()
        .map(|h| &h.name)
        .chain(route.mirror_routes.iter().map(|m| &m.name))
    {
        if !r.managed_routes.contains(name) {
            return Err(Error::Invalid(format!(
                "route {name}: not listed in spec.strategy.canary.trafficRouting.managedRoutes"
            )));
        }
    }
    // Serin's header rules carry their managed route's name (HTTPRoute
    // rules have a unique `name` since Gateway API v1.2); Argo's plugin
    // tracks them by index in a ConfigMap instead. They are rebuilt from
    // the route each time, so applying the output again changes nothing.
    let is_managed = |rule: &Value| {
        rule.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| r.managed_routes.iter().any(|m| m == n))
    };
    let mut out: Vec<Value> = rules
        .iter()
        .filter(|rule| !is_managed(rule))
        .cloned()
        .collect();
    let header_rules = header_rules(&out, hr, r, route, stable, canary)?;
    let experiments = experiment_weights(&r.rollout, route);
    let Some((stable_w, canary_w)) = split(route) else {
        let mirror_rules = mirror_rules(&out, hr, r, route, stable, canary)?;
        out.extend(in_managed_order(r, header_rules, mirror_rules));
        return Ok(out);
    };
    let mut found = false;
    for rule in &mut out {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else {
            continue;
        };
        let names = |n: &str| refs.iter().any(|b| b["name"] == n);
        if !(names(stable) && names(canary)) {
            continue;
        }
        found = true;
        // A new experiment backendRef is the canary's with another name.
        let like_canary = refs.iter().find(|b| b["name"] == canary.as_str()).cloned();
        let mut kept = Vec::with_capacity(refs.len());
        let mut routed = Vec::new();
        for mut b in std::mem::take(refs) {
            let name = b["name"].as_str().unwrap_or_default().to_string();
            let w = if name == *stable {
                stable_w
            } else if name == *canary {
                canary_w
            } else if let Some((_, w)) = experiments.iter().find(|(svc, _)| *svc == name) {
                routed.push(name);
                *w
            } else if r.experiment_services.contains(&name) {
                // An experiment that is over: its backendRef goes.
                continue;
            } else {
                kept.push(b);
                continue;
            };
            if let Some(o) = b.as_object_mut() {
                o.insert("weight".into(), json!(w));
            }
            kept.push(b);
        }
        for (svc, w) in &experiments {
            if let (false, Some(mut b)) = (routed.contains(svc), like_canary.clone()) {
                b["name"] = json!(svc);
                b["weight"] = json!(w);
                kept.push(b);
            }
        }
        *refs = kept;
    }
    if !found {
        return Err(Error::Invalid(format!(
            "HTTPRoute {}/{}: no rule has backendRefs for both Services {stable} and {canary}",
            hr.namespace, hr.name
        )));
    }
    // Built after the weights: a mirror rule keeps the split as it is now.
    let mirror_rules = mirror_rules(&out, hr, r, route, stable, canary)?;
    out.extend(in_managed_order(r, header_rules, mirror_rules));
    Ok(out)
}

/// Header and mirror rules together, in managedRoutes order.
fn in_managed_order(r: &Routing, header: Vec<Value>, mirror: Vec<Value>) -> Vec<Value> {
    let mut all: Vec<Value> = header.into_iter().chain(mirror).collect();
    all.sort_by_key(|rule| {
        r.managed_routes
            .iter()
            .position(|m| rule["name"] == m.as_str())
            .unwrap_or(usize::MAX)
    });
    all
}

/// The rules for `route`'s mirror routes (Argo's Gateway API plugin accepts
/// `setMirrorRoute` and does nothing; Serin does what Istio does): per
/// route, a rule named after it whose matches are the step's (method
/// exact; path and headers exact or, for a prefix or regex, a regular
/// expression), with the split rule's backendRefs at their current weights
/// and filters, plus a `RequestMirror` filter copying `percentage` % to the
/// canary Service. Its matches are more specific than the split rule's, so
/// Gateway API's precedence gives the matching requests to it.
fn mirror_rules(
    rules: &[Value],
    hr: &VsRef,
    r: &Routing,
    route: &Route,
    stable: &str,
    canary: &str,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for name in &r.managed_routes {
        let Some(m) = route
            .mirror_routes
            .iter()
            .find(|m| &m.name == name && !m.matches.is_empty())
        else {
            continue;
        };
        let base = split_rule(rules, hr, stable, canary, &format!("setMirrorRoute {name}"))?;
        let mut matches = Vec::new();
        for mm in &m.matches {
            let mut one = serde_json::Map::new();
            if let Some(method) = &mm.method {
                let StringMatch::Exact(v) = method else {
                    return Err(Error::Invalid(format!(
                        "HTTPRoute {}/{}: setMirrorRoute {name}: Gateway API matches a method exactly, not by prefix or regex",
                        hr.namespace, hr.name
                    )));
                };
                one.insert("method".into(), json!(v.to_ascii_uppercase()));
            }
            if let Some(path) = &mm.path {
                let (kind, value) = gateway_match(path);
                one.insert("path".into(), json!({"type": kind, "value": value}));
            }
            if !mm.headers.is_empty() {
                let headers: Vec<Value> = mm
                    .headers
                    .iter()
                    .map(|h| {
                        let (kind, value) = gateway_match(&h.value);
                        json!({"name": h.name, "type": kind, "value": value})
                    })
                    .collect();
                one.insert("headers".into(), json!(headers));
            }
            matches.push(Value::Object(one));
        }
        let mirror_to = canary_backend(base, canary);
        let mut filters: Vec<Value> = base["filters"].as_array().cloned().unwrap_or_default();
        filters.push(json!({"type": "RequestMirror",
            "requestMirror": {"backendRef": mirror_to, "percent": m.percentage}}));
        out.push(json!({"name": name, "matches": matches,
                        "backendRefs": base["backendRefs"].clone(), "filters": filters}));
    }
    Ok(out)
}

/// The rules for `route`'s header routes, in managedRoutes order, as Argo's
/// Gateway API plugin builds them (`setHTTPHeaderRoute`): from the first
/// rule whose backendRefs name both Services, each of its matches (path,
/// query parameters) with the header matches added, its filters, and the
/// canary Service as the only backend. Gateway API prefers the match with
/// more header matches, so these win over the split rule whatever their
/// place. A prefix is a regular expression there (the API has Exact and
/// RegularExpression only), escaped here where Argo's plugin leaves it raw.
fn header_rules(
    rules: &[Value],
    hr: &VsRef,
    r: &Routing,
    route: &Route,
    stable: &str,
    canary: &str,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for name in &r.managed_routes {
        let Some(h) = route
            .header_routes
            .iter()
            .find(|h| &h.name == name && !h.matches.is_empty())
        else {
            continue;
        };
        let base = split_rule(rules, hr, stable, canary, &format!("setHeaderRoute {name}"))?;
        let headers: Vec<Value> = h
            .matches
            .iter()
            .map(|m| {
                let (kind, value) = gateway_match(&m.value);
                json!({"name": m.name, "type": kind, "value": value})
            })
            .collect();
        // A rule without matches matches every path (the API's default).
        let default_match = [json!({"path": {"type": "PathPrefix", "value": "/"}})];
        let base_matches = match base["matches"].as_array() {
            Some(ms) if !ms.is_empty() => ms.as_slice(),
            _ => &default_match,
        };
        let matches: Vec<Value> = base_matches
            .iter()
            .map(|m| {
                let mut one = serde_json::Map::new();
                for key in ["path", "queryParams", "method"] {
                    if let Some(v) = m.get(key) {
                        one.insert(key.into(), v.clone());
                    }
                }
                one.insert("headers".into(), json!(headers));
                Value::Object(one)
            })
            .collect();
        let backend = canary_backend(base, canary);
        let mut rule = json!({"name": name, "matches": matches, "backendRefs": [backend]});
        if let (Some(f), Some(o)) = (base.get("filters"), rule.as_object_mut()) {
            o.insert("filters".into(), f.clone());
        }
        out.push(rule);
    }
    Ok(out)
}

/// The first rule whose backendRefs name both Services: the split that a
/// managed route's rule (`step`, for the error) is built from.
fn split_rule<'a>(
    rules: &'a [Value],
    hr: &VsRef,
    stable: &str,
    canary: &str,
    step: &str,
) -> Result<&'a Value, Error> {
    let names = |rule: &Value, n: &str| {
        rule["backendRefs"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|b| b["name"] == n))
    };
    rules
        .iter()
        .find(|rule| names(rule, stable) && names(rule, canary))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "HTTPRoute {}/{}: {step} needs a rule with backendRefs for both Services {stable} and {canary}",
                hr.namespace, hr.name
            ))
        })
}

/// A backendRef to the canary Service, with the port the split rule gives it.
fn canary_backend(base: &Value, canary: &str) -> Value {
    let port = base["backendRefs"]
        .as_array()
        .and_then(|refs| refs.iter().find(|b| b["name"] == canary))
        .and_then(|b| b.get("port").cloned());
    let mut backend = json!({"group": "", "kind": "Service", "name": canary});
    if let (Some(p), Some(o)) = (port, backend.as_object_mut()) {
        o.insert("port".into(), p);
    }
    backend
}

/// A string match as Gateway API writes it: `Exact`, or a
/// `RegularExpression` for a prefix (escaped) or a regex — the API has
/// those two only.
fn gateway_match(m: &StringMatch) -> (&'static str, String) {
    match m {
        StringMatch::Exact(v) => ("Exact", v.clone()),
        StringMatch::Prefix(v) => ("RegularExpression", format!("{}.*", regex_escape(v))),
        StringMatch::Regex(v) => ("RegularExpression", v.clone()),
    }
}

/// `s` with the characters regular expressions treat specially escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The server-side apply body for a Service's Serin-owned selector key
/// (`None`: Serin owns nothing there and the key goes).
pub(crate) fn service_apply(name: &str, namespace: &str, hash: Option<&str>) -> Value {
    let spec = match hash {
        Some(h) => json!({"selector": {LABEL_HASH: h}}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serin_engine::{
        HeaderMatch, HeaderRoute, MirrorMatch, MirrorRoute, RevisionHash, WeightedDestination,
    };

    fn routing() -> Routing {
        Routing {
            stable_service: Some("web-stable".into()),
            canary_service: Some("web-canary".into()),
            managed_routes: vec!["beta".into()],
            ..Default::default()
        }
    }

    fn route(canary_w: u32) -> Route {
        let (s, c) = (RevisionHash::new("s1"), RevisionHash::new("c1"));
        Route {
            services: [
                (ServiceRole::Stable, s.clone()),
                (ServiceRole::Canary, c.clone()),
            ]
            .into(),
            weights: vec![
                WeightedDestination {
                    revision: s,
                    weight: 100 - canary_w,
                },
                WeightedDestination {
                    revision: c,
                    weight: canary_w,
                },
            ],
            header_routes: vec![],
            mirror_routes: vec![],
        }
    }

    fn http() -> Vec<Value> {
        vec![json!({"name": "primary", "timeout": "5s", "route": [
            {"destination": {"host": "web-stable.prod.svc.cluster.local", "port": {"number": 80}}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0}]})]
    }

    #[test]
    fn weights_go_on_the_stable_and_canary_destinations_and_nothing_else_changes() {
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let out = vs_http(&http(), &vs, &routing(), &route(20)).unwrap();
        assert_eq!(out[0]["route"][0]["weight"], 80);
        assert_eq!(out[0]["route"][1]["weight"], 20);
        assert_eq!(out[0]["timeout"], "5s");
        assert_eq!(out[0]["route"][0]["destination"]["port"]["number"], 80);
        // idempotent: applied to its own output it changes nothing
        assert_eq!(vs_http(&out, &vs, &routing(), &route(20)).unwrap(), out);
    }

    #[test]
    fn header_routes_go_first_and_are_removed_when_cleared() {
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec!["primary".into()],
        };
        let mut r = route(10);
        r.header_routes = vec![HeaderRoute {
            name: "beta".into(),
            matches: vec![HeaderMatch {
                name: "x-beta".into(),
                value: StringMatch::Exact("1".into()),
            }],
        }];
        let out = vs_http(&http(), &vs, &routing(), &r).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["name"], "beta");
        assert_eq!(out[0]["match"][0]["headers"]["x-beta"]["exact"], "1");
        let cleared = vs_http(&out, &vs, &routing(), &route(10)).unwrap();
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0]["name"], "primary");
    }

    fn beta(value: StringMatch) -> HeaderRoute {
        HeaderRoute {
            name: "beta".into(),
            matches: vec![HeaderMatch {
                name: "x-beta".into(),
                value,
            }],
        }
    }

    fn rules() -> Vec<Value> {
        vec![json!({
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "filters": [{"type": "RequestHeaderModifier",
                         "requestHeaderModifier": {"add": [{"name": "x-via", "value": "gw"}]}}],
            "backendRefs": [
                {"name": "web-stable", "port": 8080, "weight": 100},
                {"name": "web-canary", "port": 8080, "weight": 0}]})]
    }

    #[test]
    fn a_gateway_header_route_is_a_named_rule_to_the_canary_and_goes_when_cleared() {
        let hr = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let mut r = route(10);
        r.header_routes = vec![beta(StringMatch::Exact("1".into()))];
        let out = httproute_rules(&rules(), &hr, &routing(), &r).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0]["backendRefs"][0]["weight"], 90);
        assert_eq!(out[0]["backendRefs"][1]["weight"], 10);
        let rule = &out[1];
        assert_eq!(rule["name"], "beta");
        assert_eq!(
            rule["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/api"},
                    "headers": [{"name": "x-beta", "type": "Exact", "value": "1"}]}])
        );
        assert_eq!(
            rule["backendRefs"],
            json!([{"group": "", "kind": "Service", "name": "web-canary", "port": 8080}])
        );
        assert_eq!(rule["filters"], rules()[0]["filters"]);
        // Idempotent: applied to its own output it changes nothing.
        assert_eq!(httproute_rules(&out, &hr, &routing(), &r).unwrap(), out);
        // Cleared: the named rule goes, the split stays.
        let cleared = httproute_rules(&out, &hr, &routing(), &route(10)).unwrap();
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0]["backendRefs"][1]["weight"], 10);
        // A prefix is an escaped regular expression; a rule without matches
        // gets the API's default path.
        r.header_routes = vec![beta(StringMatch::Prefix("v1.2".into()))];
        let mut bare = rules();
        if let Some(o) = bare[0].as_object_mut() {
            o.remove("matches");
        }
        let out = httproute_rules(&bare, &hr, &routing(), &r).unwrap();
        assert_eq!(
            out[1]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/"},
                    "headers": [{"name": "x-beta", "type": "RegularExpression", "value": "v1\\.2.*"}]}])
        );
        // Not a managed route: refused, as with Istio.
        let mut unlisted = routing();
        unlisted.managed_routes.clear();
        let err = httproute_rules(&rules(), &hr, &unlisted, &r).unwrap_err();
        assert!(err.to_string().contains("managedRoutes"), "{err}");
    }

    #[test]
    fn a_missing_destination_or_route_is_a_clear_error() {
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec!["nope".into()],
        };
        let err = vs_http(&http(), &vs, &routing(), &route(10)).unwrap_err();
        assert!(
            err.to_string().contains("no HTTP route named nope"),
            "{err}"
        );
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let only_stable = vec![json!({"route": [{"destination": {"host": "web-stable"}}]})];
        let err = vs_http(&only_stable, &vs, &routing(), &route(10)).unwrap_err();
        assert!(err.to_string().contains("both Services"), "{err}");
    }

    fn mirror(percentage: u32) -> MirrorRoute {
        MirrorRoute {
            name: "beta".into(),
            percentage,
            matches: vec![MirrorMatch {
                method: Some(StringMatch::Exact("GET".into())),
                path: Some(StringMatch::Prefix("/api".into())),
                headers: vec![],
            }],
        }
    }

    /// As Argo's createMirrorRoute: the matching requests keep the split
    /// route's destinations at the current weights, a share is copied to
    /// the canary; the route follows later weights and goes when cleared.
    #[test]
    fn a_mirror_route_keeps_the_split_and_copies_to_the_canary() {
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec!["primary".into()],
        };
        let mut r = route(10);
        r.mirror_routes = vec![mirror(35)];
        let out = vs_http(&http(), &vs, &routing(), &r).unwrap();
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0]["name"], "beta");
        assert_eq!(
            out[0]["match"],
            json!([{"method": {"exact": "GET"}, "uri": {"prefix": "/api"}}])
        );
        assert_eq!(out[0]["route"], out[1]["route"]);
        assert_eq!(out[0]["route"][1]["weight"], 10);
        assert_eq!(out[0]["mirror"], json!({"host": "web-canary"}));
        assert_eq!(out[0]["mirrorPercentage"], json!({"value": 35}));
        assert_eq!(vs_http(&out, &vs, &routing(), &r).unwrap(), out);
        // the next setWeight moves the mirror route's weights too
        let mut r30 = route(30);
        r30.mirror_routes = vec![mirror(35)];
        let later = vs_http(&out, &vs, &routing(), &r30).unwrap();
        assert_eq!(later[0]["route"][0]["weight"], 70);
        assert_eq!(later[0]["route"][1]["weight"], 30);
        let cleared = vs_http(&later, &vs, &routing(), &route(30)).unwrap();
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0]["name"], "primary");
        // a mirror route not in managedRoutes is refused, not dropped
        let mut r = route(10);
        r.mirror_routes = vec![MirrorRoute {
            name: "other".into(),
            ..mirror(100)
        }];
        let err = vs_http(&http(), &vs, &routing(), &r).unwrap_err();
        assert!(err.to_string().contains("route other: not listed"), "{err}");
    }

    /// Gateway API: a mirror route is a named rule with the step's
    /// matches, the split's backendRefs at the current weights and a
    /// RequestMirror filter to the canary; it follows the weights and goes
    /// when cleared.
    #[test]
    fn a_gateway_mirror_route_is_a_named_rule_with_a_request_mirror_filter() {
        let hr = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let mut r = route(10);
        r.mirror_routes = vec![mirror(40)];
        let out = httproute_rules(&rules(), &hr, &routing(), &r).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        let rule = &out[1];
        assert_eq!(rule["name"], "beta");
        assert_eq!(
            rule["matches"],
            json!([{"method": "GET", "path": {"type": "RegularExpression", "value": "/api.*"}}])
        );
        assert_eq!(rule["backendRefs"], out[0]["backendRefs"]);
        assert_eq!(rule["backendRefs"][1]["weight"], 10);
        let filters = rule["filters"].as_array().unwrap();
        assert_eq!(
            filters.last().unwrap(),
            &json!({"type": "RequestMirror", "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "web-canary", "port": 8080},
                "percent": 40}})
        );
        assert_eq!(httproute_rules(&out, &hr, &routing(), &r).unwrap(), out);
        let mut r30 = route(30);
        r30.mirror_routes = vec![mirror(40)];
        let later = httproute_rules(&out, &hr, &routing(), &r30).unwrap();
        assert_eq!(later[1]["backendRefs"][1]["weight"], 30);
        let cleared = httproute_rules(&later, &hr, &routing(), &route(30)).unwrap();
        assert_eq!(cleared.len(), 1);
        // A method is matched exactly in Gateway API: a prefix is refused.
        let mut odd = route(10);
        odd.mirror_routes = vec![MirrorRoute {
            matches: vec![MirrorMatch {
                method: Some(StringMatch::Prefix("G".into())),
                ..Default::default()
            }],
            ..mirror(40)
        }];
        let err = httproute_rules(&rules(), &hr, &routing(), &odd).unwrap_err();
        assert!(err.to_string().contains("method exactly"), "{err}");
    }

    fn dr() -> DrRef {
        DrRef {
            name: "web".into(),
            namespace: "prod".into(),
            canary_subset: "canary".into(),
            stable_subset: "stable".into(),
        }
    }

    /// With a DestinationRule the destinations are told apart by subset
    /// (same host), no Services are needed, and the subsets' hash labels
    /// follow the revisions while other subsets and labels stay as read.
    #[test]
    fn a_destination_rule_splits_by_subset_and_labels_its_subsets() {
        let r = Routing {
            managed_routes: vec!["beta".into()],
            destination_rule: Some(dr()),
            ..Default::default()
        };
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let http = vec![json!({"route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]})];
        let mut rt = route(25);
        rt.header_routes = vec![beta(StringMatch::Exact("1".into()))];
        let out = vs_http(&http, &vs, &r, &rt).unwrap();
        assert_eq!(out[1]["route"][0]["weight"], 75);
        assert_eq!(out[1]["route"][1]["weight"], 25);
        assert_eq!(
            out[0]["route"][0]["destination"],
            json!({"host": "web", "subset": "canary"})
        );
        assert_eq!(vs_http(&out, &vs, &r, &rt).unwrap(), out);
        let no_canary = vec![json!({"route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100}]})];
        let err = vs_http(&no_canary, &vs, &r, &route(25)).unwrap_err();
        assert!(
            err.to_string().contains("subsets stable and canary"),
            "{err}"
        );

        let subsets = vec![
            json!({"name": "stable", "labels": {"app": "web"}}),
            json!({"name": "canary"}),
            json!({"name": "v0", "labels": {"version": "0"}}),
        ];
        let out = dr_subsets(&subsets, &dr(), &rt).unwrap();
        assert_eq!(
            out[0]["labels"],
            json!({"app": "web", "rollouts-pod-template-hash": "s1"})
        );
        assert_eq!(
            out[1]["labels"],
            json!({"rollouts-pod-template-hash": "c1"})
        );
        assert_eq!(out[2], subsets[2]);
        assert_eq!(dr_subsets(&out, &dr(), &rt).unwrap(), out);
        let err = dr_subsets(&subsets[..1], &dr(), &rt).unwrap_err();
        assert!(err.to_string().contains("no subset named canary"), "{err}");
    }

    fn with_experiment(canary_w: u32) -> Route {
        let mut r = route(canary_w);
        for (h, w) in [("e1", 10), ("e2", 5)] {
            r.weights.push(WeightedDestination {
                revision: RevisionHash::new(h),
                weight: w,
            });
        }
        r
    }

    /// Argo's additionalDestinations: a weighted experiment template's
    /// Service gets its weight out of the stable's; when the experiment is
    /// over its destination goes, and a destination that was never an
    /// experiment's stays.
    #[test]
    fn a_weighted_experiment_is_routed_to_its_services_and_they_go_when_it_is_over() {
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let mut http = http();
        http[0]["route"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": {"host": "web-legacy"}, "weight": 0}));
        let mut routing = routing();
        routing.rollout = "web".into();
        let out = vs_http(&http, &vs, &routing, &with_experiment(20)).unwrap();
        let dests = out[0]["route"].as_array().unwrap();
        let w = |host: &str| {
            dests
                .iter()
                .find(|d| {
                    d["destination"]["host"]
                        .as_str()
                        .is_some_and(|h| h.starts_with(host))
                })
                .map(|d| d["weight"].clone())
        };
        assert_eq!(w("web-stable"), Some(json!(65)));
        assert_eq!(w("web-canary"), Some(json!(20)));
        assert_eq!(w("web-e1"), Some(json!(10)));
        assert_eq!(w("web-e2"), Some(json!(5)));
        assert_eq!(w("web-legacy"), Some(json!(0)));
        assert_eq!(
            vs_http(&out, &vs, &routing, &with_experiment(20)).unwrap(),
            out
        );
        // Over: the engine still knows the workloads, the route no longer
        // weighs them.
        routing.experiment_services = vec!["web-e1".into(), "web-e2".into()];
        let over = vs_http(&out, &vs, &routing, &route(20)).unwrap();
        let hosts: Vec<&str> = over[0]["route"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["destination"]["host"].as_str())
            .collect();
        assert_eq!(
            hosts,
            [
                "web-stable.prod.svc.cluster.local",
                "web-canary",
                "web-legacy"
            ]
        );
        assert_eq!(over[0]["route"][0]["weight"], 80);

        // The same on an HTTPRoute: a backendRef like the canary's.
        let rules = httproute_rules(&rules(), &vs, &routing, &with_experiment(20)).unwrap();
        let refs = rules[0]["backendRefs"].as_array().unwrap();
        assert_eq!(
            refs.iter()
                .map(|b| (
                    b["name"].as_str().unwrap(),
                    b["weight"].as_u64().unwrap(),
                    b["port"].as_u64().unwrap()
                ))
                .collect::<Vec<_>>(),
            [
                ("web-stable", 65, 8080),
                ("web-canary", 20, 8080),
                ("web-e1", 10, 8080),
                ("web-e2", 5, 8080)
            ]
        );
        let over = httproute_rules(&rules, &vs, &routing, &route(20)).unwrap();
        assert_eq!(over[0]["backendRefs"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_experiment_service_name_is_a_dns_label_that_keeps_the_hash() {
        let h = RevisionHash::new("5d8f7c6b9a");
        assert_eq!(experiment_service("web", &h), "web-5d8f7c6b9a");
        let long = "a".repeat(80);
        let name = experiment_service(&long, &h);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-5d8f7c6b9a"), "{name}");
    }

    /// With DestinationRule subsets a weighted experiment template is
    /// still routed to by its Service (Argo's additionalDestinations name a
    /// host, not a subset).
    #[test]
    fn with_subsets_an_experiment_destination_names_its_service() {
        let mut r = Routing {
            destination_rule: Some(dr()),
            rollout: "web".into(),
            ..Default::default()
        };
        let vs = VsRef {
            name: "web".into(),
            namespace: "prod".into(),
            routes: vec![],
        };
        let http = vec![json!({"route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0},
            {"destination": {"host": "web", "subset": "legacy"}, "weight": 0}]})];
        let out = vs_http(&http, &vs, &r, &with_experiment(20)).unwrap();
        assert_eq!(
            out[0]["route"],
            json!([
                {"destination": {"host": "web", "subset": "stable"}, "weight": 65},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 20},
                {"destination": {"host": "web", "subset": "legacy"}, "weight": 0},
                {"destination": {"host": "web-e1"}, "weight": 10},
                {"destination": {"host": "web-e2"}, "weight": 5}])
        );
        r.experiment_services = vec!["web-e1".into(), "web-e2".into()];
        let over = vs_http(&out, &vs, &r, &route(20)).unwrap();
        assert_eq!(over[0]["route"].as_array().unwrap().len(), 3);
        assert_eq!(over[0]["route"][0]["weight"], 80);
    }
}
