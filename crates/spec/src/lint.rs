//! Validation: every check `serin lint` runs, as located diagnostics.
//!
//! Checks mirror what Argo Rollouts' own validation (and the Kubernetes API
//! server) would reject, plus cross-references that only show up when the
//! whole set is read together: analysis templates, Services, VirtualServices
//! and their routes must exist.

use std::collections::{BTreeSet, HashMap};

use crate::diag::{Diagnostic, Severity};
use crate::load::{Document, ManifestSet, Resource};
use crate::model::*;
use crate::yaml::{join_index, join_key};

/// Run every check over the set. The result starts with the problems found
/// while loading (syntax, types, unknown fields), then the validation
/// findings, sorted by file, line and column.
pub fn lint(set: &ManifestSet) -> Vec<Diagnostic> {
    let mut cx = Cx::new(set);
    cx.out.extend(set.diagnostics.iter().cloned());
    cx.duplicates();
    for doc in &set.documents {
        cx.metadata(doc);
        match &doc.resource {
            Resource::Rollout(r) => cx.rollout(doc, r, false),
            Resource::Deployment {
                deployment,
                rollout,
            } => {
                match rollout {
                    Some(r) => cx.rollout(doc, r, true),
                    None => cx.push(
                        doc,
                        Severity::Warning,
                        "unsupported",
                        "spec.strategy.type",
                        format!(
                            "unsupported: Deployment strategy `{}`; Serin runs Deployments as rolling updates",
                            deployment.spec.strategy.type_.as_deref().unwrap_or("")
                        ),
                        "use `type: RollingUpdate`, or a Rollout for blue-green / canary",
                    ),
                }
            }
            Resource::AnalysisTemplate(t) => cx.analysis_template(doc, t),
            Resource::VirtualService(vs) => cx.virtual_service(doc, vs),
            Resource::PodDisruptionBudget(p) => cx.pdb(doc, p),
            Resource::FlagRollout(f) => cx.flag_rollout(doc, f),
            Resource::AnalysisRun(run) => cx.analysis_run(doc, run),
            Resource::Service(_) | Resource::Invalid => {}
            Resource::Experiment(x) => cx.experiment(doc, x),
            Resource::Unmanaged => cx.push(
                doc,
                Severity::Info,
                "unmanaged-kind",
                "kind",
                format!(
                    "{} {} ({}) is not managed by Serin; it is loaded but not acted on",
                    doc.kind,
                    display_name(doc),
                    doc.api_version
                ),
                "apply it with kubectl (or your usual tooling) if you need it",
            ),
        }
    }
    let mut out = cx.out;
    // Stable order: by file load order, then position.
    let order: HashMap<&str, usize> = set
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_str(), i))
        .collect();
    out.sort_by(|a, b| {
        let fa = order.get(a.file.as_str()).copied().unwrap_or(usize::MAX);
        let fb = order.get(b.file.as_str()).copied().unwrap_or(usize::MAX);
        (fa, &a.file, a.line, a.column, &a.code).cmp(&(fb, &b.file, b.line, b.column, &b.code))
    });
    out.dedup();
    out
}

struct Cx<'s> {
    set: &'s ManifestSet,
    out: Vec<Diagnostic>,
}

/// Does an object in namespace `a` see one in namespace `b`? An unset
/// namespace is whatever namespace the set is applied to.
fn same_ns(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

impl<'s> Cx<'s> {
    fn new(set: &'s ManifestSet) -> Self {
        Cx {
            set,
            out: Vec::new(),
        }
    }

    fn push(
        &mut self,
        doc: &Document,
        sev: Severity,
        code: &str,
        path: &str,
        message: String,
        hint: &str,
    ) {
        // Fields dropped while loading already have their error; anything
        // found under them now would only restate it.
        if doc.repaired.iter().any(|r| crate::load::is_under(path, r)) {
            return;
        }
        let loc = doc.locs.value(path);
        let d = self
            .set
            .diag(sev, code, doc.file, loc, path, message, hint.to_string());
        self.out.push(d);
    }

    fn err(&mut self, doc: &Document, code: &str, path: &str, message: String, hint: &str) {
        self.push(doc, Severity::Error, code, path, message, hint);
    }

    /// An experiment's template or analysis at `path` needs a `name` that no
    /// earlier one of its kind in `seen` has.
    fn unique_name<'n>(
        &mut self,
        doc: &Document,
        path: &str,
        name: &'n str,
        seen: &mut BTreeSet<&'n str>,
        kind: &str,
        example: &str,
    ) {
        let at = join_key(path, "name");
        if name.is_empty() {
            self.err(
                doc,
                "missing-field",
                &at,
                format!("experiment {kind} needs a `name`"),
                &format!("e.g. `name: {example}`"),
            );
        } else if !seen.insert(name) {
            self.err(
                doc,
                "duplicate-name",
                &at,
                format!("experiment {kind} `{name}` is defined twice"),
                &format!("give each {kind} its own name"),
            );
        }
    }

    fn warn_unsupported(&mut self, doc: &Document, path: &str, what: &str) {
        self.push(
            doc,
            Severity::Warning,
            "unsupported",
            path,
            format!("unsupported: {what}"),
            "Serin parses this field but does not act on it yet",
        );
    }

    /// Something `serin plan` / `serin up` refuse to run: an error, so a
    /// manifest that lints clean is one `up` accepts.
    fn refuse(&mut self, doc: &Document, path: &str, what: &str, hint: &str) {
        self.push(
            doc,
            Severity::Error,
            "not-supported",
            path,
            format!("serin up will not run this: {what}"),
            hint,
        );
    }

    /// Whether a Rollout, Deployment-made Rollout or FlagRollout of the set
    /// references the (Cluster)AnalysisTemplate `t` in any of its analyses.
    fn template_in_use(&self, t: &Document) -> bool {
        let cluster = t.kind == "ClusterAnalysisTemplate";
        let Some(name) = t.name.as_deref() else {
            return false;
        };
        let refers = |from: &Document, a: &RolloutAnalysis| {
            a.templates.iter().any(|r| {
                r.template_name == name
                    && r.cluster_scope == cluster
                    && (cluster || same_ns(&from.namespace, &t.namespace))
            })
        };
        self.set.documents.iter().any(|d| {
            let rollout = match &d.resource {
                Resource::Rollout(r) => Some(&**r),
                Resource::Deployment {
                    rollout: Some(r), ..
                } => Some(&**r),
                Resource::FlagRollout(f) => {
                    return f.spec.analysis.as_ref().is_some_and(|a| refers(d, a));
                }
                Resource::Experiment(x) => {
                    return experiment_analyses(&x.spec.analyses)
                        .iter()
                        .any(|a| refers(d, a));
                }
                _ => None,
            };
            let Some(r) = rollout else {
                return false;
            };
            let s = &r.spec.strategy;
            let canary = s.canary.iter().flat_map(|c| {
                c.steps
                    .iter()
                    .filter_map(|st| st.analysis.clone())
                    .chain(
                        c.steps
                            .iter()
                            .filter_map(|st| st.experiment.as_ref())
                            .flat_map(RolloutExperimentStep::analyses),
                    )
                    .chain(c.analysis.as_ref().map(RolloutAnalysisBackground::analysis))
            });
            let bg = s.blue_green.iter().flat_map(|b| {
                b.pre_promotion_analysis
                    .iter()
                    .chain(b.post_promotion_analysis.iter())
                    .cloned()
            });
            canary.chain(bg).any(|a| refers(d, &a))
        })
    }

    /// An experiment's `analyses` (a step's or an Experiment's): named
    /// once, templates that exist and get their args, and
    /// `{{templates.X.podTemplateHash}}` naming one of its `templates`.
    fn experiment_analysis_list(
        &mut self,
        doc: &Document,
        xp: &str,
        analyses: &[RolloutExperimentAnalysis],
        templates: &[&str],
    ) {
        let mut anames = BTreeSet::new();
        for (i, (a, ra)) in analyses
            .iter()
            .zip(experiment_analyses(analyses))
            .enumerate()
        {
            let ap = join_index(&join_key(xp, "analyses"), i);
            self.unique_name(doc, &ap, &a.name, &mut anames, "analysis", "compare");
            if a.template_name.is_empty() {
                self.err(
                    doc,
                    "missing-field",
                    &join_key(&ap, "templateName"),
                    "templateName is empty".into(),
                    "name an AnalysisTemplate",
                );
                continue;
            }
            // Same checks as any analysis's args and template.
            self.analysis_args(doc, &ap, &ra.args);
            if let Some(t) = ra.templates.first() {
                self.template_ref(doc, &join_key(&ap, "templateName"), t, &ra.args);
            }
            for (j, arg) in a.args.iter().enumerate() {
                if let Some(v) = &arg.value {
                    for t in template_refs(v) {
                        if !templates.contains(&t) {
                            self.err(
                                doc,
                                "invalid-value",
                                &join_key(&join_index(&join_key(&ap, "args"), j), "value"),
                                format!("`{{{{templates.{t}.podTemplateHash}}}}` names no template of this experiment"),
                                "use the name of one of the experiment's templates",
                            );
                        }
                    }
                }
            }
        }
    }

    /// Argo's standalone `Experiment`: what Argo's validation checks, and
    /// what `serin up` runs.
    fn experiment(&mut self, doc: &Document, x: &Experiment) {
        let s = &x.spec;
        if s.templates.is_empty() {
            self.err(
                doc,
                "missing-field",
                "spec.templates",
                "experiment runs no templates".into(),
                "add `templates:` with a name, selector and pod template each",
            );
        }
        if let Some(d) = &s.duration
            && let Err(e) = d.to_duration()
        {
            self.err(
                doc,
                "invalid-duration",
                "spec.duration",
                e.to_string(),
                "use seconds (300) or a duration such as \"300s\", \"5m\", \"1h\"",
            );
        }
        if s.progress_deadline_seconds.is_some_and(|n| n <= 0) {
            self.err(
                doc,
                "invalid-value",
                "spec.progressDeadlineSeconds",
                "progressDeadlineSeconds must be > 0".into(),
                "seconds a template's pods may make no progress (default 600)",
            );
        }
        if s.scale_down_delay_seconds.is_some_and(|n| n < 0) {
            self.err(
                doc,
                "invalid-value",
                "spec.scaleDownDelaySeconds",
                "scaleDownDelaySeconds must be >= 0".into(),
                "seconds the pods stay after the experiment ends (default 30)",
            );
        }
        let mut names = BTreeSet::new();
        for (i, t) in s.templates.iter().enumerate() {
            let tp = join_index("spec.templates", i);
            self.unique_name(doc, &tp, &t.name, &mut names, "template", "baseline");
            for (field, v) in [
                ("replicas", t.replicas),
                ("minReadySeconds", t.min_ready_seconds),
            ] {
                if v.is_some_and(|n| n < 0) {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key(&tp, field),
                        format!("{field} must be >= 0"),
                        "use a non-negative number",
                    );
                }
            }
            match (&t.selector, &t.template) {
                (None, _) => self.err(
                    doc,
                    "missing-field",
                    &join_key(&tp, "selector"),
                    "missing required field `selector`".into(),
                    "add `selector: {matchLabels: ...}` matching the template's labels",
                ),
                (Some(sel), _) if sel.is_empty() => self.err(
                    doc,
                    "invalid-value",
                    &join_key(&tp, "selector"),
                    "empty selector is invalid: it would select every pod".into(),
                    "add `matchLabels` matching the template's labels",
                ),
                (Some(sel), Some(pt)) if !sel.matches(&pt.metadata.labels) => self.err(
                    doc,
                    "selector-mismatch",
                    &join_key(&tp, "selector"),
                    "`selector` does not match template `labels`".into(),
                    "make template.metadata.labels include every selector.matchLabels entry",
                ),
                _ => {}
            }
            match &t.template {
                None => self.err(
                    doc,
                    "missing-field",
                    &join_key(&tp, "template"),
                    "missing required field `template`".into(),
                    "add the pod template (metadata.labels and spec.containers)",
                ),
                Some(pt) => {
                    self.pod_spec(doc, &pt.spec, &join_key(&join_key(&tp, "template"), "spec"))
                }
            }
            if t.service.is_some() {
                self.warn_unsupported(
                    doc,
                    &join_key(&tp, "service"),
                    "a Service for experiment pods",
                );
            }
        }
        let names: Vec<&str> = s.templates.iter().map(|t| t.name.as_str()).collect();
        self.experiment_analysis_list(doc, "spec", &s.analyses, &names);
        for (i, a) in s.analyses.iter().enumerate() {
            for (j, arg) in a.args.iter().enumerate() {
                if arg
                    .value_from
                    .as_ref()
                    .is_some_and(|v| v.pod_template_hash_value.is_some())
                {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key(
                            &join_key(
                                &join_index(&join_key(&join_index("spec.analyses", i), "args"), j),
                                "valueFrom",
                            ),
                            "podTemplateHashValue",
                        ),
                        "an Experiment has no stable or latest revision".into(),
                        "use `value: \"{{templates.<name>.podTemplateHash}}\"`",
                    );
                }
            }
        }
        if s.duration.is_none()
            && !s.templates.is_empty()
            && !s.analyses.iter().any(|a| a.required_for_completion)
        {
            self.push(
                doc,
                Severity::Warning,
                "runs-indefinitely",
                "spec",
                "experiment has no duration and no analysis with requiredForCompletion: as in Argo, it runs until an analysis fails or it is terminated (`serin abort experiment NAME`)".into(),
                "add `duration:` or `requiredForCompletion: true` on an analysis",
            );
        }
        if s.analysis_run_metadata.is_some() {
            self.warn_unsupported(doc, "spec.analysisRunMetadata", "analysisRunMetadata");
        }
    }

    /// An `experiment` step: Argo's rules (templates named once, `specRef`
    /// stable or canary, `weight` only with a router, analyses like any
    /// other) and what `serin up` runs.
    fn experiment_step(
        &mut self,
        doc: &Document,
        xp: &str,
        x: &RolloutExperimentStep,
        routed: bool,
        set_weight: i64,
        argo_weighted: bool,
    ) {
        if x.templates.is_empty() {
            self.err(
                doc,
                "missing-field",
                &join_key(xp, "templates"),
                "experiment runs no templates".into(),
                "add `templates: [{name: baseline, specRef: stable}, {name: canary, specRef: canary}]`",
            );
        }
        if let Some(d) = &x.duration
            && let Err(e) = d.to_duration()
        {
            self.err(
                doc,
                "invalid-duration",
                &join_key(xp, "duration"),
                e.to_string(),
                "use seconds (300) or a duration such as \"300s\", \"5m\", \"1h\"",
            );
        }
        let mut names = BTreeSet::new();
        // Argo takes experiment weights from the stable's share:
        // stable = 100 − setWeight − Σ weights must not go negative.
        let mut total = set_weight.clamp(0, 100);
        let mut over = false;
        let mut warned_argo = false;
        for (i, t) in x.templates.iter().enumerate() {
            let tp = join_index(&join_key(xp, "templates"), i);
            self.unique_name(doc, &tp, &t.name, &mut names, "template", "baseline");
            if t.spec_ref != "stable" && t.spec_ref != "canary" {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&tp, "specRef"),
                    format!("specRef must be `stable` or `canary`, not `{}`", t.spec_ref),
                    "`stable` runs the stable revision's pods (a baseline), `canary` the new revision's",
                );
            }
            if t.replicas.is_some_and(|n| n < 0) {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&tp, "replicas"),
                    "replicas must be >= 0".into(),
                    "use a non-negative count (default 1)",
                );
            }
            if let Some(w) = t.weight {
                if !routed {
                    self.err(
                        doc,
                        "invalid-step",
                        &join_key(&tp, "weight"),
                        "experiment template weight requires trafficRouting".into(),
                        "add trafficRouting, or remove weight: without it the experiment's pods get no traffic",
                    );
                } else if !(0..=100).contains(&w) {
                    self.err(
                        doc,
                        "weight-range",
                        &join_key(&tp, "weight"),
                        format!("weight {w} is outside 0-100"),
                        "use a percentage between 0 and 100",
                    );
                } else {
                    if !argo_weighted && !warned_argo {
                        warned_argo = true;
                        self.push(
                            doc,
                            Severity::Warning,
                            "not-portable",
                            &join_key(&tp, "weight"),
                            "Argo Rollouts takes experiment template weights only with the SMI, ALB and Istio routers; `serin up` routes them through its proxy with any router, but Argo would reject this manifest".into(),
                            "use trafficRouting.istio, smi or alb to keep the manifest valid for Argo",
                        );
                    }
                    total += i64::from(w);
                    if total > 100 && !over {
                        over = true;
                        self.err(
                            doc,
                            "weight-range",
                            &join_key(&tp, "weight"),
                            format!(
                                "the experiment's weights and the canary's setWeight {set_weight} add up to {total} %, over 100 (the stable's share would be negative)"
                            ),
                            "lower the template weights or the setWeight before this step",
                        );
                    }
                }
            }
            if t.service.is_some() {
                self.warn_unsupported(
                    doc,
                    &join_key(&tp, "service"),
                    "a Service for experiment pods",
                );
            }
        }
        let names: Vec<&str> = x.templates.iter().map(|t| t.name.as_str()).collect();
        self.experiment_analysis_list(doc, xp, &x.analyses, &names);
        if x.duration.is_none()
            && !x.templates.is_empty()
            && !x.analyses.iter().any(|a| a.required_for_completion)
        {
            self.push(
                doc,
                Severity::Warning,
                "runs-indefinitely",
                xp,
                "experiment has no duration and no analysis with requiredForCompletion: as in Argo, it runs until it fails or the step is promoted".into(),
                "add `duration:` or `requiredForCompletion: true` on an analysis",
            );
        }
        if !x.dry_run.is_empty() {
            self.warn_unsupported(doc, &join_key(xp, "dryRun"), "dryRun");
        }
        if x.analysis_run_metadata.is_some() {
            self.warn_unsupported(
                doc,
                &join_key(xp, "analysisRunMetadata"),
                "analysisRunMetadata",
            );
        }
    }

    /// A `setMirrorRoute` step: Argo's rules (a router, a managed route
    /// name, a percentage) and what Serin's proxy can copy.
    fn mirror_route(
        &mut self,
        doc: &Document,
        mp: &str,
        m: &SetMirrorRoute,
        routed: bool,
        managed: &BTreeSet<&str>,
    ) {
        if !routed {
            self.err(
                doc,
                "invalid-step",
                mp,
                "setMirrorRoute requires trafficRouting".into(),
                "add trafficRouting and managedRoutes",
            );
        }
        match &m.name {
            None => self.err(
                doc,
                "missing-field",
                &join_key(mp, "name"),
                "setMirrorRoute requires `name`".into(),
                "name a route listed in trafficRouting.managedRoutes",
            ),
            Some(n) if routed && !managed.contains(n.as_str()) => self.err(
                doc,
                "missing-route",
                &join_key(mp, "name"),
                format!("mirror route `{n}` is not listed in trafficRouting.managedRoutes"),
                &format!(
                    "add `- name: {n}` under spec.strategy.canary.trafficRouting.managedRoutes"
                ),
            ),
            _ => {}
        }
        if let Some(p) = m.percentage
            && !(0..=100).contains(&p)
        {
            self.err(
                doc,
                "weight-range",
                &join_key(mp, "percentage"),
                format!("setMirrorRoute.percentage {p} is outside 0-100"),
                "use a percentage between 0 and 100 (default 100)",
            );
        }
        for (j, rm) in m.r#match.iter().enumerate() {
            let at = join_index(&join_key(mp, "match"), j);
            let mut parts: Vec<(String, &StringMatch)> = Vec::new();
            if let Some(v) = &rm.method {
                parts.push((join_key(&at, "method"), v));
            }
            if let Some(v) = &rm.path {
                parts.push((join_key(&at, "path"), v));
            }
            for (h, v) in &rm.headers {
                parts.push((join_key(&join_key(&at, "headers"), h), v));
            }
            for (path, v) in parts {
                let n = [v.exact.is_some(), v.prefix.is_some(), v.regex.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if n != 1 {
                    self.err(
                        doc,
                        "invalid-value",
                        &path,
                        "a match must set exactly one of exact, prefix or regex".into(),
                        "keep one",
                    );
                }
            }
        }
    }

    fn exists(&self, kind: &str, name: &str, from: &Document) -> bool {
        self.set.documents.iter().any(|d| {
            d.kind == kind
                && d.name.as_deref() == Some(name)
                && (kind == "ClusterAnalysisTemplate" || same_ns(&d.namespace, &from.namespace))
        })
    }

    fn find<'a>(&'a self, kind: &str, name: &str, from: &Document) -> Option<&'s Document> {
        self.set.documents.iter().find(|d| {
            d.kind == kind
                && d.name.as_deref() == Some(name)
                && (kind == "ClusterAnalysisTemplate" || same_ns(&d.namespace, &from.namespace))
        })
    }

    fn duplicates(&mut self) {
        let mut seen: HashMap<(String, Option<String>, String), &Document> = HashMap::new();
        for doc in &self.set.documents {
            let Some(name) = &doc.name else { continue };
            if doc.kind.is_empty() {
                continue;
            }
            let key = (doc.kind.clone(), doc.namespace.clone(), name.clone());
            if let Some(first) = seen.get(&key) {
                let f = &self.set.files[first.file];
                let loc = first.locs.value("metadata.name");
                let msg = format!(
                    "duplicate {} `{}`: also defined at {}:{}:{}",
                    doc.kind, name, f.path, loc.line, loc.column
                );
                self.err(
                    doc,
                    "duplicate-resource",
                    "metadata.name",
                    msg,
                    "rename one of them or remove the duplicate",
                );
            } else {
                seen.insert(key, doc);
            }
        }
    }

    fn metadata(&mut self, doc: &Document) {
        if matches!(doc.resource, Resource::Unmanaged) || doc.kind.is_empty() {
            return;
        }
        let has_generate = doc
            .value
            .get("metadata")
            .and_then(|m| m.get("generateName"))
            .is_some();
        match &doc.name {
            None if !has_generate => self.err(
                doc,
                "missing-field",
                "metadata.name",
                format!("{} has no `metadata.name`", doc.kind),
                "add `metadata: {name: ...}`",
            ),
            Some(n) if !is_dns_subdomain(n) => self.err(
                doc,
                "invalid-name",
                "metadata.name",
                format!("`{n}` is not a valid Kubernetes name"),
                "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (max 253)",
            ),
            _ => {}
        }
    }

    // -----------------------------------------------------------------------
    // Rollouts
    // -----------------------------------------------------------------------

    fn rollout(&mut self, doc: &Document, r: &Rollout, from_deployment: bool) {
        let s = &r.spec;
        if s.replicas < 0 {
            self.err(
                doc,
                "invalid-value",
                "spec.replicas",
                format!("replicas must be >= 0, got {}", s.replicas),
                "set a non-negative number of replicas",
            );
        }
        if let Some(t) = &s.restart_at
            && let Err(e) = serin_clock::parse_rfc3339(t)
        {
            self.err(
                doc,
                "invalid-value",
                "spec.restartAt",
                e.to_string(),
                "write a UTC time like \"2020-03-30T21:19:35Z\" (or use `serin restart`)",
            );
        }
        if let Some(w) = &s.workload_ref {
            self.workload_ref(doc, r, w);
        }
        // Selector and template.
        if s.workload_ref.is_none() {
            match &s.selector {
                None => self.err(
                    doc,
                    "missing-field",
                    "spec.selector",
                    "missing required field `spec.selector`".into(),
                    "add `selector: {matchLabels: ...}` matching the template's labels",
                ),
                Some(sel) if sel.is_empty() => self.err(
                    doc,
                    "invalid-value",
                    "spec.selector",
                    "empty selector is invalid: it would select every pod".into(),
                    "add `matchLabels` matching the template's labels",
                ),
                Some(sel) => {
                    if let Some(t) = &s.template
                        && !sel.matches(&t.metadata.labels)
                    {
                        self.err(
                            doc,
                            "selector-mismatch",
                            "spec.selector",
                            "`selector` does not match template `labels`".into(),
                            "make spec.template.metadata.labels include every spec.selector.matchLabels entry",
                        );
                    }
                }
            }
            match &s.template {
                None => self.err(
                    doc,
                    "missing-field",
                    "spec.template",
                    "missing required field `spec.template`".into(),
                    "add the pod template (metadata.labels and spec.containers)",
                ),
                Some(t) => self.pod_spec(doc, &t.spec, "spec.template.spec"),
            }
        }
        if from_deployment {
            if let Some(c) = &s.strategy.canary
                && c.max_surge.is_zero()
                && c.max_unavailable.is_zero()
            {
                self.err(
                    doc,
                    "surge-unavailable-zero",
                    "spec.strategy.rollingUpdate",
                    "maxSurge and maxUnavailable are both 0: the update can never progress".into(),
                    "set maxSurge or maxUnavailable above 0",
                );
            }
            return;
        }
        if let Some(rw) = &s.rollback_window
            && rw.revisions.is_some_and(|n| n < 0)
        {
            self.err(
                doc,
                "invalid-value",
                "spec.rollbackWindow.revisions",
                "rollbackWindow.revisions must be >= 0".into(),
                "use a non-negative count",
            );
        }
        match (&s.strategy.blue_green, &s.strategy.canary) {
            (None, None) => self.err(
                doc,
                "missing-strategy",
                "spec.strategy",
                "the Rollout has no strategy: set `blueGreen` or `canary`".into(),
                "add `strategy: {canary: {}}` for a rolling update, or a blueGreen / canary block",
            ),
            (Some(_), Some(_)) => self.err(
                doc,
                "conflicting-strategy",
                "spec.strategy",
                "both `blueGreen` and `canary` are set; a Rollout has exactly one strategy".into(),
                "remove one of them",
            ),
            _ => {}
        }
        if let Some(bg) = &s.strategy.blue_green {
            self.blue_green(doc, r, bg);
        }
        if let Some(c) = &s.strategy.canary {
            self.canary(doc, r, c);
        }
    }

    /// Argo's migration path: the pod template comes from a Deployment.
    fn workload_ref(&mut self, doc: &Document, r: &Rollout, w: &ObjectRef) {
        let written_template = doc
            .value
            .get("spec")
            .and_then(|s| s.get("template"))
            .is_some();
        if written_template {
            self.err(
                doc,
                "conflicting-template",
                "spec.template",
                "a Rollout with `workloadRef` must not also have a `template`".into(),
                "keep the pod template in the Deployment, or drop workloadRef",
            );
        }
        if w.kind.as_deref() != Some("Deployment") {
            self.refuse(
                doc,
                "spec.workloadRef.kind",
                &format!(
                    "workloadRef to kind `{}` (Serin takes pod templates from Deployments)",
                    w.kind.as_deref().unwrap_or("")
                ),
                "reference an `apps/v1` Deployment",
            );
            return;
        }
        if let Some(sd) = &w.scale_down
            && !matches!(sd.as_str(), "never" | "onsuccess" | "progressively")
        {
            self.err(
                doc,
                "invalid-value",
                "spec.workloadRef.scaleDown",
                format!("scaleDown {sd:?} must be never, onsuccess or progressively"),
                "use one of never, onsuccess, progressively",
            );
        }
        match w.name.as_deref() {
            None | Some("") => self.err(
                doc,
                "missing-field",
                "spec.workloadRef.name",
                "workloadRef names no Deployment".into(),
                "add `name:` of the Deployment whose pod template the Rollout runs",
            ),
            Some(name) if self.set.workload_ref_target(doc, r).is_none() => self.refuse(
                doc,
                "spec.workloadRef.name",
                &format!("Deployment `{name}` is not in the linted files, so there is no pod template to run"),
                &format!("lint and run the `kind: Deployment` named `{name}` together with this Rollout"),
            ),
            Some(_) => {}
        }
    }

    fn pod_spec(&mut self, doc: &Document, p: &PodSpec, path: &str) {
        if p.containers.is_empty() {
            self.err(
                doc,
                "missing-field",
                &join_key(path, "containers"),
                "the pod template has no containers".into(),
                "add at least one container with a name and an image",
            );
        }
        if p.termination_grace_period_seconds < 0 {
            self.err(
                doc,
                "invalid-value",
                &join_key(path, "terminationGracePeriodSeconds"),
                "terminationGracePeriodSeconds must be >= 0".into(),
                "use a non-negative number of seconds",
            );
        }
        let mut names = BTreeSet::new();
        for (list, items) in [
            ("containers", &p.containers),
            ("initContainers", &p.init_containers),
        ] {
            for (i, c) in items.iter().enumerate() {
                let cp = join_index(&join_key(path, list), i);
                self.container(doc, c, &cp);
                if !c.name.is_empty() && !names.insert(c.name.clone()) {
                    self.err(
                        doc,
                        "duplicate-name",
                        &join_key(&cp, "name"),
                        format!("duplicate container name `{}`", c.name),
                        "container names must be unique within a pod",
                    );
                }
            }
        }
    }

    fn container(&mut self, doc: &Document, c: &Container, path: &str) {
        if c.name.is_empty() {
            self.err(
                doc,
                "missing-field",
                &join_key(path, "name"),
                "container has no `name`".into(),
                "add `name:`",
            );
        }
        match c.image.as_deref() {
            None | Some("") => self.err(
                doc,
                "missing-field",
                &join_key(path, "image"),
                format!(
                    "container `{}` has no `image`",
                    if c.name.is_empty() { "?" } else { &c.name }
                ),
                "add `image: registry/name:tag`",
            ),
            _ => {}
        }
        for (i, p) in c.ports.iter().enumerate() {
            if !(1..=65535).contains(&p.container_port) {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&join_index(&join_key(path, "ports"), i), "containerPort"),
                    format!("containerPort {} is out of range 1-65535", p.container_port),
                    "use a port between 1 and 65535",
                );
            }
        }
        for (field, probe) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if let Some(p) = probe {
                self.probe(doc, c, p, &join_key(path, field), field);
            }
        }
        if let Some(res) = &c.resources {
            let rp = join_key(path, "resources");
            for (section, map) in [("requests", &res.requests), ("limits", &res.limits)] {
                for (k, q) in map {
                    let qp = join_key(&join_key(&rp, section), k);
                    let parsed = if k == "cpu" {
                        q.to_millis()
                    } else {
                        q.to_bytes()
                    };
                    if let Err(e) = parsed {
                        self.err(
                            doc,
                            "invalid-quantity",
                            &qp,
                            e.to_string(),
                            "write e.g. cpu: \"500m\", memory: \"512Mi\"",
                        );
                    }
                }
            }
            for (k, req) in &res.requests {
                if let Some(lim) = res.limits.get(k) {
                    let (a, b) = if k == "cpu" {
                        (req.to_millis(), lim.to_millis())
                    } else {
                        (req.to_bytes(), lim.to_bytes())
                    };
                    if let (Ok(a), Ok(b)) = (a, b)
                        && a > b
                    {
                        self.err(
                            doc,
                            "invalid-value",
                            &join_key(&join_key(&rp, "requests"), k),
                            format!("{k} request {} is greater than its limit {}", req.0, lim.0),
                            "a request must be less than or equal to the limit",
                        );
                    }
                }
            }
        }
        if let Some(lc) = &c.lifecycle {
            for (field, h) in [("preStop", &lc.pre_stop), ("postStart", &lc.post_start)] {
                if let Some(h) = h {
                    let n = [
                        h.exec.is_some(),
                        h.http_get.is_some(),
                        h.tcp_socket.is_some(),
                        h.sleep.is_some(),
                    ]
                    .iter()
                    .filter(|b| **b)
                    .count();
                    if n != 1 {
                        self.err(
                            doc,
                            "invalid-value",
                            &join_key(&join_key(path, "lifecycle"), field),
                            format!("{field} must set exactly one of exec, httpGet, tcpSocket or sleep (found {n})"),
                            "keep one handler",
                        );
                    }
                }
            }
        }
    }

    fn probe(&mut self, doc: &Document, c: &Container, p: &Probe, path: &str, field: &str) {
        let n = [
            p.http_get.is_some(),
            p.tcp_socket.is_some(),
            p.exec.is_some(),
            p.grpc.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            self.err(
                doc,
                "invalid-value",
                path,
                format!(
                    "{field} must set exactly one of httpGet, tcpSocket, exec or grpc (found {n})"
                ),
                "keep one check",
            );
        }
        for (name, v, min) in [
            ("initialDelaySeconds", p.initial_delay_seconds, 0),
            ("periodSeconds", p.period_seconds, 1),
            ("timeoutSeconds", p.timeout_seconds, 1),
            ("successThreshold", p.success_threshold, 1),
            ("failureThreshold", p.failure_threshold, 1),
        ] {
            if v < min {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(path, name),
                    format!("{name} must be >= {min}, got {v}"),
                    "use a value within range",
                );
            }
        }
        if field != "readinessProbe" && p.success_threshold != 1 {
            self.err(
                doc,
                "invalid-value",
                &join_key(path, "successThreshold"),
                format!(
                    "{field}.successThreshold must be 1, got {}",
                    p.success_threshold
                ),
                "only readiness probes may require several successes",
            );
        }
        let port = p
            .http_get
            .as_ref()
            .map(|h| (&h.port, "httpGet"))
            .or(p.tcp_socket.as_ref().map(|t| (&t.port, "tcpSocket")));
        if let Some((port, action)) = port {
            let pp = join_key(&join_key(path, action), "port");
            match port {
                PortRef::Number(n) if !(1..=65535).contains(n) => self.err(
                    doc,
                    "invalid-value",
                    &pp,
                    format!("probe port {n} is out of range 1-65535"),
                    "use a port between 1 and 65535",
                ),
                PortRef::Name(name)
                    if !c.ports.iter().any(|cp| cp.name.as_deref() == Some(name)) =>
                {
                    self.err(
                        doc,
                        "missing-port",
                        &pp,
                        format!(
                            "probe port `{name}` is not a named port of container `{}`",
                            c.name
                        ),
                        "name the port under `ports:` or use its number",
                    )
                }
                _ => {}
            }
        }
    }

    fn service_ref(&mut self, doc: &Document, path: &str, name: &str, role: &str) {
        if name.is_empty() {
            self.err(
                doc,
                "missing-field",
                path,
                format!("{role} service name is empty"),
                "name a Service defined in the set",
            );
        } else if !self.exists("Service", name, doc) {
            self.err(
                doc,
                "missing-service",
                path,
                format!("{role} Service `{name}` is not defined in the linted files"),
                &format!("add a `kind: Service` named `{name}` (selecting the Rollout's pods), or lint the files that define it together with this one"),
            );
        }
    }

    fn blue_green(&mut self, doc: &Document, r: &Rollout, bg: &BlueGreenStrategy) {
        let base = "spec.strategy.blueGreen";
        if bg.active_service.is_empty() {
            self.err(
                doc,
                "missing-field",
                &join_key(base, "activeService"),
                "blueGreen requires `activeService`".into(),
                "name the Service that receives production traffic",
            );
        } else {
            self.service_ref(
                doc,
                &join_key(base, "activeService"),
                &bg.active_service,
                "active",
            );
        }
        if let Some(p) = &bg.preview_service {
            self.service_ref(doc, &join_key(base, "previewService"), p, "preview");
            if *p == bg.active_service {
                self.err(
                    doc,
                    "same-service",
                    &join_key(base, "previewService"),
                    "previewService must differ from activeService".into(),
                    "use two Services",
                );
            }
        }
        if let Some(n) = bg.preview_replica_count
            && (n < 0 || n > r.spec.replicas)
        {
            self.err(
                doc,
                "invalid-value",
                &join_key(base, "previewReplicaCount"),
                format!(
                    "previewReplicaCount {n} must be between 0 and replicas ({})",
                    r.spec.replicas
                ),
                "lower previewReplicaCount",
            );
        }
        for (field, v) in [
            ("scaleDownDelaySeconds", bg.scale_down_delay_seconds),
            (
                "abortScaleDownDelaySeconds",
                bg.abort_scale_down_delay_seconds,
            ),
            ("autoPromotionSeconds", bg.auto_promotion_seconds),
        ] {
            if v < 0 {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(base, field),
                    format!("{field} must be >= 0"),
                    "use a non-negative number of seconds",
                );
            }
        }
        for (field, a) in [
            ("prePromotionAnalysis", &bg.pre_promotion_analysis),
            ("postPromotionAnalysis", &bg.post_promotion_analysis),
        ] {
            if let Some(a) = a {
                let ap = join_key(base, field);
                self.analysis_ref(doc, &ap, &a.templates, &a.args);
                if a.analysis_run_metadata.is_some() {
                    self.warn_unsupported(
                        doc,
                        &join_key(&ap, "analysisRunMetadata"),
                        "analysisRunMetadata",
                    );
                }
            }
        }
        if bg.anti_affinity.is_some() {
            self.warn_unsupported(doc, &join_key(base, "antiAffinity"), "antiAffinity");
        }
    }

    fn canary(&mut self, doc: &Document, r: &Rollout, c: &CanaryStrategy) {
        let base = "spec.strategy.canary";
        if c.max_surge.is_zero() && c.max_unavailable.is_zero() {
            self.err(
                doc,
                "surge-unavailable-zero",
                base,
                "maxSurge and maxUnavailable are both 0: the update can never progress".into(),
                "set maxSurge or maxUnavailable above 0",
            );
        }
        for (field, v) in [
            ("maxSurge", c.max_surge),
            ("maxUnavailable", c.max_unavailable),
        ] {
            let bad = match v {
                IntOrPercent::Int(n) => n < 0,
                IntOrPercent::Percent(p) => !(0..=100).contains(&p),
            };
            if bad {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(base, field),
                    format!("{field} {v} is out of range"),
                    "use 0..replicas or 0%..100%",
                );
            }
        }
        if let Some(s) = &c.canary_service {
            self.service_ref(doc, &join_key(base, "canaryService"), s, "canary");
        }
        if let Some(s) = &c.stable_service {
            self.service_ref(doc, &join_key(base, "stableService"), s, "stable");
            if c.canary_service.as_ref() == Some(s) {
                self.err(
                    doc,
                    "same-service",
                    &join_key(base, "stableService"),
                    "stableService must differ from canaryService".into(),
                    "use two Services",
                );
            }
        }
        if let Some(pp) = &c.ping_pong {
            let pp_path = join_key(base, "pingPong");
            // Argo: pingPong works with a traffic router, and instead of
            // canaryService / stableService.
            if c.traffic_routing.is_none() {
                self.refuse(
                    doc,
                    &pp_path,
                    "pingPong without trafficRouting (the ping/pong Services only make sense behind a router)",
                    "add trafficRouting (istio or alb, as Argo requires), or use a basic canary",
                );
            }
            if c.canary_service.is_some() || c.stable_service.is_some() {
                self.err(
                    doc,
                    "conflicting-services",
                    &pp_path,
                    "pingPong replaces canaryService and stableService; set one or the other"
                        .into(),
                    "remove canaryService and stableService",
                );
            }
            for (field, name) in [
                ("pingService", &pp.ping_service),
                ("pongService", &pp.pong_service),
            ] {
                if name.is_empty() {
                    self.err(
                        doc,
                        "missing-field",
                        &join_key(&pp_path, field),
                        format!("pingPong needs `{field}`"),
                        "name the Service",
                    );
                } else {
                    self.service_ref(doc, &join_key(&pp_path, field), name, field);
                }
            }
        }
        if c.anti_affinity.is_some() {
            self.warn_unsupported(doc, &join_key(base, "antiAffinity"), "antiAffinity");
        }
        let routed = c.traffic_routing.is_some();
        if !routed && c.dynamic_stable_scale {
            self.err(
                doc,
                "invalid-value",
                &join_key(base, "dynamicStableScale"),
                "dynamicStableScale requires trafficRouting".into(),
                "add trafficRouting or remove dynamicStableScale",
            );
        }
        let managed: BTreeSet<&str> = c
            .traffic_routing
            .as_ref()
            .map(|t| t.managed_routes.iter().map(|m| m.name.as_str()).collect())
            .unwrap_or_default();
        // The last setWeight at or before a step (Argo's GetCurrentSetWeight).
        let mut set_weight = 0i64;
        for (i, step) in c.steps.iter().enumerate() {
            let sp = join_index(&join_key(base, "steps"), i);
            if let Some(w) = step.set_weight {
                set_weight = i64::from(w);
            }
            // Argo: a step needs at least one action, and setWeight, pause,
            // experiment and analysis are mutually exclusive (setCanaryScale,
            // setHeaderRoute, setMirrorRoute and plugin may accompany them).
            let exclusive: Vec<&str> = [
                ("setWeight", step.set_weight.is_some()),
                ("pause", step.pause.is_some()),
                ("experiment", step.experiment.is_some()),
                ("analysis", step.analysis.is_some()),
            ]
            .iter()
            .filter(|(_, b)| *b)
            .map(|(n, _)| *n)
            .collect();
            let others = [
                step.set_canary_scale.is_some(),
                step.set_header_route.is_some(),
                step.set_mirror_route.is_some(),
                step.plugin.is_some(),
            ]
            .iter()
            .any(|b| *b);
            if exclusive.is_empty() && !others {
                self.err(
                    doc,
                    "invalid-step",
                    &sp,
                    "step sets no action".into(),
                    "set one of setWeight, pause, analysis, setCanaryScale, setHeaderRoute, setMirrorRoute",
                );
            } else if exclusive.len() > 1 {
                self.err(
                    doc,
                    "invalid-step",
                    &sp,
                    format!(
                        "step sets {}; setWeight, pause, experiment and analysis must be separate steps",
                        exclusive.join(" and ")
                    ),
                    "split it into one step per action",
                );
            }
            if let Some(w) = step.set_weight
                && !(0..=100).contains(&w)
            {
                self.err(
                    doc,
                    "weight-range",
                    &join_key(&sp, "setWeight"),
                    format!("setWeight {w} is outside 0-100"),
                    "use a percentage between 0 and 100",
                );
            }
            if let Some(p) = &step.pause
                && let Some(d) = &p.duration
                && let Err(e) = d.to_duration()
            {
                self.err(
                    doc,
                    "invalid-duration",
                    &join_key(&join_key(&sp, "pause"), "duration"),
                    e.to_string(),
                    "use seconds (300) or a duration such as \"300s\", \"5m\", \"1h30m\"",
                );
            }
            if let Some(a) = &step.analysis {
                let ap = join_key(&sp, "analysis");
                self.analysis_ref(doc, &ap, &a.templates, &a.args);
            }
            if let Some(sc) = &step.set_canary_scale {
                let scp = join_key(&sp, "setCanaryScale");
                let n = [
                    sc.weight.is_some(),
                    sc.replicas.is_some(),
                    sc.match_traffic_weight,
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n != 1 {
                    self.err(doc, "invalid-step", &scp, "setCanaryScale must set exactly one of weight, replicas or matchTrafficWeight".into(), "keep one");
                }
                if let Some(w) = sc.weight
                    && !(0..=100).contains(&w)
                {
                    self.err(
                        doc,
                        "weight-range",
                        &join_key(&scp, "weight"),
                        format!("setCanaryScale.weight {w} is outside 0-100"),
                        "use a percentage between 0 and 100",
                    );
                }
                if sc.replicas.is_some_and(|n| n < 0) {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key(&scp, "replicas"),
                        "setCanaryScale.replicas must be >= 0".into(),
                        "use a non-negative count",
                    );
                }
                if !routed {
                    self.err(
                        doc,
                        "invalid-step",
                        &scp,
                        "setCanaryScale requires trafficRouting".into(),
                        "without traffic routing the canary's scale is its weight: use setWeight",
                    );
                }
            }
            if let Some(h) = &step.set_header_route {
                let hp = join_key(&sp, "setHeaderRoute");
                if !routed {
                    self.err(
                        doc,
                        "invalid-step",
                        &hp,
                        "setHeaderRoute requires trafficRouting".into(),
                        "add trafficRouting.istio and managedRoutes",
                    );
                }
                match &h.name {
                    None => self.err(doc, "missing-field", &join_key(&hp, "name"), "setHeaderRoute requires `name`".into(), "name a route listed in trafficRouting.managedRoutes"),
                    Some(n) if routed && !managed.contains(n.as_str()) => self.err(
                        doc,
                        "missing-route",
                        &join_key(&hp, "name"),
                        format!("header route `{n}` is not listed in trafficRouting.managedRoutes"),
                        &format!("add `- name: {n}` under spec.strategy.canary.trafficRouting.managedRoutes"),
                    ),
                    _ => {}
                }
                for (j, m) in h.r#match.iter().enumerate() {
                    let v = &m.header_value;
                    let n = [v.exact.is_some(), v.prefix.is_some(), v.regex.is_some()]
                        .iter()
                        .filter(|b| **b)
                        .count();
                    if n != 1 {
                        self.err(
                            doc,
                            "invalid-value",
                            &join_key(&join_index(&join_key(&hp, "match"), j), "headerValue"),
                            "headerValue must set exactly one of exact, prefix or regex".into(),
                            "keep one",
                        );
                    }
                }
            }
            if let Some(x) = &step.experiment {
                // Argo validates experiment weights only for these routers.
                let argo_weighted = c
                    .traffic_routing
                    .as_ref()
                    .is_some_and(|t| t.istio.is_some() || t.smi.is_some() || t.alb.is_some());
                self.experiment_step(
                    doc,
                    &join_key(&sp, "experiment"),
                    x,
                    routed,
                    set_weight,
                    argo_weighted,
                );
            }
            if let Some(m) = &step.set_mirror_route {
                self.mirror_route(doc, &join_key(&sp, "setMirrorRoute"), m, routed, &managed);
            }
            if step.plugin.is_some() {
                self.refuse(
                    doc,
                    &join_key(&sp, "plugin"),
                    "step plugins",
                    "remove the plugin step",
                );
            }
        }
        if let Some(a) = &c.analysis {
            let ap = join_key(base, "analysis");
            self.analysis_ref(doc, &ap, &a.templates, &a.args);
            if let Some(s) = a.starting_step
                && (s < 0 || (s as usize) > c.steps.len())
            {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&ap, "startingStep"),
                    format!(
                        "startingStep {s} is out of range: the canary has {} steps",
                        c.steps.len()
                    ),
                    "use a step index between 0 and the number of steps",
                );
            }
            if a.analysis_run_metadata.is_some() {
                self.warn_unsupported(
                    doc,
                    &join_key(&ap, "analysisRunMetadata"),
                    "analysisRunMetadata",
                );
            }
        }
        if let Some(tr) = &c.traffic_routing {
            let tp = join_key(base, "trafficRouting");
            for name in tr.unsupported_providers() {
                self.refuse(
                    doc,
                    &format!("{tp}.{name}"),
                    &format!("traffic router plugin `{name}`"),
                    "use one of the routers Serin maps onto its proxy: istio, nginx, alb, smi, ambassador, appMesh, traefik, apisix or the argoproj-labs/gatewayAPI plugin",
                );
            }
            // Every router must name the object it edits: that object
            // becomes the proxy listener clients call.
            let rname = r.metadata.name.as_deref().unwrap_or("");
            let objects = tr.router_objects(rname);
            for (router, what) in [
                ("nginx", "`stableIngress` (or `stableIngresses`)"),
                ("alb", "`ingress` (or `ingresses`)"),
                ("ambassador", "`mappings`"),
                ("appMesh", "`virtualService.name`"),
                ("traefik", "`weightedTraefikServiceName`"),
                ("apisix", "`route.name`"),
            ] {
                let set = match router {
                    "nginx" => tr.nginx.is_some(),
                    "alb" => tr.alb.is_some(),
                    "ambassador" => tr.ambassador.is_some(),
                    "appMesh" => tr.app_mesh.is_some(),
                    "traefik" => tr.traefik.is_some(),
                    _ => tr.apisix.is_some(),
                };
                if set && !objects.iter().any(|o| o.router == router) {
                    self.err(
                        doc,
                        "missing-field",
                        &join_key(&tp, router),
                        format!("the {router} traffic router names no {what}"),
                        "name the object the router edits; Serin's proxy serves it as a listener of that name",
                    );
                }
            }
            if tr
                .plugins
                .as_ref()
                .and_then(|p| p.get(GATEWAY_API_PLUGIN))
                .is_some()
                && !objects.iter().any(|o| o.router == "plugins")
            {
                self.err(
                    doc,
                    "missing-field",
                    &join_key(&join_key(&tp, "plugins"), GATEWAY_API_PLUGIN),
                    "the Gateway API plugin names no `httpRoute` (or `httpRoutes`)".into(),
                    "name the HTTPRoute; Serin's proxy serves it as a listener of that name",
                );
            }
            if let Some(m) = tr.max_traffic_weight
                && m < 1
            {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&tp, "maxTrafficWeight"),
                    "maxTrafficWeight must be >= 1".into(),
                    "omit it for 100",
                );
            }
            if let Some(istio) = &tr.istio {
                self.istio(doc, r, c, istio, &join_key(&tp, "istio"));
            }
            // Argo: host-level Istio splitting names the Services it edits;
            // with pingPong the ping and pong Services take that place, and a
            // DestinationRule splits by subset instead.
            let needs_services = c.ping_pong.is_none()
                && tr
                    .istio
                    .as_ref()
                    .is_some_and(|i| i.destination_rule.is_none());
            if needs_services {
                for (field, v) in [
                    ("canaryService", &c.canary_service),
                    ("stableService", &c.stable_service),
                ] {
                    if v.is_none() {
                        self.err(
                            doc,
                            "missing-field",
                            &join_key(base, field),
                            format!("traffic routing requires `{field}`"),
                            "name the Service the VirtualService routes to",
                        );
                    }
                }
            }
        }
    }

    fn istio(
        &mut self,
        doc: &Document,
        _r: &Rollout,
        c: &CanaryStrategy,
        istio: &IstioTrafficRouting,
        path: &str,
    ) {
        let refs = istio.all_virtual_services();
        if refs.is_empty() {
            self.err(
                doc,
                "missing-field",
                path,
                "istio traffic routing needs `virtualService` or `virtualServices`".into(),
                "name the VirtualService to edit",
            );
        }
        if istio.virtual_service.is_some() && !istio.virtual_services.is_empty() {
            self.err(
                doc,
                "invalid-value",
                path,
                "set either `virtualService` or `virtualServices`, not both".into(),
                "keep one",
            );
        }
        if istio.destination_rule.is_some() {
            self.warn_unsupported(
                doc,
                &join_key(path, "destinationRule"),
                "istio destinationRule (subset-level splitting)",
            );
        }
        for (suffix, vref) in refs {
            let vp = join_key(path, &suffix);
            if vref.tls_routes.is_some() {
                self.warn_unsupported(doc, &join_key(&vp, "tlsRoutes"), "istio tlsRoutes");
            }
            if vref.tcp_routes.is_some() {
                self.warn_unsupported(doc, &join_key(&vp, "tcpRoutes"), "istio tcpRoutes");
            }
            // `name` may be `name.namespace`.
            let vs_name = vref.name.split('.').next().unwrap_or("");
            if vs_name.is_empty() {
                self.err(
                    doc,
                    "missing-field",
                    &join_key(&vp, "name"),
                    "VirtualService reference has no name".into(),
                    "name the VirtualService",
                );
                continue;
            }
            let Some(vs_doc) = self.find("VirtualService", vs_name, doc) else {
                self.err(
                    doc,
                    "missing-virtual-service",
                    &join_key(&vp, "name"),
                    format!("VirtualService `{}` is not defined in the linted files", vref.name),
                    &format!("add the `kind: VirtualService` named `{vs_name}`, or lint its file together with this one"),
                );
                continue;
            };
            let Resource::VirtualService(vs) = &vs_doc.resource else {
                continue;
            };
            let http = &vs.spec.http;
            let mut indexes = Vec::new();
            // A reference that edits only TLS / TCP routes has no HTTP route
            // to find or check.
            let non_http_only =
                vref.routes.is_empty() && (vref.tls_routes.is_some() || vref.tcp_routes.is_some());
            if vref.routes.is_empty() && !non_http_only {
                if http.len() == 1 {
                    indexes.push(0);
                } else {
                    self.err(
                        doc,
                        "missing-route",
                        &vp,
                        format!(
                            "no `routes` named, so VirtualService `{vs_name}` must have exactly one HTTP route, but it has {}",
                            http.len()
                        ),
                        "name the HTTP route(s) to edit under `routes:` (and give them `name:` in the VirtualService)",
                    );
                }
            }
            for (i, route) in vref.routes.iter().enumerate() {
                match http
                    .iter()
                    .position(|h| h.name.as_deref() == Some(route.as_str()))
                {
                    Some(ix) => indexes.push(ix),
                    None => {
                        let unnamed = http.iter().filter(|h| h.name.is_none()).count();
                        let names: Vec<&str> =
                            http.iter().filter_map(|h| h.name.as_deref()).collect();
                        let f = &self.set.files[vs_doc.file];
                        let vl = vs_doc.locs.value("spec.http");
                        self.err(
                            doc,
                            "missing-route",
                            &join_index(&join_key(&vp, "routes"), i),
                            format!(
                                "HTTP route `{route}` is not found in VirtualService `{vs_name}` ({}:{}:{}): {}",
                                f.path,
                                vl.line,
                                vl.column,
                                if names.is_empty() {
                                    format!("its {unnamed} HTTP route(s) have no name")
                                } else {
                                    format!("its named routes are {}", names.join(", "))
                                }
                            ),
                            &format!("add `name: {route}` to the VirtualService's HTTP route that splits traffic, or list an existing route name"),
                        );
                    }
                }
            }
            // Each edited route must send traffic to both the stable and the canary Service.
            if istio.destination_rule.is_none() {
                for ix in indexes {
                    let h = &http[ix];
                    let roles = match &c.ping_pong {
                        Some(pp) => [
                            ("ping", Some(pp.ping_service.clone())),
                            ("pong", Some(pp.pong_service.clone())),
                        ],
                        None => [
                            ("stable", c.stable_service.clone()),
                            ("canary", c.canary_service.clone()),
                        ],
                    };
                    for (role, svc) in &roles {
                        let Some(svc) = svc else { continue };
                        if !h
                            .route
                            .iter()
                            .any(|d| host_is_service(&d.destination.host, svc))
                        {
                            self.err(
                                doc,
                                "route-destinations",
                                &vp,
                                format!(
                                    "VirtualService `{vs_name}` route {} has no destination for the {role} Service `{svc}`",
                                    h.name.as_deref().map(|n| format!("`{n}`")).unwrap_or_else(|| format!("#{ix}"))
                                ),
                                &format!("add a destination with `host: {svc}` to that route"),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Templates named by a Rollout must exist; template args without a
    /// value must be supplied.
    fn analysis_ref(
        &mut self,
        doc: &Document,
        path: &str,
        templates: &[RolloutAnalysisTemplate],
        args: &[AnalysisRunArgument],
    ) {
        if templates.is_empty() {
            self.err(
                doc,
                "missing-field",
                &join_key(path, "templates"),
                "analysis names no templates".into(),
                "add `templates: [{templateName: ...}]`",
            );
        }
        self.analysis_args(doc, path, args);
        for (i, t) in templates.iter().enumerate() {
            let tp = join_key(&join_index(&join_key(path, "templates"), i), "templateName");
            self.template_ref(doc, &tp, t, args);
        }
    }

    /// An analysis's `args`: each with one of value / valueFrom, and a
    /// valueFrom that says where from.
    fn analysis_args(&mut self, doc: &Document, path: &str, args: &[AnalysisRunArgument]) {
        for (i, a) in args.iter().enumerate() {
            let ap = join_index(&join_key(path, "args"), i);
            if a.value.is_some() && a.value_from.is_some() {
                self.err(
                    doc,
                    "invalid-value",
                    &ap,
                    format!("argument `{}` sets both value and valueFrom", a.name),
                    "keep one",
                );
            }
            if let Some(vf) = &a.value_from
                && vf.pod_template_hash_value.is_none()
                && vf.field_ref.is_none()
            {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&ap, "valueFrom"),
                    "valueFrom must set podTemplateHashValue or fieldRef".into(),
                    "e.g. `podTemplateHashValue: Latest`",
                );
            }
        }
    }

    /// One analysis's template (at `tp`, its `templateName`): it exists in
    /// the files and gets every argument it needs.
    fn template_ref(
        &mut self,
        doc: &Document,
        tp: &str,
        t: &RolloutAnalysisTemplate,
        args: &[AnalysisRunArgument],
    ) {
        let kind = if t.cluster_scope {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        };
        if t.template_name.is_empty() {
            self.err(
                doc,
                "missing-field",
                tp,
                "templateName is empty".into(),
                "name an AnalysisTemplate",
            );
            return;
        }
        match self.find(kind, &t.template_name, doc) {
            None => {
                let defined: Vec<String> = self
                    .set
                    .documents
                    .iter()
                    .filter(|d| d.kind == kind)
                    .filter_map(|d| d.name.clone())
                    .collect();
                self.err(
                    doc,
                    "missing-template",
                    tp,
                    format!(
                        "{kind} `{}` is not defined in the linted files",
                        t.template_name
                    ),
                    &if defined.is_empty() {
                        format!("add a `kind: {kind}` named `{}`", t.template_name)
                    } else {
                        format!(
                            "defined {kind}s: {}; define `{}` or use one of them",
                            defined.join(", "),
                            t.template_name
                        )
                    },
                );
            }
            Some(tdoc) => {
                if let Resource::AnalysisTemplate(tmpl) = &tdoc.resource {
                    for targ in &tmpl.spec.args {
                        let supplied = args.iter().any(|a| a.name == targ.name);
                        if !supplied && targ.value.is_none() && targ.value_from.is_none() {
                            self.err(
                                doc,
                                "missing-arg",
                                tp,
                                format!(
                                    "{kind} `{}` needs argument `{}`, which is not passed",
                                    t.template_name, targ.name
                                ),
                                &format!(
                                    "add `args: [{{name: {}, value: ...}}]` to this analysis",
                                    targ.name
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------
    // FlagRollouts
    // -----------------------------------------------------------------------

    /// Steps are increasing percentages, the interval a duration, the
    /// analysis's templates exist and get their args, and no other
    /// FlagRollout drives the same flag in the same environment.
    fn flag_rollout(&mut self, doc: &Document, f: &FlagRollout) {
        let s = &f.spec;
        if s.steps.is_empty() {
            self.err(
                doc,
                "missing-field",
                "spec.steps",
                "a FlagRollout needs at least one step".into(),
                "e.g. `steps: [5, 10, 25, 50, 100]`",
            );
        }
        let mut prev: Option<i64> = None;
        for (i, &pct) in s.steps.iter().enumerate() {
            let sp = join_index("spec.steps", i);
            if !(1..=100).contains(&pct) {
                self.err(
                    doc,
                    "percentage-range",
                    &sp,
                    format!("step {pct} is outside 1-100"),
                    "use a percentage between 1 and 100 (0 is what a rollback sets)",
                );
            } else if let Some(p) = prev
                && pct <= p
            {
                self.err(
                    doc,
                    "steps-not-increasing",
                    &sp,
                    format!("step {pct} does not raise the percentage (the step before is {p})"),
                    "list the percentages in increasing order, each once",
                );
            }
            prev = Some(pct);
        }
        if let Err(e) = s.interval.parse() {
            self.err(
                doc,
                "invalid-duration",
                "spec.interval",
                e.to_string(),
                "use a duration such as \"30s\", \"5m\", \"1h\"",
            );
        }
        if let Some(flag) = &s.flag
            && flag.trim().is_empty()
        {
            self.err(
                doc,
                "invalid-value",
                "spec.flag",
                "`flag` is empty".into(),
                "name the flag's key, or leave `flag` out to use metadata.name",
            );
        }
        let valid_env = |e: &str| {
            (1..=64).contains(&e.len())
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        if s.environment.as_deref().is_some_and(|e| !valid_env(e)) {
            self.err(
                doc,
                "invalid-value",
                "spec.environment",
                format!(
                    "environment {:?} must be 1-64 of [A-Za-z0-9_.-]",
                    s.environment.as_deref().unwrap_or("")
                ),
                "e.g. `environment: production`",
            );
        }
        if let Some(a) = &s.analysis {
            self.analysis_ref(doc, "spec.analysis", &a.templates, &a.args);
            for (i, arg) in a.args.iter().enumerate() {
                if arg
                    .value_from
                    .as_ref()
                    .is_some_and(|v| v.pod_template_hash_value.is_some())
                {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key(&join_index("spec.analysis.args", i), "valueFrom"),
                        format!(
                            "argument `{}`: a FlagRollout has no pod template hash",
                            arg.name
                        ),
                        "give a `value`, or `fieldRef` to a field of the FlagRollout",
                    );
                }
            }
        }
        // One flag, one driver: two FlagRollouts raising the same flag would
        // overwrite each other's percentage.
        let key = |d: &Document, x: &FlagRollout| {
            (
                x.spec.environment.clone(),
                x.flag().to_string(),
                d.namespace.clone(),
            )
        };
        let mine = key(doc, f);
        if let Some((other, _)) = self
            .set
            .flag_rollouts()
            .take_while(|(d, _)| !std::ptr::eq(*d, doc))
            .find(|(d, x)| key(d, x) == mine && d.name != doc.name)
        {
            let path = if s.flag.is_some() {
                "spec.flag"
            } else {
                "metadata.name"
            };
            let msg = format!(
                "flag `{}` is already rolled out by FlagRollout `{}`",
                f.flag(),
                other.name.as_deref().unwrap_or("?")
            );
            self.err(
                doc,
                "flag-rollout-conflict",
                path,
                msg,
                "one FlagRollout per flag: remove one of them",
            );
        }
    }

    // -----------------------------------------------------------------------
    // Analysis templates
    // -----------------------------------------------------------------------

    fn analysis_template(&mut self, doc: &Document, t: &AnalysisTemplate) {
        // Argo validates a template after putting in its arguments' default
        // values; an argument without a default is only known per run, so a
        // field that still holds a `{{args.x}}` then is accepted as written.
        let defaults: HashMap<&str, &str> = t
            .spec
            .args
            .iter()
            .filter_map(|a| a.value.as_deref().map(|v| (a.name.as_str(), v)))
            .collect();
        let resolve = |text: &str| with_arg_defaults(text, &defaults);
        if t.spec.metrics.is_empty() {
            self.err(
                doc,
                "missing-field",
                "spec.metrics",
                "the template has no metrics".into(),
                "add at least one metric",
            );
        }
        let mut names = BTreeSet::new();
        for (i, m) in t.spec.metrics.iter().enumerate() {
            let mp = join_index("spec.metrics", i);
            if m.name.is_empty() {
                self.err(
                    doc,
                    "missing-field",
                    &join_key(&mp, "name"),
                    "metric has no name".into(),
                    "add `name:`",
                );
            } else if !names.insert(m.name.clone()) {
                self.err(
                    doc,
                    "duplicate-name",
                    &join_key(&mp, "name"),
                    format!("duplicate metric name `{}`", m.name),
                    "metric names must be unique",
                );
            }
            for (field, d) in [
                ("interval", &m.interval),
                ("initialDelay", &m.initial_delay),
            ] {
                if let Some(d) = d
                    && let Some(text) = resolve(&d.0)
                    && let Err(e) = crate::values::parse_go_duration(&text)
                {
                    let via = if text == d.0 {
                        String::new()
                    } else {
                        format!(" ({:?} with the arguments' default values)", d.0)
                    };
                    self.err(
                        doc,
                        "invalid-duration",
                        &join_key(&mp, field),
                        format!("{e}{via}"),
                        "use a duration such as \"30s\", \"5m\", \"1h\"",
                    );
                }
            }
            for (field, v) in [
                ("count", &m.count),
                ("failureLimit", &m.failure_limit),
                ("inconclusiveLimit", &m.inconclusive_limit),
                ("consecutiveErrorLimit", &m.consecutive_error_limit),
                ("consecutiveSuccessLimit", &m.consecutive_success_limit),
            ] {
                let n = match v {
                    Some(IntOrString::Int(n)) => Some(*n),
                    Some(IntOrString::String(s)) => match resolve(s) {
                        // Only known per run: accepted as written.
                        None => None,
                        Some(text) => match text.trim().parse::<i64>() {
                            Ok(n) => Some(n),
                            Err(_) => {
                                let via = if text == *s {
                                    String::new()
                                } else {
                                    format!(" (with the arguments' default values: {text:?})")
                                };
                                self.err(
                                    doc,
                                    "invalid-value",
                                    &join_key(&mp, field),
                                    format!(
                                        "{field} {s:?} is neither a number nor an {{{{args.x}}}} template{via}"
                                    ),
                                    "use a number",
                                );
                                None
                            }
                        },
                    },
                    None => None,
                };
                if let Some(n) = n
                    && n < 0
                    && !(field == "failureLimit" && n == -1)
                {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key(&mp, field),
                        format!("{field} must be >= 0, got {n}"),
                        "use a non-negative number",
                    );
                }
            }
            if let Some(job) = &m.provider.job {
                self.job_pod(doc, job, &join_key(&join_key(&mp, "provider"), "job"));
            }
            if let Some(IntOrString::Int(n)) = m.count
                && n > 1
                && m.interval.is_none()
            {
                self.err(
                    doc,
                    "invalid-value",
                    &join_key(&mp, "interval"),
                    format!("metric `{}` has count {n} but no interval", m.name),
                    "add `interval:` (e.g. \"1m\") between measurements",
                );
            }
            let providers = m.provider.set_providers();
            let pp = join_key(&mp, "provider");
            match providers.len() {
                0 => self.err(
                    doc,
                    "missing-field",
                    &pp,
                    format!("metric `{}` has no provider", m.name),
                    "add `provider: {prometheus: {address, query}}`, `web:` or `job:`",
                ),
                1 => {}
                _ => self.err(
                    doc,
                    "invalid-value",
                    &pp,
                    format!(
                        "metric `{}` sets several providers: {}",
                        m.name,
                        providers.join(", ")
                    ),
                    "keep exactly one provider",
                ),
            }
            for p in &providers {
                // `plugin` is Argo's slot for third-party metric providers;
                // Serin runs its own judge there (`serin.dev/judge`, checked
                // by the analysis crate's lint) and no other plugin.
                let serin_judge = *p == "plugin"
                    && m.provider.plugin.as_ref().is_some_and(|v| {
                        v.as_object()
                            .is_some_and(|o| o.len() == 1 && o.contains_key(SERIN_JUDGE_PLUGIN))
                    });
                if !serin_judge && !matches!(*p, "prometheus" | "web" | "job" | "builtin") {
                    let at = join_key(&pp, p);
                    if self.template_in_use(doc) {
                        self.refuse(
                            doc,
                            &at,
                            &format!("metric provider `{p}` (every measurement would end in Error and abort the rollout)"),
                            "measure with `prometheus`, `web`, `job`, Serin's `builtin` provider or its judge (`plugin: {serin.dev/judge: …}`)",
                        );
                    } else {
                        // Nothing here runs it, so nothing fails yet (a file
                        // of templates linted alone, a template kept for
                        // later): a warning, which becomes the error above
                        // once a Rollout or FlagRollout in the files uses it.
                        self.push(
                            doc,
                            Severity::Warning,
                            "unsupported",
                            &at,
                            format!("unsupported: metric provider `{p}`; a rollout that uses this template would abort (every measurement ends in Error)"),
                            "measure with `prometheus`, `web`, `job`, Serin's `builtin` provider or its judge (`plugin: {serin.dev/judge: …}`)",
                        );
                    }
                }
            }
            if let Some(p) = &m.provider.prometheus
                && p.query.trim().is_empty()
            {
                self.err(
                    doc,
                    "missing-field",
                    &join_key(&join_key(&pp, "prometheus"), "query"),
                    "prometheus provider has no query".into(),
                    "add `query:`",
                );
            }
            if let Some(w) = &m.provider.web
                && w.url.trim().is_empty()
            {
                self.err(
                    doc,
                    "missing-field",
                    &join_key(&join_key(&pp, "web"), "url"),
                    "web provider has no url".into(),
                    "add `url:`",
                );
            }
        }
        // Arguments referenced as {{args.x}} must be declared; each use is
        // reported at the field that holds it (the query, the url, ...).
        let declared: BTreeSet<&str> = t.spec.args.iter().map(|a| a.name.as_str()).collect();
        let mut leaves = Vec::new();
        if let Some(metrics) = doc.value.get("spec").and_then(|s| s.get("metrics")) {
            string_leaves(metrics, "spec.metrics".into(), &mut leaves);
        }
        for (path, text) in leaves {
            for used in template_args(&text) {
                if !declared.contains(used.as_str()) {
                    self.err(
                        doc,
                        "undeclared-arg",
                        &path,
                        format!("`{{{{args.{used}}}}}` is used but `{used}` is not declared in spec.args"),
                        &format!("add `- name: {used}` under spec.args"),
                    );
                }
            }
        }
    }

    /// A Job provider's pod template gets the checks a Rollout's pods get.
    fn job_pod(&mut self, doc: &Document, job: &serde_json::Value, path: &str) {
        let Some(pod) = job
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("spec"))
        else {
            self.err(
                doc,
                "missing-field",
                &join_key(path, "spec"),
                "the job provider has no pod template (`spec.template.spec`)".into(),
                "add `spec: {template: {spec: {containers: [...], restartPolicy: Never}}}`",
            );
            return;
        };
        let pp = join_key(&join_key(&join_key(path, "spec"), "template"), "spec");
        match serde_json::from_value::<PodSpec>(pod.clone()) {
            Ok(p) => self.pod_spec(doc, &p, &pp),
            Err(e) => self.err(
                doc,
                "wrong-type",
                &pp,
                format!("the job's pod template does not load: {e}"),
                "write it as a Kubernetes pod spec",
            ),
        }
    }

    /// An AnalysisRun written by hand: its Job pods are checked as a
    /// Rollout's are (the rest of its spec is kept as written).
    fn analysis_run(&mut self, doc: &Document, run: &AnalysisRun) {
        let Some(metrics) = run.spec.get("metrics").and_then(|m| m.as_array()) else {
            return;
        };
        for (i, m) in metrics.iter().enumerate() {
            if let Some(job) = m.get("provider").and_then(|p| p.get("job")) {
                let path = join_key(&join_key(&join_index("spec.metrics", i), "provider"), "job");
                self.job_pod(doc, job, &path);
            }
        }
    }

    // -----------------------------------------------------------------------
    // VirtualService, PDB
    // -----------------------------------------------------------------------

    fn virtual_service(&mut self, doc: &Document, vs: &VirtualService) {
        let mut names = BTreeSet::new();
        for (i, h) in vs.spec.http.iter().enumerate() {
            let hp = join_index("spec.http", i);
            if let Some(n) = &h.name
                && !names.insert(n.clone())
            {
                self.err(
                    doc,
                    "duplicate-name",
                    &join_key(&hp, "name"),
                    format!("duplicate HTTP route name `{n}`"),
                    "route names must be unique",
                );
            }
            for (j, m) in h.r#match.iter().enumerate() {
                for (hname, sm) in &m.headers {
                    let n = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()]
                        .iter()
                        .filter(|b| **b)
                        .count();
                    if n != 1 {
                        let p = join_key(
                            &join_key(&join_index(&join_key(&hp, "match"), j), "headers"),
                            hname,
                        );
                        self.err(doc, "invalid-value", &p, format!("header match `{hname}` must set exactly one of exact, prefix or regex"), "keep one");
                    }
                }
            }
            let mut sum = 0i64;
            let mut any_weight = false;
            for (j, d) in h.route.iter().enumerate() {
                let dp = join_index(&join_key(&hp, "route"), j);
                if let Some(w) = d.weight {
                    any_weight = true;
                    sum += w as i64;
                    if !(0..=100).contains(&w) {
                        self.err(
                            doc,
                            "weight-range",
                            &join_key(&dp, "weight"),
                            format!("weight {w} is outside 0-100"),
                            "use a percentage between 0 and 100",
                        );
                    }
                }
                let host = &d.destination.host;
                if let Some(svc) = service_of_host(host)
                    && !self.exists("Service", svc, doc)
                {
                    self.err(
                        doc,
                        "missing-service",
                        &join_key(&join_key(&dp, "destination"), "host"),
                        format!("destination Service `{svc}` is not defined in the linted files"),
                        &format!("add a `kind: Service` named `{svc}`, or lint the files that define it together with this one"),
                    );
                }
                if let Some(p) = &d.destination.port
                    && !(1..=65535).contains(&p.number)
                {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key(&join_key(&join_key(&dp, "destination"), "port"), "number"),
                        format!("port {} is out of range 1-65535", p.number),
                        "use a port between 1 and 65535",
                    );
                }
            }
            if h.route.len() > 1 && any_weight && sum != 100 {
                self.err(
                    doc,
                    "weight-sum",
                    &join_key(&hp, "route"),
                    format!("destination weights add up to {sum}, not 100"),
                    "make the weights of this route sum to 100",
                );
            }
        }
    }

    fn pdb(&mut self, doc: &Document, p: &PodDisruptionBudget) {
        let s = &p.spec;
        if s.min_available.is_some() && s.max_unavailable.is_some() {
            self.err(
                doc,
                "invalid-value",
                "spec.maxUnavailable",
                "minAvailable and maxUnavailable cannot both be set".into(),
                "keep one",
            );
        }
        for (field, v) in [
            ("minAvailable", &s.min_available),
            ("maxUnavailable", &s.max_unavailable),
        ] {
            if let Some(v) = v {
                let bad = match v {
                    IntOrPercent::Int(n) => *n < 0,
                    IntOrPercent::Percent(n) => !(0..=100).contains(n),
                };
                if bad {
                    self.err(
                        doc,
                        "invalid-value",
                        &join_key("spec", field),
                        format!("{field} {v} is out of range"),
                        "use a non-negative count or 0%..100%",
                    );
                }
            }
        }
    }
}

/// How to name a document in a message: `name`, or `generateName…` for a
/// document whose name the API server would generate.
fn display_name(doc: &Document) -> String {
    if let Some(n) = &doc.name {
        return format!("`{n}`");
    }
    match doc
        .value
        .get("metadata")
        .and_then(|m| m.get("generateName"))
        .and_then(|g| g.as_str())
    {
        Some(g) => format!("`{g}…` (generateName)"),
        None => "(unnamed)".into(),
    }
}

/// Is `host` (short name or `svc.ns.svc.cluster.local`) the Service `svc`?
fn host_is_service(host: &str, svc: &str) -> bool {
    host == svc
        || host
            .strip_prefix(svc)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The Service name an Istio destination host names, when it names an
/// in-cluster Service (short name or `*.svc[.cluster.local]`); `None` for
/// external hosts.
fn service_of_host(host: &str) -> Option<&str> {
    if host.is_empty() || host.contains('*') {
        return None;
    }
    if !host.contains('.') {
        return Some(host);
    }
    if host.ends_with(".svc.cluster.local") || host.ends_with(".svc") {
        return host.split('.').next();
    }
    None
}

/// Every string in `v` with its field path.
fn string_leaves(v: &serde_json::Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::String(s) => out.push((path, s.clone())),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, join_index(&path, i), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                string_leaves(item, join_key(&path, k), out);
            }
        }
        _ => {}
    }
}

/// `text` with each `{{args.NAME}}` replaced by the argument's default;
/// `None` when some `{{...}}` has no known value (it is resolved per run).
fn with_arg_defaults(text: &str, defaults: &HashMap<&str, &str>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find("}}")?;
        let inner = after[..end].trim();
        let value = inner
            .strip_prefix("args.")
            .and_then(|name| defaults.get(name.trim()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Names used as `{{args.NAME}}` in `text`.
fn template_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find("}}") else { break };
        let inner = rest[..end].trim();
        if let Some(name) = inner.strip_prefix("args.") {
            out.push(name.trim().to_string());
        }
        rest = &rest[end + 2..];
    }
    out
}

fn is_dns_subdomain(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The template names of `{{templates.<name>.podTemplateHash}}` in a value.
/// Each analysis of an experiment as a one-template [`RolloutAnalysis`]
/// (for the checks every analysis gets).
fn experiment_analyses(analyses: &[RolloutExperimentAnalysis]) -> Vec<RolloutAnalysis> {
    RolloutExperimentStep {
        analyses: analyses.to_vec(),
        ..RolloutExperimentStep::default()
    }
    .analyses()
}

fn template_refs(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(i) = rest.find("{{templates.") {
        rest = &rest[i + "{{templates.".len()..];
        if let Some(end) = rest.find(".podTemplateHash}}")
            && !rest[..end].contains(['.', '}'])
        {
            out.push(&rest[..end]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(service_of_host("web"), Some("web"));
        assert_eq!(service_of_host("web.prod.svc.cluster.local"), Some("web"));
        assert_eq!(service_of_host("api.example.com"), None);
        assert!(host_is_service("web.prod.svc.cluster.local", "web"));
        assert!(!host_is_service("web2", "web"));
    }

    #[test]
    fn defaults_fill_in_templates_or_leave_them_unknown() {
        let d: HashMap<&str, &str> = [("interval", "30s")].into();
        assert_eq!(
            with_arg_defaults("{{ args.interval }}", &d).as_deref(),
            Some("30s")
        );
        assert_eq!(with_arg_defaults("5m", &d).as_deref(), Some("5m"));
        assert_eq!(with_arg_defaults("{{args.other}}", &d), None);
        assert_eq!(with_arg_defaults("{{args.interval", &d), None);
    }

    #[test]
    fn args_in_text() {
        assert_eq!(
            template_args("a {{args.x}} b {{ args.y-z }} {{other}}"),
            vec!["x", "y-z"]
        );
    }
}
