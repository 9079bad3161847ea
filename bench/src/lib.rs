//! Helpers shared by Serin's benchmarks.

/// Peak resident set size of this process in bytes (`VmHWM` from
/// `/proc/self/status`), or `None` where that file is not available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_reported_and_grows_with_allocation() {
        let before = super::peak_rss_bytes().expect("Linux exposes VmHWM");
        let big = vec![1u8; 64 * 1024 * 1024];
        std::hint::black_box(&big);
        let after = super::peak_rss_bytes().expect("Linux exposes VmHWM");
        assert!(after >= before + 32 * 1024 * 1024, "{before} -> {after}");
    }
}
