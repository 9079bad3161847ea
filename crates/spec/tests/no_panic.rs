//! Loading and linting never panic, whatever the bytes.

use proptest::prelude::*;
use serin_spec::{ManifestSet, lint};

fn check(bytes: &[u8]) {
    let mut set = ManifestSet::new();
    set.add_bytes("fuzz.yaml", bytes);
    for d in lint(&set) {
        assert!(d.line >= 1 && d.column >= 1);
    }
}

/// Fragments that steer random text towards manifests.
const PIECES: &[&str] = &[
    "apiVersion: argoproj.io/v1alpha1\n",
    "kind: Rollout\n",
    "kind: Service\n",
    "kind: VirtualService\n",
    "kind: AnalysisTemplate\n",
    "kind: Deployment\n",
    "apiVersion: apps/v1\n",
    "apiVersion: networking.istio.io/v1\n",
    "metadata:\n  name: x\n",
    "spec:\n",
    "  strategy:\n",
    "    canary:\n",
    "    blueGreen:\n",
    "      steps:\n",
    "        - setWeight: 150\n",
    "        - pause: {duration: 1h}\n",
    "      maxSurge: \"25%\"\n",
    "  selector: {matchLabels: {a: b}}\n",
    "  template: {spec: {containers: [{name: c}]}}\n",
    "  http: [{name: r, route: [{destination: {host: s}, weight: 50}]}]\n",
    "  metrics: [{name: m, interval: 5q, provider: {}}]\n",
    "---\n",
    "&a [*a]\n",
    "<<: *b\n",
    "key: [unclosed\n",
    "\t",
    "  ",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "|\n",
    ">\n",
    "!!str ",
    "!!int x\n",
    "? complex\n",
    "*",
    "&",
    "%YAML 1.2\n",
    "...\n",
    "\u{feff}",
    "é",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_manifest_like_text(parts in proptest::collection::vec(0..PIECES.len(), 0..40)) {
        let text: String = parts.into_iter().map(|i| PIECES[i]).collect();
        check(text.as_bytes());
    }

    #[test]
    fn mutated_seed(index in 0usize..8, cut in 0usize..2300, insert in 0..PIECES.len()) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/seed/manifests");
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let text = std::fs::read_to_string(&files[index % files.len()]).unwrap();
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) { cut -= 1; }
        let mutated = format!("{}{}{}", &text[..cut], PIECES[insert], &text[cut..]);
        check(mutated.as_bytes());
    }
}

#[test]
fn pathological_inputs() {
    check(&[0xff, 0xfe, 0x00]);
    check("[".repeat(100_000).as_bytes());
    check("a:\n".repeat(10_000).as_bytes());
    check("- ".repeat(10_000).as_bytes());
    check(b"a: &a [*a, *a]\n");
    check(b"--- !!binary\n");
    check(b"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999999999999999999}]}\n");
}
