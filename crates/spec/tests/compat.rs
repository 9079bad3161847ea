//! Every Argo Rollouts example in shared/compat, linted alone: accepted, or
//! rejected with located, specific diagnostics. The table is the expected
//! outcome per file; a file added to or removed from the corpus fails the
//! test until the table says what should happen to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serin_spec::{ManifestSet, Severity, lint};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples"
);

/// file → every diagnostic (code, line, column). `not-supported` errors are
/// what `serin up` refuses; experiment template weights route through the
/// proxy; `runs-indefinitely` warns of an experiment (a step's or Argo's
/// Experiment kind) that, as in Argo, only ends when promoted past or
/// terminated;
/// every traffic router maps onto Serin's proxy and lints clean. Other errors are only references to
/// Services / templates that live in *other* files of the corpus (Argo's
/// controller rejects those too: "service not found", "AnalysisTemplate not
/// found") and one template that kubectl itself cannot parse.
/// (code, line, column).
type Expected = &'static [(&'static str, u32, u32)];

const TABLE: &[(&str, Expected)] = &[
    ("ambassador/echo-mapping.yaml", &[("unmanaged-kind", 2, 8)]),
    ("ambassador/echo-service.yaml", &[]),
    ("ambassador/resolver.yaml", &[("unmanaged-kind", 2, 7)]),
    (
        "ambassador/rollout.yaml",
        &[("missing-service", 25, 22), ("missing-service", 26, 22)],
    ),
    ("analysis-templates.yaml", &[]),
    (
        "apisix/rollout.yaml",
        &[("missing-service", 9, 22), ("missing-service", 10, 22)],
    ),
    ("apisix/route.yaml", &[("unmanaged-kind", 2, 7)]),
    ("apisix/services.yaml", &[]),
    (
        "appmesh/canary-rollout.yaml",
        &[("missing-service", 46, 22), ("missing-service", 47, 22)],
    ),
    (
        "appmesh/canary-service.yaml",
        &[
            ("unmanaged-kind", 2, 7),
            ("unmanaged-kind", 12, 7),
            ("unmanaged-kind", 71, 7),
            ("unmanaged-kind", 83, 7),
            ("unmanaged-kind", 108, 7),
            ("unmanaged-kind", 128, 7),
            ("unmanaged-kind", 148, 7),
        ],
    ),
    ("cluster-analysis-templates.yaml", &[]),
    (
        "experiment-with-analysis.yaml",
        &[
            ("runs-indefinitely", 12, 3),
            ("missing-template", 41, 19),
            ("missing-template", 43, 19),
        ],
    ),
    ("istio/istio-mirror.yaml", &[("unmanaged-kind", 104, 7)]),
    (
        "istio/istio-subset-split.yaml",
        &[("unmanaged-kind", 37, 7), ("unsupported", 65, 13)],
    ),
    ("notifications/configmap.yaml", &[("unmanaged-kind", 2, 7)]),
    (
        "notifications/kustomization.yaml",
        &[("unmanaged-kind", 2, 7)],
    ),
    (
        "notifications/rollout-canary.yaml",
        &[("unmanaged-kind", 19, 7)],
    ),
    (
        "rollout-analysis-step.yaml",
        &[("missing-template", 37, 27), ("missing-template", 38, 27)],
    ),
    (
        "rollout-background-analysis.yaml",
        &[("missing-template", 34, 25)],
    ),
    (
        "rollout-baseline-vs-canary.yaml",
        &[("runs-indefinitely", 30, 11)],
    ),
    ("rollout-bluegreen.yaml", &[]),
    (
        "rollout-canary-preview.yaml",
        &[("runs-indefinitely", 31, 11)],
    ),
    ("rollout-canary.yaml", &[]),
    (
        "rollout-experiment-step.yaml",
        &[("runs-indefinitely", 37, 11), ("missing-template", 44, 27)],
    ),
    ("rollout-rolling-update.yaml", &[]),
    ("rollout-secret.yaml", &[("unmanaged-kind", 37, 7)]),
    ("rollout-template-ref.yaml", &[]),
    ("traffic-management/job.yaml", &[]),
    (
        "traffic-management/rollout-linkerd.yaml",
        &[("yaml-complex-key", 101, 38)],
    ),
    (
        "traffic-routing-experiment-step/istio-host-split-experiment-step.yaml",
        &[("runs-indefinitely", 65, 13)],
    ),
    (
        "traffic-routing-experiment-step/rollout-alb-experiment-step.yaml",
        &[("unmanaged-kind", 44, 7), ("runs-indefinitely", 97, 13)],
    ),
    (
        "traffic-routing-experiment-step/rollout-smi-experiment-step.yaml",
        &[("unmanaged-kind", 32, 7), ("runs-indefinitely", 67, 11)],
    ),
    ("workload-ref/workload-ref.yaml", &[]),
];

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("compat corpus is readable") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            corpus_files(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
}

#[test]
fn every_compat_example_is_accepted_or_rejected_with_located_diagnostics() {
    let root = Path::new(DIR);
    let mut files = Vec::new();
    corpus_files(root, &mut files);
    let on_disk: BTreeSet<String> = files
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    let in_table: BTreeSet<String> = TABLE.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(on_disk, in_table, "the table covers exactly the corpus");

    let mut mismatches = Vec::new();
    for (rel, want) in TABLE {
        let set = ManifestSet::load_paths(&[root.join(rel)]);
        assert!(
            !set.documents.is_empty() || !set.diagnostics.is_empty(),
            "{rel}: nothing loaded"
        );
        let diags = lint(&set);
        for d in &diags {
            // Located and specific: a real position, a field path, a message and a hint.
            assert!(d.line >= 1 && d.column >= 1, "{rel}: unlocated {d}");
            assert!(d.file.ends_with(rel), "{rel}: wrong file in {d}");
            assert!(
                !d.message.is_empty() && !d.hint.is_empty(),
                "{rel}: vague {d}"
            );
            if d.severity == Severity::Error {
                assert!(!d.path.is_empty(), "{rel}: error without a field path: {d}");
            }
        }
        let got: Vec<(String, u32, u32)> = diags
            .iter()
            .map(|d| (d.code.clone(), d.line, d.column))
            .collect();
        let want: Vec<(String, u32, u32)> = want
            .iter()
            .map(|(c, l, k)| (c.to_string(), *l, *k))
            .collect();
        if got != want {
            mismatches.push(format!("{rel}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Linted together, the cross-file references of each example directory resolve.
#[test]
fn example_directories_resolve_their_references_together() {
    for dir in ["ambassador", "apisix", "appmesh"] {
        let set = ManifestSet::load_paths(&[Path::new(DIR).join(dir)]);
        let errors: Vec<String> = lint(&set)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{dir}: {errors:?}");
    }
    let root = Path::new(DIR);
    let set = ManifestSet::load_paths(&[
        root.join("rollout-analysis-step.yaml"),
        root.join("rollout-background-analysis.yaml"),
        root.join("analysis-templates.yaml"),
        root.join("cluster-analysis-templates.yaml"),
    ]);
    let errors: Vec<String> = lint(&set)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// The corpus's Rollouts load into the typed model with Argo's values.
#[test]
fn compat_rollouts_load_typed() {
    let set = ManifestSet::load_paths(&[Path::new(DIR).join("rollout-bluegreen.yaml")]);
    let (_, r) = set.rollouts().next().expect("a Rollout");
    let bg = r.spec.strategy.blue_green.as_ref().expect("blueGreen");
    assert!(!bg.active_service.is_empty());
    assert!(r.spec.template.is_some());
    let set = ManifestSet::load_paths(&[Path::new(DIR).join("analysis-templates.yaml")]);
    assert!(set.analysis_templates().count() >= 1);
    for (_, t) in set.analysis_templates() {
        assert!(!t.spec.metrics.is_empty());
    }
}
