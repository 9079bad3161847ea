//! Manifest model (`serin-spec`) → engine spec (`serin-engine`).
//!
//! The engine never sees YAML, Kubernetes kinds or services: this is the only
//! place that knows both vocabularies.

use serin_engine as e;
use serin_spec as m;
use serin_spec::{ManifestSet, Resource};

/// A rollout Serin cannot run as written. Lint reports the same things as
/// errors with their locations ("serin up will not run this"); running them
/// is refused here, and [`ConvertError::located`] gives the same location.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A feature Serin parses but does not implement.
    #[error("rollout {rollout}: serin up will not run this: {feature}")]
    Unsupported {
        /// Rollout name.
        rollout: String,
        /// Field path of the feature.
        feature: String,
    },
    /// Neither canary nor blueGreen.
    #[error("rollout {0}: spec.strategy needs canary or blueGreen")]
    NoStrategy(String),
    /// No pod template (and no Deployment in the files for a workloadRef).
    #[error(
        "rollout {0}: spec.template is missing (or the workloadRef's Deployment is not in the files)"
    )]
    NoTemplate(String),
    /// A pause duration that does not parse (lint locates it).
    #[error("rollout {rollout}: {path}: {message}")]
    BadValue {
        /// Rollout name.
        rollout: String,
        /// Field path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ConvertError {
    /// The field path the error is about (for locating it in the file).
    pub fn path(&self) -> &str {
        match self {
            ConvertError::Unsupported { feature, .. } => {
                // "spec.x.y (why)" → "spec.x.y"
                feature.split(' ').next().unwrap_or(feature)
            }
            ConvertError::NoStrategy(_) => "spec.strategy",
            ConvertError::NoTemplate(_) => "spec.template",
            ConvertError::BadValue { path, .. } => path,
        }
    }

    /// `file:line:column: error: …` for the Rollout document `doc` of `set`,
    /// as lint prints its diagnostics.
    pub fn located(&self, set: &ManifestSet, doc: &serin_spec::Document) -> String {
        let file = set.files.get(doc.file).map_or("?", |f| f.path.as_str());
        let path = self.path();
        let mut at = path;
        // workloadRef rollouts have no template: point at the workloadRef.
        if matches!(self, ConvertError::NoTemplate(_))
            && doc
                .value
                .get("spec")
                .and_then(|s| s.get("workloadRef"))
                .is_some()
        {
            at = "spec.workloadRef";
        }
        let loc = doc.locs.value(at);
        format!(
            "{file}:{}:{}: error: {self} (at {at})",
            loc.line, loc.column
        )
    }
}

fn secs(s: i32) -> e::Millis {
    u64::try_from(s).unwrap_or(0) * 1000
}

fn iop(v: &m::IntOrPercent) -> e::IntOrPercent {
    match *v {
        m::IntOrPercent::Int(n) => e::IntOrPercent::Int(u32::try_from(n).unwrap_or(0)),
        m::IntOrPercent::Percent(p) => e::IntOrPercent::Percent(u32::try_from(p).unwrap_or(0)),
    }
}

fn analysis(a: &m::RolloutAnalysis) -> e::AnalysisSpec {
    e::AnalysisSpec {
        templates: a
            .templates
            .iter()
            .map(|t| {
                if t.cluster_scope {
                    format!("cluster:{}", t.template_name)
                } else {
                    t.template_name.clone()
                }
            })
            .collect(),
        args: a
            .args
            .iter()
            .map(|arg| e::AnalysisArg {
                name: arg.name.clone(),
                value: match (&arg.value, &arg.value_from) {
                    (Some(v), _) => e::ArgValue::Literal(v.clone()),
                    (None, Some(from)) => match (&from.pod_template_hash_value, &from.field_ref) {
                        (Some(m::PodTemplateHashValue::Stable), _) => e::ArgValue::StableHash,
                        (Some(m::PodTemplateHashValue::Latest), _) => e::ArgValue::LatestHash,
                        (None, Some(f)) => e::ArgValue::FieldRef(f.field_path.clone()),
                        (None, None) => e::ArgValue::Literal(String::new()),
                    },
                    (None, None) => e::ArgValue::Literal(String::new()),
                },
            })
            .collect(),
    }
}

/// An `experiment` step. A template `weight` needs a traffic router (the
/// proxy gives it that share of the rollout's traffic), and the weights
/// with the canary's `set_weight` (the last `setWeight` at or before the
/// step) may not exceed 100: the stable's share would be negative.
fn experiment(
    rollout: &str,
    path: &str,
    x: &m::RolloutExperimentStep,
    routed: bool,
    set_weight: u32,
) -> Result<e::ExperimentStep, ConvertError> {
    let bad = |path: String, message: String| ConvertError::BadValue {
        rollout: rollout.to_string(),
        path,
        message,
    };
    let duration = match &x.duration {
        None => None,
        Some(d) => Some(
            d.to_duration()
                .map_err(|err| bad(format!("{path}.duration"), err.to_string()))?,
        ),
    };
    if x.templates.is_empty() {
        return Err(bad(
            format!("{path}.templates"),
            "experiment runs no templates".into(),
        ));
    }
    let mut templates = Vec::new();
    let mut total = set_weight;
    for (i, t) in x.templates.iter().enumerate() {
        let tp = format!("{path}.templates[{i}]");
        let weight = match t.weight {
            None => None,
            Some(_) if !routed => {
                return Err(bad(
                    format!("{tp}.weight"),
                    "experiment template weight requires trafficRouting".into(),
                ));
            }
            Some(w) => match u32::try_from(w) {
                Ok(w) if w <= 100 => Some(w),
                _ => {
                    return Err(bad(
                        format!("{tp}.weight"),
                        format!("weight {w} is outside 0-100"),
                    ));
                }
            },
        };
        total += weight.unwrap_or(0);
        if total > 100 {
            return Err(bad(
                format!("{tp}.weight"),
                format!(
                    "the experiment's weights and the canary's {set_weight} % add up to {total} %, over 100"
                ),
            ));
        }
        let spec_ref = match t.spec_ref.as_str() {
            "stable" => e::SpecRef::Stable,
            "canary" => e::SpecRef::Canary,
            other => {
                return Err(bad(
                    format!("{tp}.specRef"),
                    format!("specRef must be `stable` or `canary`, not `{other}`"),
                ));
            }
        };
        templates.push(e::ExperimentTemplate {
            name: t.name.clone(),
            spec_ref,
            replicas: u32::try_from(t.replicas.unwrap_or(1)).unwrap_or(0),
            weight,
        });
    }
    Ok(e::ExperimentStep {
        duration: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        templates,
        analyses: experiment_analyses(&x.analyses),
    })
}

/// An experiment's analyses (a step's or an Experiment's) as the engine
/// runs them.
pub(crate) fn experiment_analyses(
    analyses: &[m::RolloutExperimentAnalysis],
) -> Vec<e::ExperimentAnalysis> {
    let step = m::RolloutExperimentStep {
        analyses: analyses.to_vec(),
        ..m::RolloutExperimentStep::default()
    };
    analyses
        .iter()
        .zip(step.analyses())
        .map(|(a, ra)| e::ExperimentAnalysis {
            name: a.name.clone(),
            analysis: analysis(&ra),
            required_for_completion: a.required_for_completion,
        })
        .collect()
}

fn string_match(v: &m::StringMatch) -> e::StringMatch {
    match (&v.exact, &v.prefix, &v.regex) {
        (Some(x), _, _) => e::StringMatch::Exact(x.clone()),
        (None, Some(p), _) => e::StringMatch::Prefix(p.clone()),
        (None, None, Some(re)) => e::StringMatch::Regex(re.clone()),
        _ => e::StringMatch::Exact(String::new()),
    }
}

/// `setMirrorRoute` as the engine keeps it; Argo's default percentage is 100.
fn mirror_route(m: &m::SetMirrorRoute) -> e::MirrorRoute {
    e::MirrorRoute {
        name: m.name.clone().unwrap_or_default(),
        percentage: u32::try_from(m.percentage.unwrap_or(100).clamp(0, 100)).unwrap_or(100),
        matches: m
            .r#match
            .iter()
            .map(|rm| e::MirrorMatch {
                method: rm.method.as_ref().map(string_match),
                path: rm.path.as_ref().map(string_match),
                headers: rm
                    .headers
                    .iter()
                    .map(|(k, v)| e::HeaderMatch {
                        name: k.clone(),
                        value: string_match(v),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Labels of `selector.matchLabels` all present in `labels`.
fn selects(
    selector: Option<&m::LabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.is_some_and(|s| {
        !s.match_labels.is_empty() && s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    })
}

/// Converts one Rollout of `set` into the engine's spec.
pub fn to_engine(set: &ManifestSet, r: &m::Rollout) -> Result<e::RolloutSpec, ConvertError> {
    let name = r.metadata.name.clone().unwrap_or_default();
    let unsupported = |feature: &str| ConvertError::Unsupported {
        rollout: name.clone(),
        feature: feature.to_string(),
    };
    let template = r
        .spec
        .template
        .as_ref()
        .ok_or_else(|| ConvertError::NoTemplate(name.clone()))?;
    let template_json = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    let replicas = u32::try_from(r.spec.replicas).unwrap_or(0);
    let pdb_min_available = set.documents.iter().find_map(|d| match &d.resource {
        Resource::PodDisruptionBudget(p)
            if selects(p.spec.selector.as_ref(), &template.metadata.labels) =>
        {
            match (&p.spec.min_available, &p.spec.max_unavailable) {
                (Some(min), _) => Some(iop(min)),
                (None, Some(max)) => Some(e::IntOrPercent::Int(
                    replicas.saturating_sub(iop(max).resolve(replicas, true)),
                )),
                _ => None,
            }
        }
        _ => None,
    });
    let strategy = match (&r.spec.strategy.canary, &r.spec.strategy.blue_green) {
        (Some(c), _) => {
            let tr = c.traffic_routing.as_ref();
            if let Some(tr) = tr {
                if let Some(p) = tr.unsupported_providers().first() {
                    return Err(unsupported(&format!(
                        "spec.strategy.canary.trafficRouting.{p} (traffic router plugin)"
                    )));
                }
                if tr.router_objects(&name).is_empty() {
                    return Err(unsupported(
                        "spec.strategy.canary.trafficRouting (no router names an object to route through)",
                    ));
                }
            }
            if c.ping_pong.is_some() && tr.is_none() {
                return Err(unsupported(
                    "spec.strategy.canary.pingPong (without trafficRouting)",
                ));
            }
            let mut steps = Vec::new();
            // Argo's `GetCurrentSetWeight`: the last setWeight so far.
            let mut set_weight = 0u32;
            for (i, s) in c.steps.iter().enumerate() {
                let path = format!("spec.strategy.canary.steps[{i}]");
                // Argo lets setCanaryScale, setHeaderRoute and setMirrorRoute
                // accompany setWeight, pause or analysis in one step: every
                // action is kept (the canary scale first, so a setWeight in
                // the same step is judged against it).
                if s.plugin.is_some() {
                    return Err(unsupported(&format!("{path}.plugin")));
                }
                let mut actions = Vec::new();
                if let Some(sc) = &s.set_canary_scale {
                    actions.push(e::Step::SetCanaryScale(match (sc.replicas, sc.weight) {
                        (Some(n), _) => e::CanaryScale::Replicas(u32::try_from(n).unwrap_or(0)),
                        (None, Some(w)) => e::CanaryScale::Weight(u32::try_from(w).unwrap_or(0)),
                        (None, None) => e::CanaryScale::MatchTrafficWeight,
                    }));
                }
                if let Some(hr) = &s.set_header_route {
                    actions.push(e::Step::SetHeaderRoute(e::HeaderRoute {
                        name: hr.name.clone().unwrap_or_default(),
                        matches: hr
                            .r#match
                            .iter()
                            .map(|mt| e::HeaderMatch {
                                name: mt.header_name.clone(),
                                value: string_match(&mt.header_value),
                            })
                            .collect(),
                    }));
                }
                if let Some(mr) = &s.set_mirror_route {
                    actions.push(e::Step::SetMirrorRoute(mirror_route(mr)));
                }
                if let Some(w) = s.set_weight {
                    set_weight = u32::try_from(w).unwrap_or(0).min(100);
                    actions.push(e::Step::SetWeight(set_weight));
                }
                if let Some(p) = &s.pause {
                    let d = match &p.duration {
                        None => None,
                        Some(d) => Some(d.to_duration().map_err(|err| ConvertError::BadValue {
                            rollout: name.clone(),
                            path: format!("{path}.pause.duration"),
                            message: err.to_string(),
                        })?),
                    };
                    actions.push(e::Step::Pause(
                        d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    ));
                }
                if let Some(a) = &s.analysis {
                    actions.push(e::Step::Analysis(analysis(a)));
                }
                if let Some(x) = &s.experiment {
                    actions.push(e::Step::Experiment(experiment(
                        &name,
                        &format!("{path}.experiment"),
                        x,
                        tr.is_some(),
                        set_weight,
                    )?));
                }
                let step = match actions.len() {
                    0 => {
                        return Err(ConvertError::BadValue {
                            rollout: name.clone(),
                            path,
                            message: "step sets no action".into(),
                        });
                    }
                    1 => actions.remove(0),
                    _ => e::Step::Combined(actions),
                };
                steps.push(step);
            }
            e::Strategy::Canary(e::CanarySpec {
                steps,
                max_surge: iop(&c.max_surge),
                max_unavailable: iop(&c.max_unavailable),
                traffic_routing: tr.is_some(),
                analysis: c.analysis.as_ref().map(|bg| e::BackgroundAnalysis {
                    analysis: analysis(&bg.analysis()),
                    starting_step: u32::try_from(bg.starting_step.unwrap_or(0)).unwrap_or(0),
                }),
                scale_down_delay: secs(c.scale_down_delay_seconds.unwrap_or(30)),
                abort_scale_down_delay: secs(c.abort_scale_down_delay_seconds),
                dynamic_stable_scale: c.dynamic_stable_scale,
            })
        }
        (None, Some(b)) => e::Strategy::BlueGreen(e::BlueGreenSpec {
            preview_replica_count: b
                .preview_replica_count
                .map(|n| u32::try_from(n).unwrap_or(0)),
            auto_promotion_enabled: b.auto_promotion_enabled,
            auto_promotion_after: (b.auto_promotion_seconds > 0)
                .then(|| secs(b.auto_promotion_seconds)),
            scale_down_delay: secs(b.scale_down_delay_seconds),
            abort_scale_down_delay: secs(b.abort_scale_down_delay_seconds),
            pre_promotion_analysis: b.pre_promotion_analysis.as_ref().map(analysis),
            post_promotion_analysis: b.post_promotion_analysis.as_ref().map(analysis),
            has_preview_service: b.preview_service.is_some(),
            max_unavailable: b.max_unavailable.as_ref().map(iop),
        }),
        (None, None) => return Err(ConvertError::NoStrategy(name)),
    };
    let restart_at = match &r.spec.restart_at {
        None => None,
        Some(t) => Some(
            serin_clock::parse_rfc3339(t).map_err(|err| ConvertError::BadValue {
                rollout: name.clone(),
                path: "spec.restartAt".into(),
                message: err.to_string(),
            })?,
        ),
    };
    Ok(e::RolloutSpec {
        restart_at,
        name,
        replicas,
        template_hash: e::pod_template_hash(&template_json),
        paused: r.spec.paused,
        progress_deadline: secs(r.spec.progress_deadline_seconds),
        progress_deadline_abort: r.spec.progress_deadline_abort,
        rollback_window: r
            .spec
            .rollback_window
            .as_ref()
            .and_then(|w| w.revisions)
            .map(|n| u32::try_from(n).unwrap_or(0)),
        pdb_min_available,
        strategy,
    })
}

/// The arguments an engine `StartAnalysis` action carries, as an
/// AnalysisRun's `spec.args` (values, or `valueFrom.fieldRef`): the one way
/// back from the engine's form, shared by every platform that starts runs.
pub fn run_arguments(
    args: &[(String, serin_engine::ArgValueResolved)],
) -> Vec<serin_spec::AnalysisRunArgument> {
    args.iter()
        .map(|(n, v)| match v {
            serin_engine::ArgValueResolved::Value(v) => serin_spec::AnalysisRunArgument {
                name: n.clone(),
                value: Some(v.clone()),
                value_from: None,
            },
            serin_engine::ArgValueResolved::FieldRef(f) => serin_spec::AnalysisRunArgument {
                name: n.clone(),
                value: None,
                value_from: Some(serin_spec::ArgumentValueFrom {
                    pod_template_hash_value: None,
                    field_ref: Some(serin_spec::FieldRef {
                        field_path: f.clone(),
                    }),
                }),
            },
        })
        .collect()
}
