use std::path::Path;
use std::process::ExitCode;

use atrium_domain::TenantStatus;
use atrium_services::operator::{self, MoveOptions, MoveReport};
use atrium_services::passwords;
use atrium_services::tenants::{self, CreateTenant, TenantView, UpdateTenant};

use super::{CommandResult, Failure};
use crate::cli::{TenantCommand, TenantCreateArgs};
use crate::connect::Connected;
use crate::output::{byte_progress, print_json, print_table};

pub async fn run(command: TenantCommand, connected: &Connected) -> CommandResult {
    let fleet = &connected.fleet();
    match command {
        TenantCommand::Create(args) => create(args, connected).await,
        TenantCommand::List(args) => {
            let all = tenants::list_all(fleet).await?;
            if args.json {
                print_json(&all)?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.subdomain.clone(),
                            t.schema_name.clone(),
                            t.status.clone(),
                            t.tier.clone(),
                            format!("{:04}", t.schema_version),
                            t.user_count.to_string(),
                            t.cluster.clone(),
                            t.name.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "SUBDOMAIN",
                        "SCHEMA",
                        "STATUS",
                        "TIER",
                        "VERSION",
                        "USERS",
                        "CLUSTER",
                        "NAME",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Show { subdomain, json } => {
            let tenant = TenantView::from(&tenants::find(fleet, &subdomain).await?);
            if json {
                print_json(&tenant)?;
            } else {
                let fields = [
                    ("id", tenant.id.to_string()),
                    ("name", tenant.name.clone()),
                    ("subdomain", tenant.subdomain.clone()),
                    ("schema", tenant.schema_name.clone()),
                    ("status", tenant.status.clone()),
                    ("tier", tenant.tier.clone()),
                    ("cluster", tenant.cluster.clone()),
                    (
                        "maintenance",
                        match (&tenant.maintenance_by, tenant.maintenance_since) {
                            (Some(by), Some(since)) => format!(
                                "since {} by {by}: {}",
                                since.to_rfc3339(),
                                tenant
                                    .maintenance_message
                                    .as_deref()
                                    .unwrap_or("(no message)")
                            ),
                            _ => "no".into(),
                        },
                    ),
                    ("version", format!("{:04}", tenant.schema_version)),
                    ("users", tenant.user_count.to_string()),
                    ("companies", tenant.company_count.to_string()),
                    ("contacts", tenant.contact_count.to_string()),
                    ("deals", tenant.deal_count.to_string()),
                    ("activities", tenant.activity_count.to_string()),
                    ("created", tenant.created_at.to_rfc3339()),
                ];
                for (label, value) in fields {
                    println!("{label:<11}{value}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Suspend { subdomain } => {
            set_status(connected, &subdomain, "suspended").await
        }
        TenantCommand::Resume { subdomain } => set_status(connected, &subdomain, "active").await,
        TenantCommand::Rename {
            subdomain,
            new_subdomain,
        } => {
            let tenant = tenants::find(fleet, &subdomain).await?;
            let changes = UpdateTenant {
                subdomain: Some(new_subdomain),
                ..Default::default()
            };
            let renamed = tenants::update(connected.admin(), tenant.id, changes).await?;
            eprintln!(
                "renamed tenant {subdomain} to {} (schema {} unchanged)",
                renamed.subdomain, renamed.schema_name
            );
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Export {
            subdomain,
            out,
            json,
        } => export(connected, &subdomain, &out, json).await,
        TenantCommand::Import {
            file,
            subdomain,
            name,
            json,
        } => import(connected, &file, &subdomain, name.as_deref(), json).await,
        TenantCommand::Backup { subdomain, out } => {
            let bar = byte_progress("backing up", None);
            let written = write_owner_only(&out, |file| {
                let bar = bar.clone();
                let subdomain = subdomain.clone();
                async move {
                    let mut file = bar.wrap_async_write(file);
                    Ok(tenants::backup(fleet, &subdomain, &mut file).await?)
                }
            })
            .await;
            bar.finish_and_clear();
            let written = written?;
            println!(
                "backed up tenant {subdomain}: {written} bytes to {}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Restore { file, json } => {
            let input = open_input(&file).await?;
            let size = input.metadata().await.ok().map(|m| m.len());
            let bar = byte_progress("restoring", size);
            let restored = tenants::restore(connected.admin(), bar.wrap_async_read(input)).await;
            bar.finish_and_clear();
            let tenant = TenantView::from(&restored?);
            if json {
                print_json(&tenant)?;
            } else {
                println!(
                    "restored tenant {} (id {}, schema {}, version {:04}) from {}",
                    tenant.subdomain,
                    tenant.id,
                    tenant.schema_name,
                    tenant.schema_version,
                    file.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Maintenance {
            subdomain,
            state,
            message,
        } => {
            let tenant = tenants::find(fleet, &subdomain).await?;
            let on = state == "on";
            // Maintenance is a pause of a serving tenant: turning it on or
            // off must never lift a suspension.
            if tenant.status == TenantStatus::Suspended {
                return Err(anyhow::anyhow!(
                    "tenant {subdomain} is suspended; resume it first (atrium tenant resume {subdomain})"
                )
                .into());
            }
            if !on && tenant.status != TenantStatus::Maintenance {
                if message.is_some() {
                    return Err(Failure::usage("--message goes with `on`"));
                }
                eprintln!("tenant {subdomain} was not in maintenance; nothing changed");
                return Ok(ExitCode::SUCCESS);
            }
            let operator_login = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into());
            let changes = UpdateTenant {
                status: Some(if on { "maintenance" } else { "active" }.into()),
                maintenance_message: message,
                changed_by: Some(format!("atrium command line ({operator_login})")),
                ..Default::default()
            };
            tenants::update(connected.admin(), tenant.id, changes).await?;
            eprintln!(
                "{}",
                if on {
                    format!("tenant {subdomain} is in maintenance: its API answers 503 maintenance")
                } else {
                    format!("tenant {subdomain} is serving again")
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Move(args) => {
            let tenant = tenants::find(fleet, &args.subdomain).await?;
            if args.abort {
                if operator::abort_move(fleet, &tenant).await? {
                    eprintln!(
                        "stopped the move of {}; it serves from {} as before",
                        tenant.subdomain, tenant.cluster
                    );
                } else {
                    eprintln!("no move of {} is under way", tenant.subdomain);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let to = args.to.expect("clap requires --to without --abort");
            let options = MoveOptions {
                max_pause: std::time::Duration::from_secs_f64(args.max_pause),
                drop_source: args.drop_source,
                ..Default::default()
            };
            let report = move_with_progress(fleet, &tenant, &to, &options).await?;
            if args.json {
                print_json(&report)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Delete { subdomain, yes } => {
            if !yes {
                return Err(Failure::usage(format!(
                    "deleting tenant {subdomain} drops its schema and every row in it: add --yes to confirm"
                )));
            }
            let tenant = tenants::find(fleet, &subdomain).await?;
            tenants::delete(fleet, tenant.id).await?;
            eprintln!(
                "deleted tenant {subdomain} (schema {} and its role dropped)",
                tenant.schema_name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Moves one tenant, telling stderr where it is, and a summary when done.
pub(crate) async fn move_with_progress(
    fleet: &atrium_store::Fleet,
    tenant: &atrium_store::registry::TenantEntry,
    to: &str,
    options: &MoveOptions,
) -> Result<MoveReport, Failure> {
    let last = std::sync::Mutex::new(String::new());
    let report = operator::move_tenant(fleet, tenant, to, options, &|progress| {
        let line = format!(
            "{}: {}: {}",
            tenant.subdomain,
            progress.state.as_str().replace('_', " "),
            progress.detail
        );
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if *last != line {
            eprintln!("{line}");
            *last = line;
        }
    })
    .await?;
    eprintln!(
        "moved {} from {} to {}: {} rows ({:.1} MB) copied in {:.1} s; writes paused at most {} ms{}; {}",
        report.tenant,
        report.from,
        report.to,
        report.rows,
        report.bytes as f64 / 1e6,
        report.copy_ms as f64 / 1000.0,
        report.longest_pause_ms,
        if report.cut_over_attempts > 1 {
            format!(" ({} cut-over attempts)", report.cut_over_attempts)
        } else {
            String::new()
        },
        match (&report.source_kept_as, report.verified) {
            (_, false) => "WARNING: the copy differs from the source, see --json".to_owned(),
            (Some(kept), true) => format!("verified; the source is kept as {kept}"),
            (None, true) => "verified; the source is dropped".to_owned(),
        }
    );
    Ok(report)
}

async fn set_status(connected: &Connected, subdomain: &str, status: &str) -> CommandResult {
    let tenant = tenants::find(&connected.fleet(), subdomain).await?;
    let changes = UpdateTenant {
        status: Some(status.to_owned()),
        ..Default::default()
    };
    tenants::update(connected.admin(), tenant.id, changes).await?;
    eprintln!("tenant {subdomain} is {status}");
    Ok(ExitCode::SUCCESS)
}

async fn create(args: TenantCreateArgs, connected: &Connected) -> CommandResult {
    let generated = args.admin_password.is_none().then(passwords::generate);
    let password = args
        .admin_password
        .clone()
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let created = tenants::create(
        &connected.fleet(),
        CreateTenant {
            name: args.name,
            subdomain: args.subdomain,
            tier: Some(args.tier),
            admin_email: args.admin_email.clone(),
            admin_first_name: args.admin_first_name,
            admin_last_name: args.admin_last_name,
            admin_password: password,
            cluster: args.cluster,
        },
    )
    .await?;
    let tenant = TenantView::from(&created.tenant);
    if args.json {
        print_json(&serde_json::json!({
            "tenant": tenant,
            "admin": {"id": created.admin_user_id, "email": args.admin_email.trim()},
            "admin_password": generated,
        }))?;
    } else {
        println!(
            "created tenant {} (id {}, schema {}, tier {})",
            tenant.subdomain, tenant.id, tenant.schema_name, tenant.tier
        );
        println!("admin: {}", args.admin_email.trim());
        if let Some(password) = generated {
            println!("password: {password}");
            println!("(shown once: store it now)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file next to `out` under a temporary name, readable by its
/// owner only (archives and backups hold password hashes and personal
/// data), and renames it into place once `write` succeeded: a failed
/// write leaves no file that looks whole.
async fn write_owner_only<T, F, Fut>(out: &Path, write: F) -> Result<T, Failure>
where
    F: FnOnce(tokio::fs::File) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let file_name = out
        .file_name()
        .ok_or_else(|| Failure::usage(format!("--out {} is not a file name", out.display())))?;
    let partial = out.with_file_name(format!(
        ".{}.partial-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let cannot_write =
        |e: std::io::Error| Failure::from(anyhow::anyhow!("cannot write {}: {e}", out.display()));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .await
        .map_err(cannot_write)?;
    let result = async {
        // `write` flushes what it wrote; this handle is for the sync.
        let value = write(file.try_clone().await.map_err(cannot_write)?).await?;
        file.sync_all().await.map_err(cannot_write)?;
        tokio::fs::rename(&partial, out)
            .await
            .map_err(cannot_write)?;
        Ok(value)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

async fn open_input(path: &Path) -> Result<tokio::fs::File, Failure> {
    tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::from(anyhow::anyhow!("cannot read {}: {e}", path.display())))
}

async fn export(connected: &Connected, subdomain: &str, out: &Path, json: bool) -> CommandResult {
    let bar = byte_progress("exporting", None);
    let result = write_owner_only(out, |file| {
        let bar = bar.clone();
        async move {
            Ok(tenants::export(&connected.fleet(), subdomain, bar.wrap_async_write(file)).await?)
        }
    })
    .await;
    bar.finish_and_clear();
    let report = result?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "exported tenant {subdomain}: {} rows in {} tables, {} bytes, schema version {:04}, to {} ({:.1} s)",
            report.rows(),
            report.tables.len(),
            report.bytes,
            report.header.schema_version,
            out.display(),
            report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn import(
    connected: &Connected,
    path: &Path,
    subdomain: &str,
    name: Option<&str>,
    json: bool,
) -> CommandResult {
    let file = open_input(path).await?;
    let size = file.metadata().await.ok().map(|m| m.len());
    let bar = byte_progress("importing", size);
    let result = tenants::import(
        connected.admin(),
        bar.wrap_async_read(file),
        subdomain,
        name,
    )
    .await;
    bar.finish_and_clear();
    let (tenant, report) = result?;
    if json {
        print_json(&serde_json::json!({
            "tenant": TenantView::from(&tenant),
            "archive": report,
        }))?;
    } else {
        println!(
            "imported tenant {} (id {}, schema {}) from {}: {} rows in {} tables from tenant {} at schema version {:04}, now {:04} ({:.1} s)",
            tenant.subdomain,
            tenant.id,
            tenant.schema_name,
            path.display(),
            report.rows(),
            report.tables.len(),
            report.header.source.subdomain,
            report.header.schema_version,
            tenant.schema_version,
            report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
