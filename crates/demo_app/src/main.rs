//! The `serin-demo-app` binary: see the library docs.

fn main() -> std::process::ExitCode {
    serin_demo_app::main_with_args(std::env::args_os())
}
