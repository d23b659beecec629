use std::process::ExitCode;

use atrium_services::operator::{self, MigrateOptions, MigrationError};

use super::{CommandResult, Failure};
use crate::cli::{MigrateAction, MigrateArgs};
use crate::connect::Connected;
use crate::output::{print_json, print_table, progress_bar};

pub async fn run(args: MigrateArgs, connected: &Connected) -> CommandResult {
    match args.action {
        Some(MigrateAction::Status(json)) => status(json.json, connected).await,
        None => match args.rehearse {
            Some(subdomain) => rehearse(&subdomain, args.json, connected).await,
            None => apply(args.jobs.into(), args.tenant.as_deref(), connected).await,
        },
    }
}

async fn rehearse(subdomain: &str, json: bool, connected: &Connected) -> CommandResult {
    let fleet = connected.fleet();
    let tenant = match subdomain {
        "" => None,
        subdomain => Some(atrium_services::tenants::find(&fleet, subdomain).await?),
    };
    let bar = progress_bar("copying the tenant and rehearsing");
    let rehearsed = operator::rehearse_migrations(&fleet, tenant).await;
    bar.finish_and_clear();
    let (tenant, rehearsal) = rehearsed?;
    let Some(rehearsal) = rehearsal else {
        if json {
            print_json(&serde_json::json!({
                "tenant": tenant.subdomain,
                "cluster": tenant.cluster,
                "rehearsal": null,
            }))?;
        } else {
            eprintln!(
                "{} is at version {:04}, the newest: nothing to rehearse",
                tenant.subdomain, tenant.schema_version
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        print_json(&serde_json::json!({
            "tenant": tenant.subdomain,
            "cluster": tenant.cluster,
            "rehearsal": rehearsal,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "rehearsed on a copy of {} ({} rows, copied in {:.1} s), version {:04} to {:04}; nothing on {} changed",
        tenant.subdomain,
        rehearsal.rows_copied,
        rehearsal.copy_seconds,
        rehearsal.from_version,
        rehearsal.to_version,
        tenant.subdomain
    );
    let mut rows = Vec::new();
    for migration in &rehearsal.migrations {
        let locks = if migration.locks.is_empty() {
            vec!["- (none on existing relations)".to_owned()]
        } else {
            migration
                .locks
                .iter()
                .map(|l| format!("{} {} (blocks {})", l.relation, l.mode, l.blocks))
                .collect()
        };
        for (i, lock) in locks.into_iter().enumerate() {
            rows.push(if i == 0 {
                vec![
                    format!("{:04}", migration.version),
                    migration.name.clone(),
                    format!("{:.3}", migration.seconds),
                    lock,
                ]
            } else {
                vec![String::new(), String::new(), String::new(), lock]
            });
        }
    }
    print_table(&["VERSION", "NAME", "SECONDS", "LOCKS TAKEN"], &rows);
    println!(
        "all pending migrations: {:.3} s in one transaction, as `atrium migrate` runs them for this tenant",
        rehearsal.total_seconds
    );
    Ok(ExitCode::SUCCESS)
}

async fn apply(jobs: usize, tenant: Option<&str>, connected: &Connected) -> CommandResult {
    let only_tenants = match tenant {
        Some(subdomain) => Some(vec![
            atrium_services::tenants::find(&connected.fleet(), subdomain)
                .await?
                .id,
        ]),
        None => None,
    };
    let options = MigrateOptions {
        jobs,
        only_tenants,
        ..Default::default()
    };
    let bar = progress_bar("migrating");
    let report = operator::migrate(&connected.fleet(), &options, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .await;
    bar.finish_and_clear();
    let report = report.map_err(|e| match e {
        MigrationError::Other(e) => Failure::from(e),
        other => Failure {
            message: other.to_string(),
            exit_code: 1,
        },
    })?;
    let describe = |applied: &[i32]| match applied {
        [] => "up to date".to_owned(),
        versions => format!(
            "applied {}",
            versions
                .iter()
                .map(|v| format!("{v:04}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    eprintln!("registry: {}", describe(&report.control_applied));
    eprintln!("template: {}", describe(&report.template_applied));
    for cluster in &report.clusters {
        eprintln!(
            "cluster {}: registry {}, template {}, {} tenant(s) migrated",
            cluster.cluster,
            describe(&cluster.control_applied),
            describe(&cluster.template_applied),
            cluster.tenants_migrated
        );
    }
    for failure in &report.cluster_failures {
        eprintln!("cluster {}: failed: {}", failure.cluster, failure.error);
    }
    eprintln!(
        "tenants: {} migrated to version {:04}, {} failed",
        report.tenants_migrated,
        report.latest_version,
        report.failures.len()
    );
    for failure in &report.failures {
        eprintln!(
            "failed: {} ({}, id {}, cluster {}): {}",
            failure.subdomain,
            failure.schema_name,
            failure.tenant_id,
            failure.cluster,
            failure.error
        );
    }
    if let Some(first) = report.cluster_failures.first() {
        return Err(Failure {
            message: format!(
                "{} cluster(s) could not be migrated, first {}: {}; the others are up to date",
                report.cluster_failures.len(),
                first.cluster,
                first.error
            ),
            exit_code: 1,
        });
    }
    if report.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure {
            message: format!(
                "{} tenant(s) failed to migrate: {}; fix them and run `atrium migrate` again",
                report.failures.len(),
                report
                    .failures
                    .iter()
                    .map(|f| f.subdomain.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            exit_code: 1,
        })
    }
}

async fn status(json: bool, connected: &Connected) -> CommandResult {
    let status = operator::migration_status(&connected.db).await?;
    let clusters = operator::cluster_versions(&connected.fleet()).await;
    if json {
        let tenants = operator::tenant_versions(&connected.db).await?;
        print_json(&serde_json::json!({
            "latest_version": status.latest_version,
            "registry_version": status.control_version,
            "template_version": status.template_version,
            "clusters": clusters,
            "tenants": tenants,
        }))?;
    } else {
        println!("newest tenant version: {:04}", status.latest_version);
        println!("registry version: {:04}", status.control_version);
        println!("template version: {:04}", status.template_version);
        for cluster in clusters.iter().skip(1) {
            match (
                &cluster.error,
                cluster.registry_version,
                cluster.template_version,
            ) {
                (None, Some(registry), Some(template)) => println!(
                    "cluster {}: registry {registry:04}, template {template:04}",
                    cluster.cluster
                ),
                (error, ..) => println!(
                    "cluster {}: not reachable ({})",
                    cluster.cluster,
                    error.as_deref().unwrap_or("unknown")
                ),
            }
        }
        let rows: Vec<Vec<String>> = status
            .tenants_by_version
            .iter()
            .map(|(v, n)| vec![format!("{v:04}"), n.to_string()])
            .collect();
        print_table(&["VERSION", "TENANTS"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
