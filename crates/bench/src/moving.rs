//! `atrium bench move`: a tenant of N contacts (and the other tables in
//! proportion) moved between two clusters while a writer runs, against
//! `pg_dump -n schema | pg_restore` of the same schema between the same
//! clusters in the same run; and the API's uniform workload over two
//! clusters against one.
//!
//! Both clusters are throwaway PostgreSQL servers started from this
//! machine's binaries (a move needs `wal_level = logical`); the registry
//! is a scratch database on the server given.

use std::fmt::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atrium_domain::Tier;
use atrium_services::{CurrentUser, Placement, Scope};
use atrium_store::connection::embedded::{ThrowawayCluster, client_program};
use atrium_store::fleet::moving::{MoveOptions, move_tenant};
use atrium_store::registry::directory::TenantDirectory;
use atrium_store::{AdminDatabase, ClusterDatabases, Database, Fleet, ensure_database};

use crate::Scratch;
use crate::fleet::provision_on;

pub struct MoveBench {
    pub contacts: u32,
    pub max_pause: Duration,
    /// Tenants per cluster for the throughput comparison.
    pub tenants: u32,
    /// Seconds per throughput measurement.
    pub seconds: u64,
}

pub async fn run(server: &Database, bench: &MoveBench) -> anyhow::Result<String> {
    let home = Scratch::create(server).await?;
    let result = measure(&home.db, bench).await;
    home.finish(server).await?;
    result
}

/// A throwaway server with an empty `atrium` database: pools to it.
async fn cluster(name: &str) -> anyhow::Result<(ThrowawayCluster, ClusterDatabases, String)> {
    let server = tokio::task::spawn_blocking(ThrowawayCluster::start).await??;
    let postgres = server.postgres_database_url();
    let mut last = None;
    for _ in 0..100 {
        match ensure_database(&postgres, "atrium").await {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(e) = last {
        return Err(e);
    }
    let url = postgres.replacen("/postgres?", "/atrium?", 1);
    let db = Database::connect(&url, 16).await?;
    Ok((
        server,
        ClusterDatabases {
            name: name.to_owned(),
            admin: AdminDatabase::new(db.clone()),
            db,
        },
        url,
    ))
}

async fn measure(home: &Database, bench: &MoveBench) -> anyhow::Result<String> {
    let (source_server, source, _) = cluster("source").await?;
    let (target_server, target, _) = cluster("target").await?;
    let home_admin = AdminDatabase::new(home.clone());
    let fleet = Fleet::new(
        home.clone(),
        home_admin.clone(),
        vec![source.clone(), target.clone()],
    );
    atrium_store::fleet::migrate::migrate_fleet(&fleet, &Default::default(), &|_, _| {}).await?;

    let (tenant, admin_id) = provision_on(&home_admin, &source, "moving", Tier::Large).await?;
    crate::archive::fill(source.admin.database(), &tenant.schema_name, bench.contacts).await?;
    let schema_bytes: i64 = source
        .admin
        .database()
        .connection()
        .await?
        .query_one(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r'",
            &[&tenant.schema_name],
        )
        .await?
        .get(0);

    // The baseline: the same schema dumped and restored between the same
    // two servers, into a database set up as a cluster is.
    let restore_db = target
        .admin
        .database()
        .create_sibling("atrium_restore", 4)
        .await?;
    atrium_store::fleet::migrate::migrate(
        &AdminDatabase::new(restore_db.clone()),
        &Default::default(),
        &|_, _| {},
    )
    .await?;
    let dumped = Instant::now();
    dump_and_restore(source.admin.database(), &restore_db, &tenant.schema_name).await?;
    let dump_restore = dumped.elapsed();
    restore_db.close();

    // The move, with a writer through the application's tenant path.
    let directory = TenantDirectory::start(home.clone()).await?;
    let context = directory
        .resolve("moving")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bench tenant is not in the registry"))?;
    let scope = Scope {
        db: source.db.clone(),
        tenant: context,
        statement_timeout: Duration::from_secs(30),
        placement: Some(Placement {
            directory: directory.clone(),
            fleet: fleet.clone(),
        }),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(scope, admin_id, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let options = MoveOptions {
        max_pause: bench.max_pause,
        ..Default::default()
    };
    let moved_at = Instant::now();
    let report = move_tenant(&fleet, &tenant, "target", &options, &|p| {
        tracing::info!(state = p.state.as_str(), detail = %p.detail, "move");
    })
    .await?;
    let move_seconds = moved_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, errors) = writer.await??;
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };

    let mut out = String::new();
    writeln!(
        out,
        "## Moving a tenant between clusters\n\n\
         A tenant of {} contacts ({:.1} MB of tables), moved from one throwaway PostgreSQL \
         server to another on this machine while one writer creates contacts through the \
         application's tenant path, as fast as it can. `--max-pause` {} ms.\n",
        bench.contacts,
        schema_bytes as f64 / 1e6,
        bench.max_pause.as_millis()
    )?;
    writeln!(out, "| | time | ratio |")?;
    writeln!(out, "| --- | ---: | ---: |")?;
    writeln!(
        out,
        "| `pg_dump -n {} -Fc \\| pg_restore` (baseline) | {:.2} s | 1.00 |",
        tenant.schema_name,
        dump_restore.as_secs_f64()
    )?;
    writeln!(
        out,
        "| the move's copy (subscription made to every table ready) | {:.2} s | {:.2} |",
        report.copy_ms as f64 / 1000.0,
        report.copy_ms as f64 / 1000.0 / dump_restore.as_secs_f64()
    )?;
    writeln!(
        out,
        "| the whole move (checks, copy, cut-over, verification, clean-up) | {move_seconds:.2} s | {:.2} |\n",
        move_seconds / dump_restore.as_secs_f64()
    )?;
    writeln!(
        out,
        "Rows copied: {}; verified: {}; cut-over attempts: {}; the longest write pause the \
         mover held: {} ms.\n",
        report.rows, report.verified, report.cut_over_attempts, report.longest_pause_ms
    )?;
    writeln!(
        out,
        "The writer's {} writes during the run (each a whole tenant transaction): p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; errors: {}.\n",
        latencies.len(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0),
        errors
    )?;
    drop(directory);
    out.push_str(&spread_over_clusters(&fleet, &source, &target, bench).await?);
    fleet.close();
    drop((source_server, target_server));
    Ok(out)
}

/// The API's uniform workloads over tenants of one cluster, then over as
/// many tenants half on each cluster, through one server over the fleet.
async fn spread_over_clusters(
    fleet: &Fleet,
    source: &ClusterDatabases,
    target: &ClusterDatabases,
    bench: &MoveBench,
) -> anyhow::Result<String> {
    use crate::api::{ApiBench, WORKLOADS, api_workload, warm_api};
    let home = &fleet.home().admin;
    let n = bench.tenants.max(2) as usize;
    let mut by_cluster = Vec::new();
    for (cluster, count) in [(source, n), (target, n / 2)] {
        for i in 0..count {
            provision_on(home, cluster, &format!("{}-{i}", cluster.name), Tier::Large).await?;
        }
        // Sessions and records on the cluster; subdomains from the home
        // registry (a cluster's copy of a tenant row keeps none).
        let mut tenants = crate::fixtures::sessions_for_all(cluster.admin.database()).await?;
        tenants.retain(|t| t.schema != "tenant_1");
        let names: std::collections::HashMap<String, String> = home
            .database()
            .connection()
            .await?
            .query("SELECT schema_name, subdomain FROM public.tenants", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for t in &mut tenants {
            t.subdomain = names
                .get(&t.schema)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{} is not in the registry", t.schema))?;
        }
        crate::fixtures::fill_all(cluster.admin.database(), &tenants, 2).await?;
        by_cluster.push(tenants);
    }
    let (on_source, on_target) = (&by_cluster[0], &by_cluster[1]);
    let one = Arc::new(on_source[..n.min(on_source.len())].to_vec());
    let half = n / 2;
    let two = Arc::new(
        on_source[..half]
            .iter()
            .chain(on_target.iter().take(n - half))
            .cloned()
            .collect::<Vec<_>>(),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(atrium_http::serve_fleet(
        listener,
        fleet.clone(),
        atrium_http::ServerSettings::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let settings = ApiBench {
        tenant_counts: vec![n as u32],
        clients: 8,
        seconds: bench.seconds,
        session_max_tenants: atrium_store::CONNECTION_MAX_TENANTS,
        rounds: 1,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.clients)
        .build()?;
    warm_api(&client, addr, &one, settings.clients).await;
    warm_api(&client, addr, &two, settings.clients).await;
    let mut out = String::new();
    writeln!(
        out,
        "### Two clusters against one\n\n\
         The same uniform workload (8 clients, {} s each, requests spread evenly) over {n} \
         tenants on one cluster, then over {n} tenants half on each of two clusters, \
         through one server over both. Both clusters share this machine's two cores, so \
         the figure to read is the ratio: routing by cluster costs nothing measurable \
         when it is near 1.\n",
        bench.seconds
    )?;
    writeln!(out, "| workload | one cluster | two clusters | ratio |")?;
    writeln!(out, "| --- | ---: | ---: | ---: |")?;
    for kind in [0, 2, 4] {
        let single = api_workload(&client, addr, &one, one.len(), kind, &settings).await;
        let spread = api_workload(&client, addr, &two, two.len(), kind, &settings).await;
        writeln!(
            out,
            "| {} | {:.0} req/s | {:.0} req/s | {:.2} |",
            WORKLOADS[kind],
            single.per_second,
            spread.per_second,
            spread.per_second / single.per_second.max(1e-9)
        )?;
    }
    drop(client);
    let _ = stop.send(());
    server.await??;
    Ok(out)
}

/// `pg_dump --schema=<schema> -Fc` from the source piped into
/// `pg_restore` on the restore database.
async fn dump_and_restore(
    source: &Database,
    restore: &Database,
    schema: &str,
) -> anyhow::Result<()> {
    let (pg_dump, pg_restore) = (client_program("pg_dump")?, client_program("pg_restore")?);
    let mut dump = tokio::process::Command::new(pg_dump)
        .envs(source.libpq_env())
        .args([
            "--format=custom",
            "--compress=0",
            "--no-owner",
            "--no-privileges",
        ])
        .arg(format!("--schema={schema}"))
        .stdout(Stdio::piped())
        .spawn()?;
    let dump_out: Stdio = dump
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no pg_dump output"))?
        .try_into()?;
    let restore = tokio::process::Command::new(pg_restore)
        .envs(restore.libpq_env())
        .args(["--no-owner", "--no-privileges", "--exit-on-error"])
        .arg(format!("--dbname={}", restore.dbname()))
        .stdin(dump_out)
        .output()
        .await?;
    let dumped = dump.wait().await?;
    anyhow::ensure!(dumped.success(), "pg_dump failed");
    anyhow::ensure!(
        restore.status.success(),
        "pg_restore failed: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    Ok(())
}

/// Creates contacts one transaction at a time until `stop`; each write's
/// time, and the number that failed.
async fn write_until(
    scope: Scope,
    admin_id: i32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let me = scope
        .run(async |tx| {
            let admin = atrium_store::users::get(tx, admin_id, false)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no bench admin"))?;
            CurrentUser::new(admin, 0)
        })
        .await?;
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let written = scope
            .run(async |tx| {
                atrium_services::records::create(
                    tx,
                    &me,
                    &atrium_domain::records::CONTACT,
                    serde_json::json!({"first_name": "Writer", "last_name": format!("n{n}")}),
                )
                .await
            })
            .await;
        latencies.push(started.elapsed());
        if let Err(e) = written {
            errors += 1;
            tracing::warn!(error = %e, "a bench write failed");
        }
    }
    Ok((latencies, errors))
}
