#![no_main]
//! Any bytes → load + lint must return diagnostics, never panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut set = serin_spec::ManifestSet::new();
    set.add_bytes("fuzz.yaml", data);
    let _ = serin_spec::lint(&set);
});
