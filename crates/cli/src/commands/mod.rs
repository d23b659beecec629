//! One module per command group; each is a thin adapter over the services.

mod bench;
mod check;
mod cluster;
mod maintain;
mod migrate;
mod observe;
mod outbox;
mod serve;
mod stats;
mod tenant;

use std::process::ExitCode;

use atrium_services::ServiceError;

use crate::cli::{Cli, Command};
use crate::connect::{Connected, DEFAULT_POOL_SIZE, database_target};
use crate::settings::{FileSettings, declared_clusters};

/// A command that did not do its work: one line for stderr and the exit
/// code CLI.md gives (1: the work failed, 2: the command line was wrong).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub exit_code: u8,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: 2,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self {
            message: one_line(&format!("{e:#}")),
            exit_code: 1,
        }
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        match e {
            // A value the command line gave that the rules refuse.
            ServiceError::Invalid(_) => Self::usage(e.to_string()),
            // A damaged archive is work that failed, not a wrong command line.
            ServiceError::Damaged(message) => Self {
                message,
                exit_code: 1,
            },
            ServiceError::Other(e) => e.into(),
            other => Self {
                message: other.to_string(),
                exit_code: 1,
            },
        }
    }
}

/// The key that seals queued emails (see `atrium_services::operator::sealing`):
/// `ATRIUM_SECRET_KEY`, else `secret_key` in the settings file; the
/// embedded default otherwise keeps one in its data directory (made when
/// the cluster starts, see `connect`).
fn outbox_key(file: &FileSettings) -> anyhow::Result<()> {
    let given = std::env::var("ATRIUM_SECRET_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or_else(|| file.secret_key.clone());
    if let Some(hex) = given {
        use atrium_services::operator::sealing;
        sealing::use_key(sealing::key_from_hex(&hex)?);
    }
    Ok(())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub type CommandResult = Result<ExitCode, Failure>;

pub async fn run(cli: Cli) -> CommandResult {
    let file = FileSettings::load(cli.global.config.as_deref())?;
    let target = database_target(&cli.global, &file);
    outbox_key(&file)?;
    let pool_size = file.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    let declared = declared_clusters(&file, std::env::vars())?;
    if let Command::Serve(args) = cli.command {
        return serve::run(args, &file, &target, &declared, pool_size).await;
    }
    let connected = Connected::open(&target, &declared, pool_size, Default::default()).await?;
    let result = dispatch(cli.command, &connected, &file).await;
    connected.close().await?;
    result
}

async fn dispatch(command: Command, connected: &Connected, file: &FileSettings) -> CommandResult {
    match command {
        Command::Serve(_) => unreachable!("serve is run before connecting"),
        Command::Migrate(args) => migrate::run(args, connected).await,
        Command::Tenant(command) => {
            connected.ensure_current().await?;
            tenant::run(command, connected).await
        }
        Command::Stats(args) => {
            connected.ensure_current().await?;
            stats::run(args, connected).await
        }
        Command::Cluster(command) => {
            connected.ensure_current().await?;
            cluster::run(command, connected).await
        }
        Command::Check(args) => {
            connected.ensure_current().await?;
            check::run(args, connected).await
        }
        Command::Db(crate::cli::DbCommand::Roles(args)) => {
            connected.ensure_current().await?;
            // Every cluster has its own roles: a tenant's role lives where
            // its schema does.
            let mut reports = Vec::new();
            for cluster in connected.fleet().clusters() {
                let report = atrium_services::operator::ensure_roles(&cluster.admin)
                    .await
                    .map_err(|e| e.context(format!("cluster {}", cluster.name)))?;
                reports.push((cluster.name.clone(), report));
            }
            if args.json {
                let (_, home) = &reports[0];
                crate::output::print_json(home)?;
            } else {
                for (cluster, report) in &reports {
                    eprintln!(
                        "{}roles ready (created: {}); atrium_application may switch to {} tenant role(s)",
                        if reports.len() > 1 {
                            format!("cluster {cluster}: ")
                        } else {
                            String::new()
                        },
                        if report.created.is_empty() {
                            "none".to_owned()
                        } else {
                            report.created.join(", ")
                        },
                        report.tenant_roles_granted
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Top(args) => {
            connected.ensure_current().await?;
            observe::top(args, connected).await
        }
        Command::Indexes(args) => {
            connected.ensure_current().await?;
            observe::indexes(args, connected).await
        }
        Command::Connections(args) => {
            connected.ensure_current().await?;
            observe::connections(args, connected).await
        }
        Command::Queries(args) => {
            connected.ensure_current().await?;
            observe::queries(args, connected).await
        }
        Command::Capacity(args) => {
            connected.ensure_current().await?;
            observe::capacity(args, connected).await
        }
        Command::Maintain(args) => {
            connected.ensure_current().await?;
            maintain::run(args, connected, file).await
        }
        Command::Outbox(args) => {
            connected.ensure_current().await?;
            outbox::run(args, connected).await
        }
        Command::Bench(command) => bench::run(command, connected).await,
    }
}
