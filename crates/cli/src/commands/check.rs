use std::process::ExitCode;

use atrium_services::operator;

use super::CommandResult;
use crate::cli::JsonArg;
use crate::connect::Connected;
use crate::output::print_json;

pub async fn run(args: JsonArg, connected: &Connected) -> CommandResult {
    let report = operator::check(&connected.fleet()).await?;
    if args.json {
        print_json(&report)?;
    } else if report.drifted.is_empty() {
        println!(
            "{} tenant schema(s) and {} spare schema(s) match template",
            report.schemas_checked, report.spares_checked
        );
    } else {
        for drift in &report.drifted {
            println!(
                "{} ({}, cluster {}) differs from template:",
                drift.schema_name,
                drift.subdomain.as_deref().unwrap_or("a spare schema"),
                drift.cluster
            );
            for item in &drift.missing {
                println!("  - missing: {item}");
            }
            for item in &drift.extra {
                println!("  + extra:   {item}");
            }
        }
    }
    if report.drifted.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "atrium: {} of {} tenant and {} spare schema(s) differ from template",
            report.drifted.len(),
            report.schemas_checked,
            report.spares_checked
        );
        Ok(ExitCode::from(1))
    }
}
