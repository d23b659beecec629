//! An additive migration across many tenants against a raw loop of the same
//! statements, and the cost of a migrate with nothing to do.

use atrium_store::AdminDatabase;
use std::fmt::Write;
use std::time::{Duration, Instant};

use atrium_store::Database;
use atrium_store::fleet::migrate::{self, MigrateOptions, MigrationFile, MigrationSets};

use crate::fleet::provision_many;
use crate::{Scratch, ms};

pub struct MigrateBench {
    pub tenants: u32,
}

pub async fn run(server: &Database, bench: &MigrateBench) -> anyhow::Result<String> {
    let mut report = String::new();
    writeln!(report, "## Migrating {} tenants\n", bench.tenants)?;

    let small = Scratch::create(server).await?;
    let small_noop = noop_queries(&small.db, MigrationSets::embedded(), 10).await;
    small.finish(server).await?;

    let scratch = Scratch::create(server).await?;
    let result = async {
        let sets = measure(&scratch.db, bench, &mut report).await?;
        noop_queries(&scratch.db, sets, 0).await
    }
    .await;
    scratch.finish(server).await?;
    let (small_noop, large_noop) = (small_noop?, result?);
    writeln!(
        report,
        "\nA `migrate` with nothing pending sent {small_noop} statements at 10 tenants and \
         {large_noop} at {} tenants.",
        bench.tenants
    )?;
    Ok(report)
}

/// Adds `extra` tenants, then counts the statements of a no-op migrate.
pub(crate) async fn noop_queries(
    db: &Database,
    sets: MigrationSets,
    extra: u32,
) -> anyhow::Result<usize> {
    if extra > 0 {
        provision_many(db, "noop", extra, 2).await?;
    }
    let report = migrate::migrate_sets(
        &AdminDatabase::new(db.clone()),
        sets,
        &MigrateOptions::default(),
        &|_, _| {},
    )
    .await?;
    anyhow::ensure!(report.tenants_migrated == 0, "expected nothing pending");
    Ok(report.queries)
}

/// Returns the migration sets the database ends at.
async fn measure(
    db: &Database,
    bench: &MigrateBench,
    report: &mut String,
) -> anyhow::Result<MigrationSets> {
    let started = Instant::now();
    provision_many(db, "t", bench.tenants, 2).await?;
    writeln!(
        report,
        "Provisioned {} tenants in {:.1} s.\n",
        bench.tenants,
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        report,
        "Each run adds one column to `contacts` in every tenant, one transaction per tenant. \
         *Raw loop*: `BEGIN; SET LOCAL search_path; ALTER TABLE ...; COMMIT` per tenant over one \
         session. *Atrium*: `migrate` with the same statement as a new migration file \
         (checked against the registry, recorded, registry version bumped).\n"
    )?;
    writeln!(
        report,
        "Every run starts on fresh sessions, as a separate migration run would. Two rounds, to \
         show the spread; ratios are against the raw loop of the same round.\n"
    )?;
    writeln!(report, "| round | run | total | per tenant | vs raw loop |")?;
    writeln!(report, "| --- | --- | ---: | ---: | ---: |")?;
    let mut sets = MigrationSets::embedded();
    let per = |d: Duration| ms(d / bench.tenants);
    for round in 1..=2 {
        let raw = raw_loop(db, &format!("raw_{round}")).await?;
        let jobs1 = migrator(db, &mut sets, &format!("atrium_{round}_a"), 1).await?;
        let jobs2 = migrator(db, &mut sets, &format!("atrium_{round}_b"), 2).await?;
        let jobs4 = migrator(db, &mut sets, &format!("atrium_{round}_c"), 4).await?;
        for (label, d) in [
            ("raw loop", raw),
            ("atrium migrate --jobs 1", jobs1),
            ("atrium migrate --jobs 2", jobs2),
            ("atrium migrate --jobs 4 (the default)", jobs4),
        ] {
            writeln!(
                report,
                "| {round} | {label} | {:.2} s | {} | {:.2}× |",
                d.as_secs_f64(),
                per(d),
                d.as_secs_f64() / raw.as_secs_f64()
            )?;
        }
    }
    Ok(sets)
}

/// Each run starts on fresh sessions, as a migration run of its own would:
/// a session's catalog caches warm up with every schema it touches.
pub(crate) async fn raw_loop(db: &Database, column: &str) -> anyhow::Result<Duration> {
    let session = db.dedicated_connection().await?;
    let schemas: Vec<String> = session
        .query("SELECT schema_name FROM public.tenants ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let started = Instant::now();
    for schema in &schemas {
        session
            .batch_execute(&format!(
                "BEGIN; SET LOCAL search_path = {schema}, extensions; \
                 ALTER TABLE contacts ADD COLUMN {column} VARCHAR(255); COMMIT;"
            ))
            .await?;
    }
    Ok(started.elapsed())
}

pub(crate) async fn migrator(
    db: &Database,
    sets: &mut MigrationSets,
    column: &str,
    jobs: usize,
) -> anyhow::Result<Duration> {
    let mut tenant: Vec<MigrationFile> =
        sets.tenant.iter().map(|f| MigrationFile { ..*f }).collect();
    tenant.push(MigrationFile {
        version: sets.latest_tenant_version() + 1,
        name: "bench_add_column",
        sql: Box::leak(
            format!("ALTER TABLE contacts ADD COLUMN {column} VARCHAR(255);").into_boxed_str(),
        ),
    });
    sets.tenant = Vec::leak(tenant);
    let options = MigrateOptions {
        jobs,
        ..Default::default()
    };
    let fresh = db.resized(jobs).await?;
    let started = Instant::now();
    let report = migrate::migrate_sets(
        &AdminDatabase::new(fresh.clone()),
        *sets,
        &options,
        &|_, _| {},
    )
    .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        report.failures.is_empty(),
        "{} tenants failed: {}",
        report.failures.len(),
        report.failures[0].error
    );
    Ok(elapsed)
}
