//! `serin`: the one thin binary. Every subcommand is a few lines that call a
//! library crate under `crates/`; no logic lives here.

use clap::Parser;

mod lint;
mod plan;
mod proxy;

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
    /// Run the traffic-splitting data plane as its own process: one listener
    /// per Service, configured through its admin API (`PUT /v1/config`);
    /// prints the admin and listen addresses; drains on SIGTERM.
    ///
    /// Example: `serin proxy --admin 127.0.0.1:7070 --config proxy.json`
    Proxy(proxy::ProxyArgs),
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
        Cli::Proxy(args) => {
            if proxy::run(&args)? != std::process::ExitCode::SUCCESS {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
