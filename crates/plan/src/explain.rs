//! `serin plan`: what a rollout will do, step by step, in words a person
//! reviewing a pull request can check.

use std::fmt::Write as _;

use serin_engine as e;
use serin_engine::replicas::{basic_canary_split, bounds, weighted};
use serin_spec::ManifestSet;

/// Formats milliseconds as `5m`, `1h30m`, `45s`.
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 || out.is_empty() {
        let _ = write!(out, "{sec}s");
    }
    out
}

/// How long an analysis over `templates` takes at least: for each metric,
/// `initialDelay + (count − 1) × interval` (the first measurement is taken at
/// once); the run lasts as long as its slowest metric. `None` when a metric
/// runs until stopped (no count) or a template is not in the set.
///
/// Arguments are put in first (the rollout's literal values, then the
/// template's defaults), as the analysis runner does; a field that still
/// depends on a run-time value, and any Job metric (it lasts as long as its
/// Job runs), make the duration unknown rather than zero. A metric with
/// neither `count` nor `interval` is measured once, as in Argo.
pub fn analysis_duration(set: &ManifestSet, a: &e::AnalysisSpec) -> Option<u64> {
    let mut longest = 0;
    for name in &a.templates {
        let bare = name.strip_prefix("cluster:").unwrap_or(name);
        let (_, t) = set
            .analysis_templates()
            .find(|(_, t)| t.metadata.name.as_deref() == Some(bare))?;
        let mut args: Vec<(&str, &str)> = a
            .args
            .iter()
            .filter_map(|arg| match &arg.value {
                e::ArgValue::Literal(v) => Some((arg.name.as_str(), v.as_str())),
                _ => None,
            })
            .collect();
        for ta in &t.spec.args {
            if let Some(v) = &ta.value
                && !args.iter().any(|(n, _)| *n == ta.name)
            {
                args.push((ta.name.as_str(), v.as_str()));
            }
        }
        let fill = |text: &str| -> Option<String> {
            let mut out = text.to_string();
            for (n, v) in &args {
                for pat in [format!("{{{{args.{n}}}}}"), format!("{{{{ args.{n} }}}}")] {
                    out = out.replace(&pat, v);
                }
            }
            (!out.contains("{{")).then_some(out)
        };
        for m in &t.spec.metrics {
            if m.provider.job.is_some() {
                return None;
            }
            let count = match &m.count {
                Some(serin_spec::IntOrString::Int(n)) => u64::try_from(*n).ok()?,
                Some(serin_spec::IntOrString::String(s)) => fill(s)?.trim().parse().ok()?,
                None if m.interval.is_none() => 1,
                // An interval without a count measures until stopped.
                None => return None,
            };
            let ms = |d: &Option<serin_spec::DurationString>| -> Option<u64> {
                match d {
                    None => Some(0),
                    Some(d) => {
                        let d = serin_spec::parse_go_duration(&fill(&d.0)?).ok()?;
                        Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    }
                }
            };
            let total = ms(&m.initial_delay)?
                .saturating_add(count.saturating_sub(1).saturating_mul(ms(&m.interval)?));
            longest = longest.max(total);
        }
    }
    Some(longest)
}

fn pods(n: u32) -> String {
    if n == 1 {
        "1 pod".into()
    } else {
        format!("{n} pods")
    }
}

fn string_match(what: &str, v: &e::StringMatch) -> String {
    match v {
        e::StringMatch::Exact(v) => format!("{what} {v}"),
        e::StringMatch::Prefix(v) => format!("{what} {v}*"),
        e::StringMatch::Regex(v) => format!("{what} ~ /{v}/"),
    }
}

/// One mirror condition in words ("method POST, path /color*").
fn mirror_match(m: &e::MirrorMatch) -> String {
    let mut c: Vec<String> = Vec::new();
    if let Some(v) = &m.method {
        c.push(string_match("method", v));
    }
    if let Some(v) = &m.path {
        c.push(string_match("path", v));
    }
    for h in &m.headers {
        c.push(string_match(&format!("{}:", h.name), &h.value));
    }
    if c.is_empty() {
        "any request".into()
    } else {
        c.join(", ")
    }
}

fn templates(a: &e::AnalysisSpec) -> String {
    a.templates.join(", ")
}

/// Explains one rollout. Returns the text and the minimum duration in ms
/// (pauses plus bounded analyses; indefinite pauses count as zero and are
/// called out).
pub fn explain(set: &ManifestSet, spec: &e::RolloutSpec) -> (String, u64) {
    let mut out = String::new();
    let mut min = 0u64;
    let r = spec.replicas;
    match &spec.strategy {
        e::Strategy::Canary(c) if c.steps.is_empty() => {
            let b = bounds(r, c.max_surge, c.max_unavailable, spec.pdb_min_available);
            let _ = writeln!(out, "rolling update of {}: {r} replicas", spec.name);
            let _ = writeln!(
                out,
                "  at most {} pods at once (maxSurge adds {}), at least {} available (maxUnavailable{} allows {} down)",
                b.max_total,
                b.max_total - r,
                b.min_available,
                if spec.pdb_min_available.is_some() {
                    " and the PodDisruptionBudget"
                } else {
                    ""
                },
                r - b.min_available
            );
            let per_wave = (b.max_total - r) + (r - b.min_available);
            if per_wave > 0 {
                let _ = writeln!(
                    out,
                    "  replaces up to {per_wave} pods per wave: about {} waves, each as long as a new pod takes to become ready",
                    r.div_ceil(per_wave)
                );
            }
        }
        e::Strategy::Canary(c) => {
            let _ = writeln!(
                out,
                "canary of {}: {r} replicas, {}",
                spec.name,
                if c.traffic_routing {
                    "traffic split by weight (traffic routing)"
                } else {
                    "traffic follows the replica ratio (no traffic routing)"
                }
            );
            let mut weight = 0;
            let mut scale: Option<e::CanaryScale> = None;
            for (i, s) in c.steps.iter().enumerate() {
                let n = i + 1;
                if let Some(bg) = &c.analysis
                    && bg.starting_step as usize == i
                {
                    let _ = writeln!(
                        out,
                        "  background analysis starts here and runs until the end: {}",
                        templates(&bg.analysis)
                    );
                }
                let mut parts = Vec::new();
                for s in s.actions() {
                    let part = match s {
                        e::Step::SetWeight(w) => {
                            weight = *w;
                            if c.traffic_routing {
                                let canary = match &scale {
                                    Some(e::CanaryScale::Replicas(n)) => *n,
                                    Some(e::CanaryScale::Weight(p)) => weighted(r, *p),
                                    _ => weighted(r, *w),
                                };
                                let stable = if c.dynamic_stable_scale {
                                    r - weighted(r, *w)
                                } else {
                                    r
                                };
                                format!(
                                    "{w} % of traffic to canary ({}), stable keeps {}",
                                    pods(canary),
                                    pods(stable)
                                )
                            } else {
                                // The engine's own split (Argo's approximation).
                                let b = bounds(
                                    r,
                                    c.max_surge,
                                    c.max_unavailable,
                                    spec.pdb_min_available,
                                );
                                let (canary, stable) = basic_canary_split(r, *w, b.max_total - r);
                                let total = canary + stable;
                                let share = if total == 0 {
                                    0.0
                                } else {
                                    f64::from(canary) * 100.0 / f64::from(total)
                                };
                                format!(
                                    "canary at {} and stable at {} (about {share:.0} % of traffic for setWeight {w})",
                                    pods(canary),
                                    pods(stable)
                                )
                            }
                        }
                        e::Step::Pause(Some(d)) => {
                            min += d;
                            format!("pause {} at {weight} %", human(*d))
                        }
                        e::Step::Pause(None) => {
                            format!("pause at {weight} % until `serin promote` (manual gate)")
                        }
                        e::Step::Analysis(a) => match analysis_duration(set, a) {
                            Some(d) => {
                                min += d;
                                format!(
                                    "analysis {} (at least {}); failure aborts",
                                    templates(a),
                                    human(d)
                                )
                            }
                            None => format!(
                                "analysis {} (duration depends on run-time values or a Job); failure aborts",
                                templates(a)
                            ),
                        },
                        e::Step::SetCanaryScale(sc) => {
                            scale = match sc {
                                e::CanaryScale::MatchTrafficWeight => None,
                                other => Some(other.clone()),
                            };
                            match sc {
                                e::CanaryScale::Replicas(n) => {
                                    format!("canary scaled to {} regardless of weight", pods(*n))
                                }
                                e::CanaryScale::Weight(p) => format!(
                                    "canary scaled to {p} % of replicas ({})",
                                    pods(weighted(r, *p))
                                ),
                                e::CanaryScale::MatchTrafficWeight => {
                                    "canary scale follows the traffic weight again".into()
                                }
                            }
                        }
                        e::Step::SetHeaderRoute(h) if h.matches.is_empty() => {
                            format!("remove header route {}", h.name)
                        }
                        e::Step::SetHeaderRoute(h) => {
                            let conds: Vec<String> = h
                                .matches
                                .iter()
                                .map(|m| match &m.value {
                                    e::StringMatch::Exact(v) => format!("{}: {v}", m.name),
                                    e::StringMatch::Prefix(v) => format!("{}: {v}*", m.name),
                                    e::StringMatch::Regex(v) => format!("{} ~ /{v}/", m.name),
                                })
                                .collect();
                            format!(
                                "requests with {} go to the canary (route {})",
                                conds.join(", "),
                                h.name
                            )
                        }
                        e::Step::SetMirrorRoute(m) if m.matches.is_empty() || m.percentage == 0 => {
                            format!("remove mirror route {}", m.name)
                        }
                        e::Step::SetMirrorRoute(m) => {
                            let conds: Vec<String> = m.matches.iter().map(mirror_match).collect();
                            format!(
                                "{} % of requests with {} are also copied to the canary, its answers discarded and not counted (route {}; bodies up to 64 KiB)",
                                m.percentage,
                                conds.join(" or "),
                                m.name
                            )
                        }
                        e::Step::Experiment(x) => {
                            let pods_of: Vec<String> = x
                                .templates
                                .iter()
                                .map(|t| {
                                    format!(
                                        "{} ({} of the {}'s template{})",
                                        t.name,
                                        pods(t.replicas),
                                        match t.spec_ref {
                                            e::SpecRef::Stable => "stable",
                                            e::SpecRef::Canary => "canary",
                                        },
                                        match t.weight {
                                            Some(w) if w > 0 => format!(", {w} % of the traffic"),
                                            _ => String::new(),
                                        }
                                    )
                                })
                                .collect();
                            let analyses: Vec<String> = x
                                .analyses
                                .iter()
                                .map(|a| {
                                    format!(
                                        "{} (template {}{})",
                                        a.name,
                                        templates(&a.analysis),
                                        if a.required_for_completion {
                                            ", required"
                                        } else {
                                            ""
                                        }
                                    )
                                })
                                .collect();
                            let until = match x.duration {
                                Some(d) => {
                                    min += d;
                                    let required = x.analyses.iter().any(|a| a.required_for_completion);
                                    format!(
                                        "for {} once they are available{}",
                                        human(d),
                                        if required {
                                            " and until the required analyses succeed"
                                        } else {
                                            ""
                                        }
                                    )
                                }
                                None if x.analyses.iter().any(|a| a.required_for_completion) => {
                                    "until the required analyses succeed".into()
                                }
                                None => "until `serin promote` (no duration, no required analysis: Argo runs it indefinitely)".into(),
                            };
                            let share: u32 = x.templates.iter().filter_map(|t| t.weight).sum();
                            let traffic = if share > 0 {
                                format!(
                                    "taking {share} % of the traffic from the stable while its pods are available"
                                )
                            } else {
                                "without traffic".to_string()
                            };
                            format!(
                                "experiment at {weight} %: runs {} beside the rollout, {traffic}, {until}{}; a failed analysis aborts, success goes on and removes its pods",
                                pods_of.join(" and "),
                                if analyses.is_empty() {
                                    String::new()
                                } else {
                                    format!(", with analyses {}", analyses.join(", "))
                                }
                            )
                        }
                        // Plan never nests combined steps.
                        e::Step::Combined(_) => continue,
                    };
                    parts.push(part);
                }
                let line = parts.join("; and ");
                let _ = writeln!(out, "  step {n}: {line}");
            }
            let delay = if c.traffic_routing {
                format!(" after {}", human(c.scale_down_delay))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  then: the canary becomes stable with {}; the old revision is scaled down{delay}",
                pods(r)
            );
        }
        e::Strategy::BlueGreen(b) => {
            // Numbered as printed: optional phases take no number.
            let mut n = 0;
            let mut next = || {
                n += 1;
                n
            };
            let preview = b.preview_replica_count.unwrap_or(r);
            let _ = writeln!(out, "blue-green of {}: {r} replicas", spec.name);
            let _ = writeln!(
                out,
                "  {}. the new revision starts with {} behind the preview service; active keeps serving",
                next(),
                pods(preview)
            );
            if let Some(a) = &b.pre_promotion_analysis {
                let d = analysis_duration(set, a);
                min += d.unwrap_or(0);
                let _ = writeln!(
                    out,
                    "  {}. pre-promotion analysis {}{}; failure aborts before any user sees the new revision",
                    next(),
                    templates(a),
                    d.map(|d| format!(" (at least {})", human(d)))
                        .unwrap_or_default()
                );
            }
            match (b.auto_promotion_enabled, b.auto_promotion_after) {
                (false, _) => {
                    let _ = writeln!(
                        out,
                        "  {}. waits for `serin promote` (autoPromotionEnabled: false)",
                        next()
                    );
                }
                (true, Some(d)) => {
                    min += d;
                    let _ = writeln!(
                        out,
                        "  {}. promotes automatically after {}",
                        next(),
                        human(d)
                    );
                }
                (true, None) => {
                    let _ = writeln!(out, "  {}. promotes as soon as it is ready", next());
                }
            }
            let _ = writeln!(
                out,
                "  {}. scales to {} and switches the active service in one step",
                next(),
                pods(r)
            );
            if let Some(a) = &b.post_promotion_analysis {
                let d = analysis_duration(set, a);
                min += d.unwrap_or(0);
                let _ = writeln!(
                    out,
                    "  {}. post-promotion analysis {}{}; failure switches back to the old revision",
                    next(),
                    templates(a),
                    d.map(|d| format!(" (at least {})", human(d)))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(
                out,
                "  then: the old revision stays up {} for a fast switch back, then is scaled down",
                human(b.scale_down_delay)
            );
        }
    }
    let _ = writeln!(out, "  minimum duration: {}", human(min));
    (out, min)
}
