//! Print `serin lint`-style one-line diagnostics for the given paths.
fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let set = serin_spec::ManifestSet::load_paths(&paths);
    for d in serin_spec::lint(&set) {
        println!("{d}");
    }
}
