use std::process::ExitCode;

use atrium_services::maintain::{self, DEFAULT_RETENTION_DAYS};

use super::{CommandResult, Failure};
use crate::cli::MaintainArgs;
use crate::connect::Connected;
use crate::output::print_json;
use crate::settings::FileSettings;

pub async fn run(args: MaintainArgs, connected: &Connected, file: &FileSettings) -> CommandResult {
    let retention_days = args
        .retention_days
        .or(file.retention_days)
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    let reindex = args.reindex.then_some(std::time::Duration::ZERO);
    let policy = maintain::policy(retention_days, args.vacuum, reindex);
    let Some(report) = maintain::run_now(&connected.fleet(), &policy).await? else {
        return Err(Failure::from(anyhow::anyhow!(
            "another maintain run is in progress; try again when it has finished"
        )));
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "maintained {} tenants in {:.1} s (retention {retention_days} days)",
            report.tenants, report.seconds
        );
        for (label, n) in [
            ("sessions removed", report.sessions_removed),
            ("reset tokens removed", report.reset_tokens_removed),
            ("invitations removed", report.invitations_removed),
            ("outbox tokens blanked", report.outbox_tokens_blanked),
            ("companies purged", report.companies_purged),
            ("contacts purged", report.contacts_purged),
            ("deals purged", report.deals_purged),
            ("activities purged", report.activities_purged),
            ("audit events purged", report.audit_events_purged),
        ] {
            println!("  {label:<22}{n}");
        }
        if args.vacuum {
            println!("  {:<22}{}", "schemas vacuumed", report.vacuumed.len());
        }
        if args.reindex {
            println!("  {:<22}{}", "indexes rebuilt", report.reindexed.len());
            for index in &report.reindexed {
                println!(
                    "    {}.{}: {} -> {} MiB in {:.1} s",
                    index.schema_name,
                    index.index,
                    crate::output::mib(index.bytes_before),
                    crate::output::mib(index.bytes_after),
                    index.seconds
                );
            }
        }
        for schema in &report.moved_sources_dropped {
            println!("  dropped the source of a moved tenant: {schema}");
        }
        for failure in &report.failures {
            eprintln!("atrium: tenant {}: {}", failure.subdomain, failure.error);
        }
    }
    if report.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::from(anyhow::anyhow!(
            "maintain failed for {} tenants",
            report.failures.len()
        )))
    }
}
