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
            eprintln!("atrium: {} (see atrium --help)", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, cli::Command::Serve(_)) {
        // A command piped into `head` ends quietly when the reader goes,
        // as command-line tools do, instead of panicking on the closed pipe.
        // (The server keeps Rust's default: a client closing its socket
        // must never end it.)
        // SAFETY: no other thread exists yet, and SIG_DFL installs no
        // handler code.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATRIUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter()));
    // Colour codes only for a person at a terminal, never in a log file.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

/// Clap's message in one line: what is wrong, the missing arguments it
/// names and its "did you mean" tip, without the usage block after it.
fn usage_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut message = String::new();
    for line in rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let line = line.strip_prefix("error: ").unwrap_or(line);
        if !message.is_empty() {
            message.push_str(if line.starts_with("tip:") { "; " } else { " " });
        }
        message.push_str(line);
    }
    message
}
