//! `serin`: the one thin binary. Every subcommand is a few lines that call a
//! library crate under `crates/`; no logic lives here.

use clap::Parser;

mod controller;
mod demo;
mod experiments;
mod flag_rollouts;
mod flags;
mod lint;
mod ops;
mod output;
mod plan;
mod progress;
mod proxy;
mod up;

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
    /// Run Serin's whole job on this machine: the bundled demo service under
    /// constant load through a rolling update, a blue-green switch, a good
    /// canary and a bad canary that is aborted; ends with a results table.
    ///
    /// Example: `serin demo`
    Demo(demo::DemoArgs),
    /// Run the fault catalogue: each bad release (crash loop, 5xx, latency,
    /// OOM, readiness flapping, slow start, a partial outage) as a canary of
    /// a good version under constant load through the real proxy, judged by
    /// the analysis, next to good-vs-good (A/A) canaries; one row per canary.
    /// Exit 1 when a fault was not aborted or an A/A canary was.
    ///
    /// Example: `serin chaos`, `serin chaos --rounds 20 --aa 10 -o json`
    Chaos(demo::ChaosArgs),
    /// Start the control plane for the manifests under PATH: replicas as
    /// local processes behind Serin's proxy; an edit to a file is a deploy.
    ///
    /// Example: `serin up -c serin.yaml manifests/`
    Up(up::UpArgs),
    /// Run the rollout engine on Kubernetes: watch Argo Rollouts
    /// (`argoproj.io/v1alpha1`) and carry them out with ReplicaSets, Service
    /// selectors and Istio VirtualServices (docs/kubernetes.md). Argo
    /// `Experiment` objects are not run here (only under `serin up`).
    ///
    /// Example: `serin controller --context prod -n shop`
    Controller(controller::ControllerArgs),
    /// Validate a manifest against the running set and apply it (nothing
    /// changes if it has errors).
    ///
    /// Example: `serin apply -f canary.yaml`
    Apply(ops::ApplyArgs),
    /// Exit 0 when the rollout is Healthy, 1 when Degraded, 2 on timeout
    /// (3 when still progressing without --watch, 4 at a manual gate with
    /// --until-gate). On a terminal, `--watch` asks whether to promote when
    /// the rollout waits at a manual gate (`--no-prompt` to never ask).
    ///
    /// Example: `serin status frontend-app --watch --timeout 10m`
    Status(ops::StatusArgs),
    /// The seed's deployment metrics table computed from history.
    ///
    /// Example: `serin report --since 30d`
    Report(ops::ReportArgs),
    /// The emergency playbook: abort or undo, wait for 100 % stable traffic,
    /// kill-switch experimental flags, notify — each step timed; idempotent.
    ///
    /// Example: `SERIN_ADMIN_TOKEN=… serin emergency-rollback frontend-app`
    EmergencyRollback(ops::EmergencyArgs),
    /// Create an API token (viewer, deployer or admin); printed once.
    ///
    /// Example: `serin token ci-bot --role deployer`
    Token(ops::TokenArgs),
    /// Print a shell completion script.
    ///
    /// Example: `serin completions bash > /etc/bash_completion.d/serin`
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Set resources of a rollout (`set image NAME CONTAINER=IMAGE`).
    #[command(subcommand)]
    Set(SetCommand),
    /// Show the last lines of a rollout's pod logs.
    ///
    /// Example: `serin logs demo-canary --tail 20`
    Logs(ops::LogsArgs),
    /// Stop the replicas and the proxy that `serin up` left running.
    ///
    /// Example: `serin down --state-dir .serin`
    Down(up::DownArgs),
    /// Show rollouts: strategy, step, weights, revisions and their pods; or
    /// FlagRollouts: phase, step, percentage, each step's analysis; or Argo
    /// Experiments: phase, templates with their pods, analysis runs.
    ///
    /// Example: `serin get demo-canary -o json`, `serin get flagrollout new-payment-processor`, `serin get experiments`
    Get(ops::GetArgs),
    /// Leave the current pause (or `--full`: skip all remaining steps).
    ///
    /// Example: `serin promote frontend-app --full`
    Promote(ops::OpArgs),
    /// Send all traffic back to the stable revision and scale the new one
    /// down; `abort flagrollout NAME` sets the flag back to 0 %; `abort
    /// experiment NAME` terminates an Experiment (Argo's terminate).
    ///
    /// Example: `serin abort frontend-app`, `serin abort flagrollout new-payment-processor`, `serin abort experiment ab-test`
    Abort(ops::OpArgs),
    /// Start an aborted rollout (or `flagrollout NAME`) again from its first step.
    ///
    /// Example: `serin retry frontend-app`, `serin retry flagrollout new-payment-processor`
    Retry(ops::OpArgs),
    /// Pause a rollout (steps stop advancing).
    ///
    /// Example: `serin pause frontend-app`
    Pause(ops::OpArgs),
    /// Resume a paused rollout.
    ///
    /// Example: `serin resume frontend-app`
    Resume(ops::OpArgs),
    /// Restart every pod of a rollout (Argo's `restart`), one
    /// replacement per `maxSurge` at a time: each replacement is started
    /// first and the old pod goes only once it is available, so capacity
    /// never drops — not even with one replica. No steps, no traffic change;
    /// a new revision cancels it. `--in` schedules it.
    ///
    /// Example: `serin restart frontend-app --in 30s`
    Restart(ops::RestartArgs),
    /// Roll back to the previous revision (or `--to-revision N`).
    ///
    /// Example: `serin undo frontend-app --to-revision 2`
    Undo(ops::OpArgs),
    /// Feature flags: `serve` runs the flag server alone (OFREP, management
    /// API, SSE change stream) over a flagd file or a store.
    ///
    /// Example: `serin flags serve --file flags.yaml --listen 127.0.0.1:8016`
    Flags(flags::FlagsArgs),
    /// The bundled demo service (what `serin demo` runs as replicas).
    #[command(hide = true, disable_help_flag = true)]
    DemoApp {
        /// Arguments for the demo service.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `serin set …`.
#[derive(clap::Subcommand, Debug)]
enum SetCommand {
    /// Change a container image in the manifest that defines the rollout and
    /// apply it (a new revision, rolled out by the rollout's strategy).
    ///
    /// Example: `serin set image frontend-app frontend-app=myregistry/frontend-app:v2`
    Image(ops::SetImageArgs),
}

fn exit(code: std::process::ExitCode) -> anyhow::Result<()> {
    if code != std::process::ExitCode::SUCCESS {
        std::process::exit(1);
    }
    Ok(())
}

/// mimalloc: fewer instructions per allocation than glibc's malloc on the request
/// paths (proxy, OFREP); see bench/README.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Cli::Demo(args) => exit(demo::run(&args)?),
        Cli::Chaos(args) => exit(demo::chaos(&args)?),
        Cli::Up(args) => exit(up::run(&args)?),
        Cli::Controller(args) => exit(controller::run(&args)?),
        Cli::Down(args) => exit(up::down(&args)?),
        Cli::Get(args) => exit(ops::get(&args)?),
        Cli::Apply(args) => exit(ops::apply(&args)?),
        Cli::Logs(args) => exit(ops::logs(&args)?),
        Cli::Status(args) => match ops::status(&args)? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Cli::Report(args) => exit(ops::report(&args)?),
        Cli::Token(args) => exit(ops::token(&args)?),
        Cli::Set(SetCommand::Image(args)) => exit(ops::set_image(&args)?),
        Cli::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "serin",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Cli::EmergencyRollback(args) => exit(ops::emergency_rollback(&args)?),
        Cli::Promote(args) => exit(ops::operate("promote", &args)?),
        Cli::Abort(args) => exit(ops::operate("abort", &args)?),
        Cli::Retry(args) => exit(ops::operate("retry", &args)?),
        Cli::Pause(args) => exit(ops::operate("pause", &args)?),
        Cli::Resume(args) => exit(ops::operate("resume", &args)?),
        Cli::Undo(args) => exit(ops::operate("undo", &args)?),
        Cli::Restart(args) => exit(ops::restart(&args)?),
        Cli::Flags(args) => exit(flags::run(&args)?),
        Cli::DemoApp { args } => exit(demo::demo_app(&args)),
    }
}
