//! `atrium cluster`: the data clusters tenants are placed on.

use std::process::ExitCode;

use atrium_services::operator;

use super::CommandResult;
use crate::cli::ClusterCommand;
use crate::connect::Connected;
use crate::output::{print_json, print_table};

pub async fn run(command: ClusterCommand, connected: &Connected) -> CommandResult {
    match command {
        ClusterCommand::List(args) => {
            let clusters = operator::clusters(&connected.fleet()).await?;
            if args.json {
                print_json(&clusters)?;
            } else {
                let rows: Vec<Vec<String>> = clusters
                    .iter()
                    .map(|c| {
                        vec![
                            c.entry.name.clone(),
                            if c.entry.accepting { "yes" } else { "no" }.into(),
                            match (c.declared, c.reachable) {
                                (false, _) => "not declared here".into(),
                                (true, true) => "yes".into(),
                                (true, false) => "no".into(),
                            },
                            c.version.clone().unwrap_or_else(|| "-".into()),
                            c.entry.tenants.to_string(),
                            c.size_bytes
                                .map_or_else(|| "-".into(), |b| format!("{} MB", b / 1_000_000)),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "cluster",
                        "accepting",
                        "reachable",
                        "version",
                        "tenants",
                        "size",
                    ],
                    &rows,
                );
            }
        }
        ClusterCommand::Accept { name } => {
            operator::set_cluster_accepting(connected.admin(), &name, true).await?;
            eprintln!("cluster {name} takes new tenants");
        }
        ClusterCommand::Drain {
            name,
            dry_run,
            json,
        } => {
            let fleet = connected.fleet();
            let plan = operator::plan_drain(&fleet, &name).await?;
            if dry_run || plan.is_empty() {
                if json {
                    print_json(&plan)?;
                } else {
                    let rows: Vec<Vec<String>> = plan
                        .iter()
                        .map(|s| vec![s.tenant.clone(), name.clone(), s.to.clone()])
                        .collect();
                    print_table(&["tenant", "from", "to"], &rows);
                }
                eprintln!(
                    "cluster {name} takes no new tenants; {} tenant(s) {}",
                    plan.len(),
                    if dry_run { "would move" } else { "to move" }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut reports = Vec::new();
            for step in &plan {
                let tenant = atrium_services::tenants::find(&fleet, &step.tenant).await?;
                let report = super::tenant::move_with_progress(
                    &fleet,
                    &tenant,
                    &step.to,
                    &Default::default(),
                )
                .await
                .map_err(|mut e| {
                    e.message = format!(
                        "draining {name} stopped at {} ({} of {} moved): {}",
                        step.tenant,
                        reports.len(),
                        plan.len(),
                        e.message
                    );
                    e
                })?;
                reports.push(report);
            }
            if json {
                print_json(&reports)?;
            }
            eprintln!(
                "cluster {name} is drained: {} tenant(s) moved",
                reports.len()
            );
        }
        ClusterCommand::Refuse { name } => {
            operator::set_cluster_accepting(connected.admin(), &name, false).await?;
            eprintln!("cluster {name} takes no new tenants; its tenants stay");
        }
    }
    Ok(ExitCode::SUCCESS)
}
