//! `serin plan`: explain (and optionally simulate) what rollouts will do.

use std::path::PathBuf;
use std::process::ExitCode;

use serin_spec::{ManifestSet, Severity};

/// Arguments of `serin plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Manifest files or directories (loaded together, like `serin lint`).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also run the rollout in the simulator (fake clock, fake pods) and print
    /// its timeline; fails if the engine breaks an invariant.
    #[arg(long)]
    simulate: bool,
    /// Simulated time for a new pod to become ready (Go duration).
    #[arg(long, default_value = "5s")]
    ready_after: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Format,
}

use crate::output::Format;

/// Runs `serin plan`.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let ready_after = serin_spec::parse_go_duration(&args.ready_after)
        .map_err(|e| anyhow::anyhow!("--ready-after {:?}: {e}", args.ready_after))?;
    let ready_after = u64::try_from(ready_after.as_millis()).unwrap_or(u64::MAX);
    let set = ManifestSet::load_paths(&args.paths);
    let errors = serin_spec::lint(&set)
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        eprintln!(
            "note: these manifests have {errors} lint error(s); run `serin lint` for details. Explaining anyway."
        );
    }
    let mut json = Vec::new();
    let mut failed = false;
    let mut any = false;
    for (doc, r) in set.rollouts() {
        any = true;
        let spec = match serin_plan::to_engine(&set, r) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}", e.located(&set, doc));
                failed = true;
                continue;
            }
        };
        let (text, min) = serin_plan::explain(&set, &spec);
        let mut sim_json = serde_json::Value::Null;
        let mut sim_text = String::new();
        if args.simulate {
            let analysis_takes = longest_analysis(&set, &spec).unwrap_or(60_000);
            match serin_plan::simulate::simulate(&spec, ready_after, analysis_takes) {
                Ok(s) => {
                    sim_text = format!(
                        "  simulated (pods ready after {}, analyses pass after {}):\n{}  healthy after {} ({} reconciles, no invariant broken)\n",
                        serin_plan::human(ready_after),
                        serin_plan::human(analysis_takes),
                        s.timeline,
                        serin_plan::human(s.duration),
                        s.reconciles
                    );
                    sim_json = serde_json::json!({"durationMs": s.duration, "reconciles": s.reconciles, "timeline": s.timeline});
                }
                Err(v) => {
                    eprintln!(
                        "error: rollout {}: engine invariant broken in simulation: {v}",
                        spec.name
                    );
                    failed = true;
                }
            }
        }
        match args.output {
            Format::Text => print!("{text}{sim_text}"),
            Format::Json | Format::Yaml => json.push(serde_json::json!({
                "name": spec.name,
                "engineSpec": spec,
                "explanation": text,
                "minimumDurationMs": min,
                "simulation": sim_json,
            })),
        }
    }
    for (doc, x) in set.experiments() {
        any = true;
        let spec = match serin_plan::experiment::to_engine(x) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}", e.located(&set, doc));
                failed = true;
                continue;
            }
        };
        let text = serin_plan::experiment::explain(&set, &spec);
        match args.output {
            Format::Text => print!("{text}"),
            Format::Json | Format::Yaml => json.push(serde_json::json!({
                "name": spec.name,
                "kind": "Experiment",
                "engineSpec": spec,
                "explanation": text,
            })),
        }
    }
    crate::output::print(&json, args.output)?;
    if !any {
        eprintln!(
            "error: no Rollout, RollingUpdate Deployment or Experiment found in the given paths"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn longest_analysis(set: &ManifestSet, spec: &serin_engine::RolloutSpec) -> Option<u64> {
    let mut specs = Vec::new();
    match &spec.strategy {
        serin_engine::Strategy::Canary(c) => {
            for s in &c.steps {
                if let serin_engine::Step::Analysis(a) = s {
                    specs.push(a);
                }
            }
        }
        serin_engine::Strategy::BlueGreen(b) => {
            specs.extend(b.pre_promotion_analysis.iter());
            specs.extend(b.post_promotion_analysis.iter());
        }
    }
    specs
        .iter()
        .filter_map(|a| serin_plan::explain::analysis_duration(set, a))
        .max()
}
