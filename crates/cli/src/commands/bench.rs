use std::process::ExitCode;

use atrium_bench::api::ApiBench;
use atrium_bench::archive::ArchiveBench;
use atrium_bench::import::ImportBench;
use atrium_bench::migrate::MigrateBench;
use atrium_bench::noisy::NoisyBench;
use atrium_bench::provision::ProvisionBench;
use atrium_bench::scale::FleetBench;

use super::CommandResult;
use crate::cli::BenchCommand;
use crate::connect::Connected;

/// Benchmarks create (and drop) scratch databases on the server, so they
/// need the admin connection.
pub async fn run(command: BenchCommand, connected: &Connected) -> CommandResult {
    let server = connected.admin().database();
    let report = match command {
        BenchCommand::Provision(args) => {
            atrium_bench::provision::run(
                server,
                &ProvisionBench {
                    existing: args.existing,
                    samples: args.samples.max(1),
                },
            )
            .await?
        }
        BenchCommand::Migrate(args) => {
            atrium_bench::migrate::run(
                server,
                &MigrateBench {
                    tenants: args.tenants.max(1),
                },
            )
            .await?
        }
        BenchCommand::Api(args) => {
            let mut tenant_counts = args.tenants;
            tenant_counts.sort_unstable();
            tenant_counts.dedup();
            tenant_counts.retain(|n| *n > 0);
            atrium_bench::api::run(
                server,
                &ApiBench {
                    tenant_counts,
                    clients: args.clients.max(1),
                    seconds: args.seconds.max(1),
                    session_max_tenants: args
                        .connection_max_tenants
                        .map_or(atrium_store::CONNECTION_MAX_TENANTS, |n| n as usize),
                    rounds: args.rounds as usize,
                },
            )
            .await?
        }
        BenchCommand::Fleet(args) => {
            atrium_bench::scale::run(
                server,
                &FleetBench {
                    tenants: args.tenants,
                    clients: args.clients.max(1),
                    seconds: args.seconds.max(1),
                    jobs: args.jobs.max(1),
                },
            )
            .await?
        }
        BenchCommand::Soak(args) => {
            atrium_bench::soak::run(
                server,
                &atrium_bench::soak::SoakBench {
                    clients: args.clients.max(1),
                    seconds: args.seconds.max(10),
                },
            )
            .await?
        }
        BenchCommand::Noisy(args) => {
            atrium_bench::noisy::run(
                server,
                &NoisyBench {
                    flood_clients: args.flood_clients.max(1),
                    seconds: args.seconds.max(1),
                },
            )
            .await?
        }
        BenchCommand::Archive(args) => {
            atrium_bench::archive::run(
                server,
                &ArchiveBench {
                    contacts: args.contacts.max(1),
                },
            )
            .await?
        }
        BenchCommand::Ui(args) => {
            atrium_bench::ui::run(
                server,
                &atrium_bench::ui::UiBench {
                    tenants: args.tenants.max(1),
                    seconds: args.seconds.max(1),
                    contacts: args.contacts.max(10),
                },
            )
            .await?
        }
        BenchCommand::Move(args) => {
            atrium_bench::moving::run(
                server,
                &atrium_bench::moving::MoveBench {
                    contacts: args.contacts.max(10),
                    max_pause: std::time::Duration::from_millis(args.max_pause_ms.max(50)),
                    tenants: args.tenants.max(2),
                    seconds: args.seconds.max(1),
                },
            )
            .await?
        }
        BenchCommand::Import(args) => {
            atrium_bench::import::run(
                server,
                &ImportBench {
                    rows: args.rows.max(1),
                    rounds: args.rounds.max(1),
                },
            )
            .await?
        }
    };
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
