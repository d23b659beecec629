//! Watching the fleet: `top`, `indexes`, `connections`.

use std::process::ExitCode;

use atrium_services::operator;
use atrium_services::tenants;

use super::CommandResult;
use crate::cli::{CapacityArgs, IndexesArgs, JsonArg, QueriesAction, QueriesArgs, TopArgs};
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
        if args.json {
            print_json(&serde_json::json!({ "cancelled": cancelled }))?;
        } else {
            eprintln!("cancelled {cancelled} statement(s)");
        }
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

pub async fn capacity(args: CapacityArgs, connected: &Connected) -> CommandResult {
    let fleet = &connected.fleet();
    if let Some(subdomain) = &args.subdomain {
        let tenant = tenants::find(fleet, subdomain).await?;
        let one = atrium_services::capacity::of_tenant(fleet, &tenant).await?;
        if args.json {
            print_json(&one)?;
            return Ok(ExitCode::SUCCESS);
        }
        let rows: Vec<Vec<String>> = one
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.table.clone(),
                    t.rows.to_string(),
                    mib(t.table_bytes),
                    mib(t.index_bytes),
                    mib(t.toast_bytes),
                    mib(t.total_bytes),
                ]
            })
            .collect();
        print_table(
            &[
                "TABLE",
                "ROWS",
                "TABLE_MIB",
                "INDEX_MIB",
                "TOAST_MIB",
                "TOTAL_MIB",
            ],
            &rows,
        );
        println!(
            "{} on {}: {} MiB; grew {} in 7 days, {} in 30 days",
            one.tenant.tenant,
            one.tenant.cluster,
            mib(one.tenant.total_bytes),
            growth(
                one.tenant.growth.growth_7d_bytes,
                one.tenant.growth.growth_7d_days
            ),
            growth(
                one.tenant.growth.growth_30d_bytes,
                one.tenant.growth.growth_30d_days
            ),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(unknown) = args
        .disk_size
        .iter()
        .filter_map(|(cluster, _)| cluster.as_deref())
        .find(|name| fleet.cluster(name).is_none())
    {
        return Err(super::Failure {
            message: format!("--disk-size names cluster {unknown}, which is not declared"),
            exit_code: 2,
        });
    }
    let disk_sizes = args.disk_size.into_iter().collect();
    let fleet_capacity = atrium_services::capacity::capacity(fleet, &disk_sizes).await?;
    if args.json {
        print_json(&fleet_capacity)?;
        return report_unread(&fleet_capacity.failed);
    }
    let rows: Vec<Vec<String>> = fleet_capacity
        .tenants
        .iter()
        .map(|t| {
            vec![
                t.tenant.clone(),
                t.cluster.clone(),
                t.rows.to_string(),
                mib(t.table_bytes),
                mib(t.index_bytes),
                mib(t.toast_bytes),
                mib(t.total_bytes),
                t.growth.growth_7d_bytes.map_or("-".into(), mib),
                t.growth.growth_30d_bytes.map_or("-".into(), mib),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT",
            "CLUSTER",
            "ROWS",
            "TABLE_MIB",
            "INDEX_MIB",
            "TOAST_MIB",
            "TOTAL_MIB",
            "7D_MIB",
            "30D_MIB",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = fleet_capacity
        .clusters
        .iter()
        .map(|c| {
            vec![
                c.cluster.clone(),
                c.tenants.to_string(),
                mib(c.database_bytes),
                c.disk_free_bytes
                    .map_or("unknown".into(), |b| mib(b as i64)),
                c.growth_bytes_per_day.map_or("-".into(), |b| mib(b as i64)),
                match (c.full_on, c.disk_free_bytes, c.growth_bytes_per_day) {
                    (Some(day), _, _) => day.to_string(),
                    (None, None, _) => "give --disk-size".into(),
                    (None, Some(_), None) => "no history yet".into(),
                    (None, Some(_), Some(_)) => "not filling".into(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "CLUSTER",
            "TENANTS",
            "DATABASE_MIB",
            "FREE_MIB",
            "MIB_PER_DAY",
            "FULL_ON",
        ],
        &rows,
    );
    let totals = &fleet_capacity.totals;
    println!(
        "{} tenants, {} contacts, {} deals; {} MiB of tenant data, {} MiB more than 7 days ago",
        totals.records.tenant_count,
        totals.records.total_contacts,
        totals.records.total_deals,
        mib(totals.total_bytes),
        mib(totals.growth_7d_bytes)
    );
    report_unread(&fleet_capacity.failed)
}

fn growth(bytes: Option<i64>, days: Option<i64>) -> String {
    match (bytes, days) {
        (Some(bytes), Some(days)) => format!("{} MiB (over {days} days of samples)", mib(bytes)),
        _ => "unknown (no samples yet)".into(),
    }
}
