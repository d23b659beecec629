use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use atrium_http::ServerSettings;
use atrium_services::maintain::{self, DEFAULT_INTERVAL_MINUTES, DEFAULT_RETENTION_DAYS};

use super::CommandResult;
use crate::cli::ServeArgs;
use crate::connect::Connected;
use crate::settings::{DatabaseTarget, DeclaredCluster, FileSettings};

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

pub async fn run(
    args: ServeArgs,
    file: &FileSettings,
    target: &DatabaseTarget,
    declared: &[DeclaredCluster],
    pool_size: usize,
) -> CommandResult {
    let bind = args
        .bind
        .or(file.bind)
        .unwrap_or_else(|| DEFAULT_BIND.parse().expect("valid default"));
    let settings = ServerSettings {
        base_domain: args
            .base_domain
            .or_else(|| file.base_domain.clone())
            .unwrap_or_else(|| "localhost".into())
            .to_ascii_lowercase(),
        platform_token: args
            .platform_token
            .or_else(|| file.platform_token.clone())
            .filter(|t| !t.is_empty()),
        public_url: args.public_url.or_else(|| file.public_url.clone()),
        request_timeout: Duration::from_secs(30),
        trusted_proxies: if args.trusted_proxies.is_empty() {
            file.trusted_proxies.clone().unwrap_or_default()
        } else {
            args.trusted_proxies
        },
        max_connections: max_connections(),
        tls: match (
            args.tls_cert.or_else(|| file.tls_cert.clone()),
            args.tls_key.or_else(|| file.tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => Some(atrium_http::TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(super::Failure {
                    message: "--tls-cert and --tls-key (or tls_cert and tls_key in \
                              atrium.toml) go together: give both or neither"
                        .into(),
                    exit_code: 2,
                });
            }
        },
        // atrium.toml's value within the flag's range.
        slow_statement: Duration::from_millis(
            args.slow_statement_ms
                .or(file.slow_statement_ms)
                .unwrap_or(1000)
                .clamp(1, 3_600_000),
        ),
        ..Default::default()
    };
    let smtp_url = args
        .smtp_url
        .or_else(|| file.smtp_url.clone())
        .filter(|u| !u.is_empty());
    let mail_from = args
        .mail_from
        .or_else(|| file.mail_from.clone())
        .unwrap_or_else(|| format!("Atrium <no-reply@{}>", settings.base_domain));
    if let Some(tls) = &settings.tls {
        tls.check()?;
    }
    // Before anything slow: a SIGTERM during startup still shuts down
    // cleanly (and stops the embedded cluster).
    let shutdown = shutdown_signal()?;
    // The port before anything is written: a taken port must fail the
    // command before the demo tenant or the embedded cluster exist.
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind}"))?;
    let limits = atrium_store::ConnectionLimits {
        max_tenants: args
            .connection_max_tenants
            .or_else(|| {
                // The variable's name before connections were called so.
                std::env::var("ATRIUM_SESSION_MAX_TENANTS")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
            })
            .or(file.connection_max_tenants)
            .map_or(atrium_store::CONNECTION_MAX_TENANTS, |n| n as usize),
        ..Default::default()
    };
    let connected = Connected::open(target, declared, pool_size, limits).await?;
    // Closed before the embedded cluster stops, so that its sessions end
    // from this side and none is cut off by the cluster's shutdown.
    let mut application_pool = None;
    let served = async {
        connected.ensure_current().await?;
        let app_db = connected.application_db(pool_size).await?;
        application_pool = Some(app_db.clone());
        let excess = atrium_services::operator::excess_privileges(&app_db).await?;
        if !excess.is_empty() {
            let excess = excess.join(", ");
            if !args.unsafe_allow_privileged_login {
                anyhow::bail!(
                    "refusing to serve tenant requests: the database login {excess}; \
                     run `atrium db roles` and connect as atrium_application \
                     (with --admin-database-url for migrations), or pass \
                     --unsafe-allow-privileged-login for development"
                );
            }
            tracing::warn!(
                "serving with a privileged database login ({excess}): for development only"
            );
        }
        let demo = if args.demo {
            let made = atrium_services::demo::ensure(&connected.fleet_serving_with(app_db.clone())).await?;
            Some(made)
        } else {
            None
        };
        tracing::info!(address = %listener.local_addr()?, ?settings, "atrium is serving");
        if !atrium_services::operator::sealing::seals() {
            tracing::warn!(
                "queued emails are stored with their tokens readable: set ATRIUM_SECRET_KEY \
                 (64 hex digits, the same on every server) to seal them"
            );
        }
        match app_db.open_files_advice().await {
            Ok(Some(advice)) => tracing::warn!("{advice}"),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = format!("{e:#}"), "reading max_files_per_process"),
        }
        // Each cluster queues its own tenants' emails: one sender each.
        let senders: Vec<(String, atrium_store::Database)> = connected
            .fleet()
            .clusters()
            .iter()
            .map(|c| (c.name.clone(), c.db.clone()))
            .collect();
        let _senders: Vec<AbortOnDrop> = smtp_url
            .map(|url| {
                senders
                    .into_iter()
                    .map(|(cluster, db)| {
                        let (url, mail_from) = (url.clone(), mail_from.clone());
                        AbortOnDrop(tokio::spawn(async move {
                            let sent = atrium_services::mail::run_sender(
                                db,
                                url,
                                mail_from,
                                Duration::from_secs(2),
                            );
                            if let Err(e) = sent.await {
                                tracing::error!(
                                    error = format!("{e:#}"),
                                    cluster,
                                    "the email sender stopped"
                                );
                            }
                        }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let interval_minutes = args
            .maintain_interval_minutes
            .or_else(|| {
                // The variable's name before the job was called `maintain`.
                std::env::var("ATRIUM_MAINTENANCE_INTERVAL_MINUTES")
                    .ok()
                    .and_then(|n| n.parse().ok())
            })
            .or(file.maintain_interval_minutes)
            .unwrap_or(DEFAULT_INTERVAL_MINUTES);
        let _maintain = if !connected.may_migrate {
            tracing::info!(
                "no rights to change the schema (no --admin-database-url): run `atrium maintain` on a schedule instead"
            );
            None
        } else if interval_minutes == 0 {
            None
        } else {
            let retention_days = args
                .retention_days
                .or(file.retention_days)
                .unwrap_or(DEFAULT_RETENTION_DAYS);
            let reindex_every = maintain::reindex_every_days(
                args.reindex_interval_days
                    .or(file.reindex_interval_days)
                    .unwrap_or(maintain::DEFAULT_REINDEX_INTERVAL_DAYS)
                    .min(365),
            );
            let (db, policy) = (
                connected.fleet(),
                maintain::policy(retention_days, true, reindex_every),
            );
            let interval = Duration::from_secs(u64::from(interval_minutes) * 60);
            Some(AbortOnDrop(tokio::spawn(maintain::run_schedule(
                db, policy, interval,
            ))))
        };
        let spare_schemas = args
            .spare_schemas
            .or(file.spare_schemas)
            .unwrap_or(DEFAULT_SPARE_SCHEMAS);
        // Each cluster keeps spares for the tenants placed on it.
        let _spares: Vec<AbortOnDrop> = if connected.may_migrate && spare_schemas > 0 {
            connected
                .fleet()
                .clusters()
                .iter()
                .map(|cluster| {
                    AbortOnDrop(tokio::spawn(atrium_services::operator::keep_spares(
                        cluster.admin.clone(),
                        spare_schemas as usize,
                    )))
                })
                .collect()
        } else {
            Vec::new()
        };
        let port = listener.local_addr()?.port();
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        eprintln!(
            "atrium: serving on {scheme}://{} (tenants at {scheme}://<subdomain>.{}:{port})",
            listener.local_addr()?,
            settings.base_domain,
        );
        if let Some(made) = demo {
            use atrium_services::demo::{ADMIN_EMAIL, ADMIN_PASSWORD, SUBDOMAIN};
            let host = format!("{SUBDOMAIN}.{}:{port}", settings.base_domain);
            eprintln!(
                "atrium: demo tenant {}: sign in as {ADMIN_EMAIL} / {ADMIN_PASSWORD}, e.g.\n  \
                 TOKEN=$(curl -s http://{host}/api/v1/auth/login -H 'Content-Type: application/json' \
                 -d '{{\"email\": \"{ADMIN_EMAIL}\", \"password\": \"{ADMIN_PASSWORD}\"}}' | \
                 python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])')\n  \
                 curl -s 'http://{host}/api/v1/contacts?q=john' -H \"Authorization: Bearer $TOKEN\"",
                if made { "created" } else { "ready" }
            );
        }
        atrium_http::serve_fleet(
            listener,
            connected.fleet_serving_with(app_db),
            settings,
            shutdown,
        )
        .await
    }
    .await;
    if let Some(app_db) = application_pool {
        app_db.close();
    }
    connected.close().await?;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Registers the handlers now; the future resolves on SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

/// Client connections kept open at most: three quarters of what the
/// open-files limit leaves after the database sessions and files (a few
/// hundred), between 64 and 10,000.
fn max_connections() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1_024, |(soft, _)| soft);
    (soft.saturating_sub(256) * 3 / 4).clamp(64, 10_000) as usize
}

/// Spare tenant schemas kept ready by default.
const DEFAULT_SPARE_SCHEMAS: u32 = 4;

/// Stops a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
