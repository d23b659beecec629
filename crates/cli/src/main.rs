//! `atrium`: the server, the operator's commands and the benchmarks.

mod cli;
mod commands;
mod connect;
mod output;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // CLI.md: one line on stderr, exit 2.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("atrium: {message} (see atrium --help)");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATRIUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json() {
        logs.json().init();
    } else {
        logs.init();
    }
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
