//! `atrium`: the server, the operator's commands and the benchmarks.

mod cli;
mod commands;
mod connect;
mod output;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATRIUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter())),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atrium: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(commands::run(cli));
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("atrium: {}", failure.message);
            ExitCode::from(failure.exit_code)
        }
    }
}
