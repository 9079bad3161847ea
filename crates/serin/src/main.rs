//! `serin`: the one thin binary. Every subcommand is a few lines that call a
//! library crate under `crates/`; no logic lives here.

use clap::Parser;

/// Serin: progressive delivery on one machine.
#[derive(Parser, Debug)]
#[command(name = "serin", version, about)]
enum Cli {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli {}
}
