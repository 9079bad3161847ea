//! `serin demo` and the embedded demo service `serin demo-app`.

use std::process::ExitCode;

/// Arguments of `serin demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Concurrent clients per service in the constant load.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Keep the working folder (state, logs, manifests) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// Print the web dashboard's URL, then keep everything running after the
    /// deployments until Ctrl-C, to watch and steer the rollouts in a browser.
    #[arg(long)]
    dashboard: bool,
}

/// Runs the demo and prints the results table.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SERIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let work_dir = std::env::temp_dir().join(format!("serin-demo-{}", std::process::id()));
    let started = std::time::Instant::now();
    let opts = serin_demo::DemoOptions {
        serin_exe: std::env::current_exe()?,
        work_dir: work_dir.clone(),
        concurrency: args.concurrency.max(1),
        progress: Box::new(move |line: &str| {
            progress_line(
                false,
                &format!("[{:>5.1}s] {line}", started.elapsed().as_secs_f64()),
            )
        }),
        dashboard: args.dashboard,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(serin_demo::run(opts));
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        println!("working folder kept: {}", work_dir.display());
    }
    match result {
        Ok(rows) => {
            // With --dashboard the table was printed before waiting for Ctrl-C.
            if !args.dashboard {
                println!();
                print!("{}", serin_demo::table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: demo failed: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Arguments of `serin chaos`.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Good-vs-good canaries per round.
    #[arg(long, default_value_t = 3)]
    aa: usize,
    /// Rounds: every fault and A/A canary runs once per round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Canaries of each fault per round, side by side.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    copies: u32,
    /// Requests per second through each canary's listener.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Only these faults (comma-separated names; `none` for A/A only).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Canary weight of the first step, in percent.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=99))]
    first_weight: u32,
    /// Pause of the first step (a Go duration: `30s`).
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    first_pause: std::time::Duration,
    /// Pause of the 50 % step.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    second_pause: std::time::Duration,
    /// Output: a table, or JSON with every row and the summary.
    #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Keep the working folder (state, logs, manifests) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// Also append each round's rows to this file (JSON lines) as soon as
    /// the round ends, so an interrupted run keeps its finished rounds.
    #[arg(long, value_name = "FILE")]
    rows: Option<std::path::PathBuf>,
}

fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    serin_spec::parse_go_duration(s).map_err(|e| e.to_string())
}

/// Runs the fault catalogue and prints its rows and summary.
pub fn chaos(args: &ChaosArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SERIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let all = serin_demo::chaos::catalogue();
    let faults = if args.only.is_empty() {
        all
    } else if args.only == ["none"] {
        Vec::new()
    } else {
        let mut picked = Vec::new();
        for name in &args.only {
            match all.iter().find(|f| f.name == name) {
                Some(f) => picked.push(f.clone()),
                None => {
                    let names: Vec<&str> = all.iter().map(|f| f.name).collect();
                    eprintln!(
                        "error: unknown fault {name:?}; the catalogue has: {}",
                        names.join(", ")
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        picked
    };
    if faults.is_empty() && args.aa == 0 {
        eprintln!("error: nothing to run (no fault and --aa 0)");
        return Ok(ExitCode::FAILURE);
    }
    if args.rounds == 0 {
        eprintln!("error: --rounds must be at least 1");
        return Ok(ExitCode::FAILURE);
    }
    let work_dir = std::env::temp_dir().join(format!("serin-chaos-{}", std::process::id()));
    let started = std::time::Instant::now();
    let json = args.output == "json";
    let rows_file = args.rows.clone();
    let opts = serin_demo::chaos::ChaosOptions {
        serin_exe: std::env::current_exe()?,
        work_dir: work_dir.clone(),
        faults,
        aa: args.aa,
        copies: args.copies as usize,
        rounds: args.rounds,
        rate: args.rate.max(1),
        steps: serin_demo::chaos::Steps {
            first_weight: args.first_weight,
            first_pause: args.first_pause,
            second_pause: args.second_pause,
        },
        // Progress goes to stderr with -o json so stdout stays one document.
        progress: Box::new(move |line: &str| {
            progress_line(
                json,
                &format!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64()),
            )
        }),
        on_round: Box::new(move |rows: &[serin_demo::chaos::ChaosRow]| {
            let Some(path) = &rows_file else { return };
            let mut text = String::new();
            for r in rows {
                match serde_json::to_string(r) {
                    Ok(line) => {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    Err(e) => eprintln!("warning: a row did not serialize: {e}"),
                }
            }
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
            if let Err(e) = appended {
                eprintln!("warning: cannot append rows to {}: {e}", path.display());
            }
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(serin_demo::chaos::run(opts));
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        eprintln!("working folder kept: {}", work_dir.display());
    }
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: chaos run failed: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let summary = serin_demo::chaos::summarize(&rows);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "rate": args.rate,
                "rounds": args.rounds,
                "seconds": started.elapsed().as_secs_f64(),
                "rows": rows,
                "summary": summary,
            }))?
        );
    } else {
        println!();
        print!("{}", serin_demo::chaos::table(&rows, args.rate));
        println!();
        print!("{}", serin_demo::chaos::summary_table(&summary));
    }
    Ok(if rows.iter().all(serin_demo::chaos::ChaosRow::correct) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `serin demo-app ARGS…`: the bundled demo service.
pub fn demo_app(args: &[String]) -> ExitCode {
    let argv = std::iter::once("serin-demo-app".to_string()).chain(args.iter().cloned());
    serin_demo_app::main_with_args(argv)
}

/// Writes one progress line to stderr (`to_stderr`) or stdout, ignoring a
/// closed pipe: `println!` panics when the reader has gone (`serin demo |
/// head`, a test that stopped reading), and a panic there would skip the
/// clean-up that stops the proxy and the replicas.
fn progress_line(to_stderr: bool, line: &str) {
    use std::io::Write;
    let _ = if to_stderr {
        writeln!(std::io::stderr(), "{line}")
    } else {
        writeln!(std::io::stdout(), "{line}")
    };
}
