//! `serin`: the one thin binary. Every subcommand is a few lines that call a
//! library crate under `crates/`; no logic lives here.

use clap::Parser;

mod lint;
mod plan;

/// Serin: progressive delivery on one machine.
#[derive(Parser, Debug)]
#[command(name = "serin", version, about)]
enum Cli {
    /// Check manifests (files or directories, linted together) and report
    /// located errors; exit code 1 if any error.
    ///
    /// Example: `serin lint manifests/ -o json`
    Lint(lint::LintArgs),
    /// Explain what each rollout will do, step by step, with replica counts,
    /// weights and the minimum duration; `--simulate` also runs it against
    /// the engine with a fake clock.
    ///
    /// Example: `serin plan ../shared/seed/manifests/canary-rollout.yaml --simulate`
    Plan(plan::PlanArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli {
        Cli::Lint(args) => {
            if lint::run(&args)? != std::process::ExitCode::SUCCESS {
                std::process::exit(1);
            }
            Ok(())
        }
        Cli::Plan(args) => {
            if plan::run(&args)? != std::process::ExitCode::SUCCESS {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
