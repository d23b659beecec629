//! Watching the fleet: `top`, `indexes`, `connections`.

use std::process::ExitCode;

use atrium_services::operator;
use atrium_services::tenants;

use super::CommandResult;
use crate::cli::{IndexesArgs, JsonArg, TopArgs};
use crate::connect::Connected;
use crate::output::{print_json, print_table};

fn mib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

pub async fn top(args: TopArgs, connected: &Connected) -> CommandResult {
    let loads = operator::busiest_tenants(&connected.db, args.limit as usize).await?;
    if args.json {
        print_json(&loads)?;
        return Ok(ExitCode::SUCCESS);
    }
    if loads.is_empty() {
        eprintln!("no requests in the last hour (servers publish their figures every minute)");
    }
    let rows: Vec<Vec<String>> = loads
        .iter()
        .map(|l| {
            vec![
                l.subdomain.clone(),
                l.requests.to_string(),
                l.errors.to_string(),
                format!("{:.1}", l.p50_ms),
                format!("{:.1}", l.p99_ms),
                format!("{:.0}", l.db_time_ms),
            ]
        })
        .collect();
    print_table(
        &["TENANT", "REQUESTS", "ERRORS", "P50_MS", "P99_MS", "DB_MS"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn indexes(args: IndexesArgs, connected: &Connected) -> CommandResult {
    let db = &connected.db;
    match args.subdomain {
        Some(subdomain) => {
            let tenant = tenants::find(db, &subdomain).await?;
            let indexes = operator::indexes_of(db, &tenant.schema_name).await?;
            if args.json {
                print_json(&indexes)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = indexes
                .iter()
                .map(|i| {
                    vec![
                        i.table.clone(),
                        i.index.clone(),
                        i.scans.to_string(),
                        mib(i.bytes),
                        if i.unused {
                            "unused".into()
                        } else if i.enforces {
                            "enforces".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            print_table(&["TABLE", "INDEX", "SCANS", "MIB", "NOTE"], &rows);
        }
        None => {
            let tenants = operator::indexes_by_tenant(db).await?;
            if args.json {
                print_json(&tenants)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = tenants
                .iter()
                .map(|t| {
                    vec![
                        t.subdomain.clone(),
                        t.indexes.to_string(),
                        t.scans.to_string(),
                        mib(t.bytes),
                        t.unused.to_string(),
                    ]
                })
                .collect();
            print_table(&["TENANT", "INDEXES", "SCANS", "MIB", "UNUSED"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn connections(args: JsonArg, connected: &Connected) -> CommandResult {
    let groups = operator::connections(&connected.db).await?;
    if args.json {
        print_json(&groups)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.tenant.clone().unwrap_or_else(|| "-".into()),
                g.application_name.clone(),
                g.state.clone(),
                g.connections.to_string(),
                format!("{:.1}", g.longest_seconds),
            ]
        })
        .collect();
    print_table(
        &["TENANT", "APPLICATION", "STATE", "CONNECTIONS", "LONGEST_S"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}
