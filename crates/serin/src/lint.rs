//! `serin lint`: check manifests without running anything.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serin_spec::{Diagnostic, ManifestSet, Severity};

pub use crate::output::Format;

/// Arguments of `serin lint`.
#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// Files or directories (searched recursively for *.yaml, *.yml, *.json).
    /// All of them are linted together, so references across files resolve.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// Lint the paths; exit code 1 when any error was found, else 0.
pub fn run(args: &LintArgs) -> anyhow::Result<ExitCode> {
    let set = ManifestSet::load_paths(&args.paths);
    let mut diags = serin_spec::lint(&set);
    // Conditions are compiled by the analysis engine itself, so lint and
    // runtime can never disagree about what parses.
    diags.extend(serin_analysis::lint_templates(&set));
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let mut out = std::io::stdout().lock();
    match args.output {
        // Stdout's lock is reentrant: printing while `out` is held is fine.
        Format::Json | Format::Yaml => {
            crate::output::print(&diags, args.output)?;
        }
        Format::Text => {
            let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
                .with_context_lines(1);
            for d in &diags {
                let mut s = String::new();
                let report = Report::new(d, &set);
                if handler.render_report(&mut s, &report).is_err() {
                    s = format!("{d}\n");
                }
                writeln!(
                    out,
                    "{}:{}:{}: {}[{}]",
                    d.file, d.line, d.column, d.severity, d.code
                )?;
                writeln!(out, "{s}")?;
            }
            let count = |sev| diags.iter().filter(|d| d.severity == sev).count();
            let files = set.files.len();
            writeln!(
                out,
                "{} error(s), {} warning(s), {} info in {} file(s), {} document(s)",
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info),
                files,
                set.documents.len()
            )?;
        }
    }
    out.flush()?;
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A diagnostic with its source, in miette's terms.
#[derive(Debug)]
struct Report {
    message: String,
    severity: miette::Severity,
    help: String,
    source: Option<NamedSource<String>>,
    span: SourceSpan,
    label: String,
}

impl Report {
    fn new(d: &Diagnostic, set: &ManifestSet) -> Self {
        let source = set
            .file_by_path(&d.file)
            .map(|f| NamedSource::new(f.path.clone(), f.text.clone()));
        let text_len = set.file_by_path(&d.file).map(|f| f.text.len()).unwrap_or(0);
        let offset = d.offset.min(text_len);
        let len = d.length.min(text_len - offset);
        Report {
            message: d.message.clone(),
            severity: match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
                Severity::Info => miette::Severity::Advice,
            },
            help: d.hint.clone(),
            source,
            span: SourceSpan::new(offset.into(), len),
            label: if d.path.is_empty() {
                "here".into()
            } else {
                d.path.clone()
            },
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        (!self.help.is_empty()).then(|| Box::new(&self.help) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.label.clone()),
            self.span,
        ))))
    }
}
