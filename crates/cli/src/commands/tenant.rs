use std::process::ExitCode;

use atrium_services::passwords;
use atrium_services::tenants::{self, CreateTenant, TenantView, UpdateTenant};

use super::{CommandResult, Failure};
use crate::cli::{TenantCommand, TenantCreateArgs};
use crate::connect::Connected;
use crate::output::{print_json, print_table};

pub async fn run(command: TenantCommand, connected: &Connected) -> CommandResult {
    let db = &connected.db;
    match command {
        TenantCommand::Create(args) => create(args, connected).await,
        TenantCommand::List(args) => {
            let all = tenants::list_all(db).await?;
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
                        "NAME",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Show { subdomain, json } => {
            let tenant = TenantView::from(&tenants::find(db, &subdomain).await?);
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
            let tenant = tenants::find(db, &subdomain).await?;
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
        TenantCommand::Delete { subdomain, yes } => {
            if !yes {
                return Err(Failure::usage(format!(
                    "deleting tenant {subdomain} drops its schema and every row in it: add --yes to confirm"
                )));
            }
            let tenant = tenants::find(db, &subdomain).await?;
            tenants::delete(connected.admin(), tenant.id).await?;
            eprintln!(
                "deleted tenant {subdomain} (schema {} and its role dropped)",
                tenant.schema_name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn set_status(connected: &Connected, subdomain: &str, status: &str) -> CommandResult {
    let tenant = tenants::find(&connected.db, subdomain).await?;
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
        connected.admin(),
        CreateTenant {
            name: args.name,
            subdomain: args.subdomain,
            tier: Some(args.tier),
            admin_email: args.admin_email.clone(),
            admin_first_name: args.admin_first_name,
            admin_last_name: args.admin_last_name,
            admin_password: password,
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
