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
            println!("[{:>5.1}s] {line}", started.elapsed().as_secs_f64())
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

/// `serin demo-app ARGS…`: the bundled demo service.
pub fn demo_app(args: &[String]) -> ExitCode {
    let argv = std::iter::once("serin-demo-app".to_string()).chain(args.iter().cloned());
    serin_demo_app::main_with_args(argv)
}
