//! Argo's standalone `Experiment`: manifest → engine spec
//! ([`serin_engine::experiment_kind::ExperimentSpec`]), and what it will do
//! in words (`serin plan`).

use std::fmt::Write as _;

use serin_engine as e;
use serin_engine::experiment_kind as x;
use serin_spec as m;
use serin_spec::ManifestSet;

use crate::convert::experiment_analyses;
use crate::explain::{analysis_duration, human};

/// Argo's defaults (utils/defaults).
const DEFAULT_PROGRESS_DEADLINE_SECONDS: u64 = 600;
const DEFAULT_SCALE_DOWN_DELAY_SECONDS: u64 = 30;

/// An Experiment Serin cannot run as written (lint reports the same at
/// its location).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("experiment {experiment}: {path}: {message}")]
pub struct ExperimentError {
    /// The experiment's name.
    pub experiment: String,
    /// Field path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ExperimentError {
    /// `file:line:column: error: …` for the Experiment document `doc`.
    pub fn located(&self, set: &ManifestSet, doc: &serin_spec::Document) -> String {
        let file = set.files.get(doc.file).map_or("?", |f| f.path.as_str());
        let loc = doc.locs.value(&self.path);
        format!(
            "{file}:{}:{}: error: {self} (at {})",
            loc.line, loc.column, self.path
        )
    }
}

fn secs(n: Option<i32>, default: u64) -> e::Millis {
    n.map_or(default, |n| u64::try_from(n).unwrap_or(0))
        .saturating_mul(1000)
}

/// The pod template's hash: its identity, as a Rollout revision's.
pub fn template_hash(t: &m::PodTemplateSpec) -> e::RevisionHash {
    e::pod_template_hash(&serde_json::to_value(t).unwrap_or(serde_json::Value::Null))
}

/// Converts one Experiment into the engine's spec.
pub fn to_engine(x: &m::Experiment) -> Result<x::ExperimentSpec, ExperimentError> {
    let name = x.run_name().unwrap_or_default();
    let bad = |path: &str, message: String| ExperimentError {
        experiment: name.clone(),
        path: path.to_string(),
        message,
    };
    let s = &x.spec;
    if s.templates.is_empty() {
        return Err(bad("spec.templates", "experiment runs no templates".into()));
    }
    let duration = match &s.duration {
        None => None,
        Some(d) => Some(
            d.to_duration()
                .map_err(|err| bad("spec.duration", err.to_string()))?,
        ),
    };
    let mut templates = Vec::new();
    for (i, t) in s.templates.iter().enumerate() {
        let pod = t.template.as_ref().ok_or_else(|| {
            bad(
                &format!("spec.templates[{i}].template"),
                "missing required field `template`".into(),
            )
        })?;
        templates.push(x::TemplateSpec {
            name: t.name.clone(),
            replicas: u32::try_from(t.replicas.unwrap_or(1)).unwrap_or(0),
            template_hash: template_hash(pod),
        });
    }
    Ok(x::ExperimentSpec {
        name,
        templates,
        duration: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        progress_deadline: secs(
            s.progress_deadline_seconds,
            DEFAULT_PROGRESS_DEADLINE_SECONDS,
        ),
        scale_down_delay: secs(s.scale_down_delay_seconds, DEFAULT_SCALE_DOWN_DELAY_SECONDS),
        analyses: experiment_analyses(&s.analyses),
        terminate: s.terminate,
    })
}

/// What the experiment will do, in words (`serin plan`).
pub fn explain(set: &ManifestSet, spec: &x::ExperimentSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "experiment {}:", spec.name);
    for t in &spec.templates {
        let _ = writeln!(
            out,
            "  runs {} pod(s) of template {} (pod template {}), beside any rollout: no Service or weight routes to them",
            t.replicas, t.name, t.template_hash
        );
    }
    let _ = writeln!(
        out,
        "  Pending until every template's pods are available; a template with no progress for {} fails it",
        human(spec.progress_deadline)
    );
    for a in &spec.analyses {
        let took = analysis_duration(set, &a.analysis)
            .map_or_else(String::new, |d| format!(", takes at least {}", human(d)));
        let _ = writeln!(
            out,
            "  then runs analysis {} ({}){}{took}; Failed, Error or Inconclusive fails the experiment",
            a.name,
            a.analysis.templates.join(", "),
            if a.required_for_completion {
                ", required for completion"
            } else {
                ""
            }
        );
    }
    let required = spec.analyses.iter().any(|a| a.required_for_completion);
    let end = match (spec.duration, required) {
        (Some(d), true) => format!(
            "Successful {} after its pods are available, once every required analysis has succeeded",
            human(d)
        ),
        (Some(d), false) => format!("Successful {} after its pods are available", human(d)),
        (None, true) => "Successful when every required analysis has succeeded".into(),
        (None, false) => {
            "no duration and no required analysis: runs until an analysis fails or it is terminated (`serin abort experiment NAME`)".into()
        }
    };
    let _ = writeln!(out, "  ends: {end}");
    let _ = writeln!(
        out,
        "  then its analyses stop and its pods go after {}",
        human(spec.scale_down_delay)
    );
    if spec.terminate {
        let _ = writeln!(out, "  terminate: true — it ends at once");
    }
    out
}
