//! Located lint findings for analysis templates: every `successCondition`
//! and `failureCondition` is compiled when the manifests are loaded, so a bad
//! expression is a `file:line:column` error before any rollout starts; every
//! `plugin: serin.dev/judge` block is checked the same way (at the field that
//! is wrong).

use serin_spec::{Diagnostic, ManifestSet, Resource, Severity};

use crate::condition::{ConditionError, check_condition};

/// Checks every condition of every (Cluster)AnalysisTemplate in `set`.
pub fn lint_templates(set: &ManifestSet) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for doc in &set.documents {
        let Resource::AnalysisTemplate(t) = &doc.resource else {
            continue;
        };
        let file = set
            .files
            .get(doc.file)
            .map(|f| f.path.clone())
            .unwrap_or_default();
        for (i, m) in t.spec.metrics.iter().enumerate() {
            if let Some(block) = m
                .provider
                .plugin
                .as_ref()
                .and_then(|p| p.get(crate::providers::judge::PLUGIN))
                && let Err(e) = crate::providers::judge::parse(block)
            {
                let mut path = serin_spec::yaml::join_key(
                    &format!("spec.metrics[{i}].provider.plugin"),
                    crate::providers::judge::PLUGIN,
                );
                for seg in e.path.split('.').filter(|s| !s.is_empty()) {
                    // `headers[2]`: a key, then an index.
                    match seg
                        .strip_suffix(']')
                        .and_then(|s| s.split_once('['))
                        .and_then(|(k, n)| Some((k, n.parse::<usize>().ok()?)))
                    {
                        Some((k, n)) => {
                            path = serin_spec::yaml::join_key(&path, k);
                            path = serin_spec::yaml::join_index(&path, n);
                        }
                        None => path = serin_spec::yaml::join_key(&path, seg),
                    }
                }
                let loc = doc.locs.value(&path);
                out.push(Diagnostic {
                    severity: Severity::Error,
                    code: "bad-judge".into(),
                    file: file.clone(),
                    line: loc.line,
                    column: loc.column,
                    path,
                    message: e.to_string(),
                    hint: "see docs/judge.md \"On Prometheus\": address, judge (error-rate | latency), canary and baseline series selectors (requests + errors, or buckets)".into(),
                    offset: loc.offset,
                    length: loc.len.max(1),
                });
            }
            for (field, expr) in [
                ("successCondition", &m.success_condition),
                ("failureCondition", &m.failure_condition),
            ] {
                let Some(expr) = expr else { continue };
                let Err(err) = check_condition(expr) else {
                    continue;
                };
                let path = format!("spec.metrics[{i}].{field}");
                let mut loc = doc.locs.value(&path);
                // A parse error points inside the expression when it sits on
                // the field's own line (a plain or quoted scalar).
                if let ConditionError::Parse {
                    line: 1, column, ..
                } = &err
                {
                    let text = set
                        .files
                        .get(doc.file)
                        .map(|f| f.text.as_str())
                        .unwrap_or("");
                    let quoted = matches!(text.as_bytes().get(loc.offset), Some(b'"' | b'\''));
                    loc.column += column.saturating_sub(1) + u32::from(quoted);
                    loc.offset += usize::try_from(column.saturating_sub(1)).unwrap_or(0)
                        + usize::from(quoted);
                    loc.len = 1;
                }
                out.push(Diagnostic {
                    severity: Severity::Error,
                    code: "bad-condition".into(),
                    file: file.clone(),
                    line: loc.line,
                    column: loc.column,
                    path,
                    message: err.to_string(),
                    hint: "conditions are CEL with Argo's helpers len, isNaN, isInf, default, asInt, asFloat; e.g. `len(result) > 0 && result[0] >= 0.95`".into(),
                    offset: loc.offset,
                    length: loc.len.max(1),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_condition_is_a_located_error_that_does_not_echo_it() {
        let huge = format!("result[0] >= 0.95{}", " && true".repeat(250_000));
        let nested = format!("{}true{}", "(".repeat(200), ")".repeat(200));
        let mut set = ManifestSet::new();
        set.add_source(
            "t.yaml",
            &format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: t\nspec:\n  metrics:\n    - name: big\n      successCondition: \"{huge}\"\n      provider:\n        web:\n          url: http://x\n    - name: deep\n      successCondition: \"{nested}\"\n      provider:\n        web:\n          url: http://x\n"
            ),
        );
        let d = lint_templates(&set);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(
            (d[0].line, d[0].path.as_str()),
            (8, "spec.metrics[0].successCondition")
        );
        assert!(d[0].message.contains("bytes long"), "{}", d[0].message);
        assert!(d[0].message.len() < 200, "the expression is not echoed");
        assert_eq!(
            (d[1].line, d[1].path.as_str()),
            (13, "spec.metrics[1].successCondition")
        );
        assert!(d[1].message.contains("levels deep"), "{}", d[1].message);
        // Within the limits still compiles.
        // Within the limits still compiles (16 levels overflowed the 2 MiB
        // stack of a test thread in a debug build: the limit is below that).
        let depth = crate::condition::MAX_CONDITION_DEPTH;
        let ok = format!("{}true{}", "(".repeat(depth), ")".repeat(depth));
        assert!(check_condition(&ok).is_ok());
        let deeper = format!("({ok})");
        assert!(matches!(
            check_condition(&deeper),
            Err(crate::condition::ConditionError::TooLarge { .. })
        ));
        let long = format!("result[0] >= 0.95{}", " && true".repeat(900));
        assert!(long.len() <= crate::condition::MAX_CONDITION_BYTES);
        assert!(check_condition(&long).is_ok());
    }

    #[test]
    fn a_malformed_judge_block_is_located_at_its_field() {
        let mut set = ManifestSet::new();
        set.add_source(
            "t.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: t\nspec:\n  args:\n    - name: h\n  metrics:\n    - name: errors\n      interval: 30s\n      provider:\n        plugin:\n          serin.dev/judge:\n            address: http://prometheus:9090\n            judge: error-rate\n            canary:\n              requests: req{h=\"{{args.h}}\"}\n              errors: sum(rate(req{h=\"{{args.h}}\",code=~\"5..\"}[1m]))\n            baseline:\n              requests: req{h=\"s\"}\n              errors: req{h=\"s\",code=~\"5..\"}\n    - name: ok\n      interval: 30s\n      provider:\n        plugin:\n          serin.dev/judge:\n            address: http://prometheus:9090\n            judge: latency\n            canary: {buckets: 'lat_bucket{h=\"{{args.h}}\"}'}\n            baseline: {buckets: 'lat_bucket{h=\"s\"}'}\n            params: {minEffect: 0.1}\n",
        );
        let d = lint_templates(&set);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].code, "bad-judge");
        assert_eq!(
            d[0].path,
            "spec.metrics[0].provider.plugin[\"serin.dev/judge\"].canary.errors"
        );
        assert_eq!((d[0].line, d[0].column), (18, 23), "{:?}", d[0]);
        assert!(
            d[0].message.contains("not a series selector"),
            "{}",
            d[0].message
        );
        // The manifest lint takes the judge as a provider; any other plugin
        // stays unsupported.
        let spec = serin_spec::lint(&set);
        assert!(spec.iter().all(|d| d.code != "unsupported"), "{spec:#?}");
        let mut other = ManifestSet::new();
        other.add_source(
            "o.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: o\nspec:\n  metrics:\n    - name: m\n      provider:\n        plugin:\n          argoproj-labs/sample: {}\n",
        );
        assert!(
            serin_spec::lint(&other)
                .iter()
                .any(|d| d.code == "unsupported" && d.path.ends_with("provider.plugin")),
            "{:#?}",
            serin_spec::lint(&other)
        );
    }

    #[test]
    fn a_bad_condition_is_located_in_its_file() {
        let mut set = ManifestSet::new();
        set.add_source(
            "t.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: t\nspec:\n  metrics:\n    - name: ok\n      successCondition: result[0] >= 0.95\n      provider:\n        web:\n          url: http://x\n    - name: bad\n      successCondition: result[0] >=\n      provider:\n        web:\n          url: http://x\n",
        );
        let d = lint_templates(&set);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "bad-condition");
        assert_eq!(d[0].path, "spec.metrics[1].successCondition");
        assert_eq!(d[0].line, 13);
        assert!(d[0].column >= 25, "{:?}", d[0]);
    }

    #[test]
    fn the_seed_templates_compile() {
        let set = ManifestSet::load_paths(&[concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/seed/manifests"
        )]);
        assert!(lint_templates(&set).is_empty());
    }
}
