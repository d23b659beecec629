//! `atrium cluster`: the data clusters tenants are placed on.

use std::process::ExitCode;

use atrium_services::operator::{self, ClusterAddress};

use super::CommandResult;
use crate::cli::ClusterCommand;
use crate::connect::Connected;
use crate::output::{print_json, print_table};
use crate::settings::{FileSettings, declared_clusters};

pub async fn run(
    command: ClusterCommand,
    connected: &Connected,
    file: &FileSettings,
) -> CommandResult {
    match command {
        ClusterCommand::List(args) => {
            let declared: Vec<ClusterAddress> = declared_clusters(file, std::env::vars())?
                .into_iter()
                .filter_map(|c| {
                    let url = c.urls.database_url.or(c.urls.admin_database_url)?;
                    Some(ClusterAddress { name: c.name, url })
                })
                .collect();
            let clusters = operator::clusters(connected.admin(), &declared).await?;
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
        ClusterCommand::Refuse { name } => {
            operator::set_cluster_accepting(connected.admin(), &name, false).await?;
            eprintln!("cluster {name} takes no new tenants; its tenants stay");
        }
    }
    Ok(ExitCode::SUCCESS)
}
