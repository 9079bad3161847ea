//! `-o text|json|yaml`, the same on every command that prints data.

use std::io::Write;

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// For people: tables, trees, compiler-style reports.
    #[default]
    Text,
    /// Pretty-printed JSON, for scripts (`jq`).
    Json,
    /// YAML, for scripts and for reading.
    Yaml,
}

/// Prints `value` as JSON or YAML (a YAML document starts with `---`, so a
/// stream of them, as `serin get --watch -o yaml` prints, stays parseable).
/// Returns false for [`Format::Text`], which the caller renders itself.
pub fn print<T: serde::Serialize>(value: &T, format: Format) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => return Ok(false),
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        Format::Yaml => {
            let text = serde_saphyr::to_string(value)
                .map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?;
            write!(out, "---\n{text}")?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(true)
}
