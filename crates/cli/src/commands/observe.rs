//! Watching the fleet: `top`, `indexes`, `connections`.

use std::process::ExitCode;

use atrium_services::operator;
use atrium_services::tenants;

use super::CommandResult;
use crate::cli::{IndexesArgs, JsonArg, QueriesAction, QueriesArgs, TopArgs};
use crate::connect::Connected;
use crate::output::{mib, print_json, print_table};

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
                l.cluster.clone(),
                l.requests.to_string(),
                l.errors.to_string(),
                format!("{:.1}", l.p50_ms),
                format!("{:.1}", l.p99_ms),
                format!("{:.0}", l.db_time_ms),
                l.slow_statements.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT", "CLUSTER", "REQUESTS", "ERRORS", "P50_MS", "P99_MS", "DB_MS", "SLOW",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

async fn bloated_indexes(args: IndexesArgs, connected: &Connected) -> CommandResult {
    let fleet = &connected.fleet();
    let tenant = match &args.subdomain {
        Some(subdomain) => Some(tenants::find(fleet, subdomain).await?),
        None => None,
    };
    let read = operator::index_bloat(fleet, tenant.as_ref()).await?;
    if args.json {
        print_json(&read.rows)?;
        return report_unread(&read.failed);
    }
    if read.rows.is_empty() && tenant.is_none() {
        eprintln!("no bloated index (30% and 1 MiB or more of dead space)");
    }
    let rows: Vec<Vec<String>> = read
        .rows
        .iter()
        .map(|i| {
            vec![
                i.tenant.clone().unwrap_or_else(|| i.schema_name.clone()),
                i.cluster.clone(),
                i.table.clone(),
                i.index.clone(),
                mib(i.bytes),
                mib(i.bloat_bytes),
                format!("{:.0}%", i.bloat_ratio * 100.0),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT",
            "CLUSTER",
            "TABLE",
            "INDEX",
            "MIB",
            "BLOAT_MIB",
            "BLOAT",
        ],
        &rows,
    );
    report_unread(&read.failed)
}

/// Says on stderr which clusters could not be read; the command then
/// exits 1 after showing what the others said.
fn report_unread(failed: &[(String, String)]) -> CommandResult {
    for (cluster, error) in failed {
        eprintln!("cluster {cluster} could not be read: {error}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn indexes(args: IndexesArgs, connected: &Connected) -> CommandResult {
    let fleet = &connected.fleet();
    if args.bloated {
        return bloated_indexes(args, connected).await;
    }
    match args.subdomain {
        Some(subdomain) => {
            let tenant = tenants::find(fleet, &subdomain).await?;
            let indexes = operator::indexes_of(fleet, &tenant).await?;
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
            let read = operator::indexes_by_tenant(fleet).await?;
            if args.json {
                print_json(&read.rows)?;
                return report_unread(&read.failed);
            }
            let rows: Vec<Vec<String>> = read
                .rows
                .iter()
                .map(|t| {
                    vec![
                        t.subdomain.clone(),
                        t.cluster.clone(),
                        t.indexes.to_string(),
                        t.scans.to_string(),
                        mib(t.bytes),
                        t.unused.to_string(),
                    ]
                })
                .collect();
            print_table(
                &["TENANT", "CLUSTER", "INDEXES", "SCANS", "MIB", "UNUSED"],
                &rows,
            );
            return report_unread(&read.failed);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn connections(args: JsonArg, connected: &Connected) -> CommandResult {
    let read = operator::connections(&connected.fleet()).await?;
    if args.json {
        print_json(&read.rows)?;
        return report_unread(&read.failed);
    }
    let rows: Vec<Vec<String>> = read
        .rows
        .iter()
        .map(|g| {
            vec![
                g.cluster.clone(),
                g.tenant.clone().unwrap_or_else(|| "-".into()),
                g.application_name.clone(),
                g.state.clone(),
                g.connections.to_string(),
                format!("{:.1}", g.longest_seconds),
            ]
        })
        .collect();
    print_table(
        &[
            "CLUSTER",
            "TENANT",
            "APPLICATION",
            "STATE",
            "CONNECTIONS",
            "LONGEST_S",
        ],
        &rows,
    );
    report_unread(&read.failed)
}

pub async fn queries(args: QueriesArgs, connected: &Connected) -> CommandResult {
    let fleet = &connected.fleet();
    if let Some(QueriesAction::Cancel {
        pid,
        tenant,
        cluster,
    }) = args.action
    {
        let tenant = match tenant {
            Some(subdomain) => Some(tenants::find(fleet, &subdomain).await?),
            None => None,
        };
        let cancelled = operator::cancel_queries(fleet, &cluster, pid, tenant.as_ref()).await?;
        if cancelled == 0 {
            return Err(super::Failure::from(anyhow::anyhow!(
                "no running tenant statement matched: nothing was cancelled"
            )));
        }
        eprintln!("cancelled {cancelled} statement(s)");
        return Ok(ExitCode::SUCCESS);
    }
    let read = operator::running_queries(fleet, args.over).await?;
    if args.json {
        print_json(&read.rows)?;
        return report_unread(&read.failed);
    }
    let rows: Vec<Vec<String>> = read
        .rows
        .iter()
        .map(|q| {
            vec![
                q.cluster.clone(),
                q.tenant.clone().unwrap_or_else(|| q.schema_name.clone()),
                q.pid.to_string(),
                q.state.clone(),
                format!("{:.1}", q.seconds),
                q.request_id.clone().unwrap_or_else(|| "-".into()),
                q.query.split_whitespace().collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    print_table(
        &[
            "CLUSTER", "TENANT", "PID", "STATE", "SECONDS", "REQUEST", "QUERY",
        ],
        &rows,
    );
    report_unread(&read.failed)
}
