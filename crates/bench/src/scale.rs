//! The whole fleet in one run (`atrium bench fleet --tenants N`):
//! provisioning at the start and at the end, a fleet migration, the
//! operator's commands, API throughput spread over every tenant and over a
//! hot set, and the memory it all leaves behind.

use atrium_store::AdminDatabase;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atrium_store::Database;
use atrium_store::fleet::migrate::MigrationSets;

use crate::api::{ApiBench, WORKLOADS, api_load, row, sql_load};
use crate::fixtures::{fill_all, large_tier_for_all, sessions_for_all};
use crate::fleet::{provision_many, provision_one};
use crate::migrate::{migrator, noop_queries, raw_loop};
use crate::{Scratch, median, ms};

pub struct FleetBench {
    pub tenants: u32,
    pub clients: usize,
    pub seconds: u64,
    /// Tenants provisioned and filled at once.
    pub jobs: usize,
}

/// The hot set of the API measurements.
const HOT: usize = 100;
/// Measurements of each workload and spread, taking turns; the median is
/// reported. 5-second measurements on a shared 2-core machine can each
/// meet a burst of someone else's work.
const API_ROUNDS: usize = 3;
/// Runs of each side of the fleet migration.
const MIGRATION_ROUNDS: u32 = 2;
/// Provisioning samples at the start and at the end.
const SAMPLES: u32 = 10;

pub async fn run(server: &Database, bench: &FleetBench) -> anyhow::Result<String> {
    if let Some(scratch) = Scratch::reused(server).await? {
        // Only the API part, over the fleet an earlier run made and kept.
        let mut report = String::new();
        let n = atrium_store::registry::totals(&scratch.db)
            .await?
            .tenant_count;
        writeln!(report, "## The API over a kept fleet of {n} tenants\n")?;
        writeln!(report, "{}\n", server_settings(&scratch.db).await?)?;
        api_part(&scratch, bench, &mut report).await?;
        return Ok(report);
    }
    let small = Scratch::create(server).await?;
    let small_noop = noop_queries(&small.db, MigrationSets::embedded(), 10).await;
    small.finish(server).await?;
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch, bench, small_noop?).await;
    scratch.finish(server).await?;
    result
}

/// Medians of one tenant's provisioning at this size of the fleet.
struct ProvisionSamples {
    /// `CREATE SCHEMA` and the migrations, run directly.
    raw: Duration,
    /// Atrium's full path, the spare pool empty.
    full: Duration,
    /// From a spare (one made before each sample, not timed).
    spare: Duration,
}

/// Each kind of sample starts from a checkpoint, so that the figures at
/// 100 and at N compare the catalog's size, not how much WAL the
/// provisioning just before them left to write: right after creating
/// thousands of tenants, PostgreSQL is checkpointing continuously, and
/// every catalog page touched after a checkpoint is logged whole. The
/// spare samples come last: making a spare is DDL, whose cache
/// invalidations would land in the other samples.
async fn provision_samples(db: &Database, prefix: &str) -> anyhow::Result<ProvisionSamples> {
    let (mut raw, mut full, mut spare) = (Vec::new(), Vec::new(), Vec::new());
    checkpoint(db).await?;
    for i in 0..SAMPLES {
        raw.push(crate::provision::raw_ddl(db, &format!("raw_{prefix}_{i}")).await?);
    }
    checkpoint(db).await?;
    for i in 0..SAMPLES {
        let started = Instant::now();
        provision_one(db, &format!("{prefix}-{i}")).await?;
        full.push(started.elapsed());
    }
    checkpoint(db).await?;
    for i in 0..SAMPLES {
        atrium_store::fleet::spares::refill(
            &AdminDatabase::new(db.clone()),
            &MigrationSets::embedded(),
            1,
        )
        .await?;
        let started = Instant::now();
        provision_one(db, &format!("{prefix}-spare-{i}")).await?;
        spare.push(started.elapsed());
    }
    Ok(ProvisionSamples {
        raw: median(&mut raw),
        full: median(&mut full),
        spare: median(&mut spare),
    })
}

async fn timed<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    work.await?;
    Ok(started.elapsed())
}

async fn measure(
    scratch: &Scratch,
    bench: &FleetBench,
    small_noop: usize,
) -> anyhow::Result<String> {
    let db = &scratch.db;
    let n = bench.tenants.max(HOT as u32 + 4 * SAMPLES);
    let whole = Instant::now();
    let mut report = String::new();
    writeln!(report, "## A fleet of {n} tenants\n")?;
    writeln!(report, "{}\n", server_settings(db).await?)?;

    // Provisioning at about 100 tenants and at N, the full path each time.
    provision_many(db, "early", HOT as u32 - 2 * SAMPLES, bench.jobs).await?;
    let at_start = provision_samples(db, "start").await?;
    let started = Instant::now();
    provision_many(db, "fleet", n - HOT as u32 - 2 * SAMPLES, bench.jobs).await?;
    let provisioning_all = started.elapsed();
    let at_end = provision_samples(db, "end").await?;

    // A small, realistic data set in every tenant.
    let tenants = sessions_for_all(db).await?;
    let started = Instant::now();
    fill_all(db, &tenants, bench.jobs).await?;
    let filling = started.elapsed();
    writeln!(
        report,
        "Provisioned {n} tenants ({} at a time) in {:.0} s and gave each 200 contacts and 100 \
         deals in {:.0} s.\n",
        bench.jobs,
        provisioning_all.as_secs_f64()
            + (at_start.full + at_start.spare + at_end.full + at_end.spare).as_secs_f64()
                * f64::from(SAMPLES),
        filling.as_secs_f64()
    )?;

    writeln!(
        report,
        "### Provisioning one tenant (median of {SAMPLES})\n\n*Raw DDL*: `CREATE SCHEMA` and \
         every tenant migration in one transaction, run directly. *Full path*: Atrium with the \
         spare pool empty. *From a spare*: a spare schema ready (made beforehand, not timed), \
         renamed. Each kind starts from a `CHECKPOINT`.\n"
    )?;
    writeln!(
        report,
        "| path | at {HOT} tenants | at {n} tenants | at {n} / at {HOT} |"
    )?;
    writeln!(report, "| --- | ---: | ---: | ---: |")?;
    for (label, start, end) in [
        ("raw DDL", at_start.raw, at_end.raw),
        ("full path", at_start.full, at_end.full),
        ("from a spare", at_start.spare, at_end.spare),
    ] {
        writeln!(
            report,
            "| {label} | {} | {} | {:.2}× |",
            ms(start),
            ms(end),
            end.as_secs_f64() / start.as_secs_f64()
        )?;
    }
    writeln!(
        report,
        "\nAt {n} tenants a spare is {:.1}× faster than the full path, and the full path takes \
         {:.2}× the raw DDL.\n",
        at_end.full.as_secs_f64() / at_end.spare.as_secs_f64(),
        at_end.full.as_secs_f64() / at_end.raw.as_secs_f64()
    )?;

    // `check` while every schema matches `template`: the migration
    // benchmark below adds columns to the tenants behind the migrator's
    // back (its raw loop), after which every schema has drifted.
    let (healthy_check, healthy_drifted) = timed_check(db).await?;

    // A fleet migration.
    let mut sets = MigrationSets::embedded();
    let jobs = atrium_store::fleet::migrate::MigrateOptions::default().jobs;
    // Twice each, taking turns, each from a CHECKPOINT: a checkpoint that
    // falls during one of them weighs on both sides alike.
    let (mut raw, mut atrium) = (Duration::ZERO, Duration::ZERO);
    for round in 0..MIGRATION_ROUNDS {
        checkpoint(db).await?;
        raw += raw_loop(db, &format!("fleet_raw_{round}")).await?;
        checkpoint(db).await?;
        atrium += migrator(db, &mut sets, &format!("fleet_atrium_{round}"), jobs).await?;
    }
    let (raw, atrium) = (raw / MIGRATION_ROUNDS, atrium / MIGRATION_ROUNDS);
    let large_noop = noop_queries(db, sets, 0).await?;
    writeln!(
        report,
        "### Migrating every tenant\n\nOne column added to `contacts` in every tenant; each side \
         ran {MIGRATION_ROUNDS} times, taking turns, each from a `CHECKPOINT`: the mean of its runs.\n"
    )?;
    writeln!(report, "| run | total | per tenant | vs raw loop |")?;
    writeln!(report, "| --- | ---: | ---: | ---: |")?;
    for (label, d) in [
        ("raw loop, one transaction per tenant", raw),
        (
            &format!("atrium migrate (default --jobs {jobs})") as &str,
            atrium,
        ),
    ] {
        writeln!(
            report,
            "| {label} | {:.1} s | {} | {:.2}× |",
            d.as_secs_f64(),
            ms(d / n),
            d.as_secs_f64() / raw.as_secs_f64()
        )?;
    }
    writeln!(
        report,
        "\nWith nothing pending, `migrate` sent {small_noop} statements at 10 tenants and \
         {large_noop} at {n}.\n"
    )?;

    // The operator's commands.
    let (drifted_check, drifted) = timed_check(db).await?;
    let stats = timed(async { atrium_store::registry::totals(db).await.map(|_| ()) }).await?;
    let list = timed(async {
        atrium_services::tenants::list_all(&atrium_store::Fleet::single(
            db.clone(),
            AdminDatabase::new(db.clone()),
        ))
        .await
        .map(|_| ())
        .map_err(anyhow::Error::from)
    })
    .await?;
    writeln!(report, "### The operator's commands at {n} tenants\n")?;
    writeln!(
        report,
        "| `check`, {healthy_drifted} drifted | `check`, {drifted} drifted | `stats` | `tenant list` |"
    )?;
    writeln!(report, "| ---: | ---: | ---: | ---: |")?;
    writeln!(
        report,
        "| {} | {} | {} | {} |\n",
        ms(healthy_check),
        ms(drifted_check),
        ms(stats),
        ms(list)
    )?;
    writeln!(
        report,
        "`check` ran first with every schema matching `template`, and again after the \
         migration benchmark's raw loop had added columns to every tenant and not to \
         `template`.\n"
    )?;

    api_part(scratch, bench, &mut report).await?;
    writeln!(
        report,
        "\nThe whole run took {:.1} min.",
        whole.elapsed().as_secs_f64() / 60.0
    )?;
    Ok(report)
}

/// How long `atrium check` takes, and how many schemas it finds drifted.
async fn timed_check(db: &Database) -> anyhow::Result<(Duration, usize)> {
    let started = std::time::Instant::now();
    let report = atrium_store::fleet::check::check(&AdminDatabase::new(db.clone())).await?;
    Ok((started.elapsed(), report.drifted.len()))
}

/// The PostgreSQL settings the fleet's figures depend on most.
async fn server_settings(db: &Database) -> anyhow::Result<String> {
    let row = db
        .connection()
        .await?
        .query_one(
            "SELECT current_setting('server_version'), current_setting('shared_buffers'),
                    current_setting('max_files_per_process')",
            &[],
        )
        .await?;
    let (version, buffers, files): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    Ok(format!(
        "PostgreSQL {version}: `shared_buffers` {buffers}, `max_files_per_process` {files} \
         (docs/operations.md, \"PostgreSQL for a large fleet\")."
    ))
}

/// The API, spread over every tenant and over a hot set, and the memory of
/// PostgreSQL's backends afterwards.
async fn api_part(
    scratch: &Scratch,
    bench: &FleetBench,
    report: &mut String,
) -> anyhow::Result<()> {
    let db = &scratch.db;
    let api_bench = ApiBench {
        tenant_counts: vec![],
        clients: bench.clients,
        seconds: bench.seconds,
        session_max_tenants: atrium_store::CONNECTION_MAX_TENANTS,
        rounds: API_ROUNDS,
    };
    large_tier_for_all(db).await?;
    let tenants = Arc::new(sessions_for_all(db).await?);
    // The writes of filling and migrating the fleet are on disk before the
    // first measurement, not written out during it.
    checkpoint(db).await?;
    let mut memory = None;
    let spreads = [tenants.len(), HOT];
    let [uniform_api, hot_api]: [_; 2] = api_load(db, &tenants, &spreads, &api_bench, &mut memory)
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("one API run per spread"))?;
    let [uniform_sql, hot_sql]: [_; 2] = sql_load(scratch, &tenants, &spreads, &api_bench)
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("one SQL run per spread"))?;
    writeln!(
        report,
        "### API against direct SQL\n\n{} clients, {} s per measurement. *Uniform*: requests \
         spread over all {n} tenants. *Hot*: over the first {HOT}. The server warms up over \
         every tenant once, then the two spreads take turns, workload by workload (the direct \
         SQL likewise), {API_ROUNDS} times each: the median by throughput is shown. Tenants \
         are large-tier here, so no tenant's request rate caps the measurement.\n",
        bench.clients,
        bench.seconds,
        n = tenants.len(),
    )?;
    writeln!(
        report,
        "| spread | workload | API req/s | API p50 | API p99 | SQL tx/s | SQL p50 | SQL p99 | API / SQL |"
    )?;
    writeln!(
        report,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let labels = WORKLOADS;
    let mut body = String::new();
    for (spread, api, sql) in [
        ("uniform", &uniform_api, &uniform_sql),
        ("hot", &hot_api, &hot_sql),
    ] {
        for (i, label) in labels.iter().enumerate() {
            row(&mut body, 0, label, api.results[i], sql[i])?;
        }
        // `row` writes the tenant count first; here the spread is the key.
        report.push_str(&body.replace("| 0 |", &format!("| {spread} |")));
        body.clear();
    }
    writeln!(
        report,
        "\n*Uniform*: {}\n\n*Hot*: {}",
        uniform_api.pool_sentence(),
        hot_api.pool_sentence()
    )?;
    writeln!(report, "\nUniform API throughput against the hot set's:\n")?;
    writeln!(report, "| workload | uniform / hot |")?;
    writeln!(report, "| --- | ---: |")?;
    for (i, label) in labels.iter().enumerate() {
        writeln!(
            report,
            "| {label} | {:.2}× |",
            uniform_api.results[i].per_second / hot_api.results[i].per_second
        )?;
    }
    if let Some(memory) = memory {
        let (server_median, server_max) =
            crate::memory::median_and_max_mib(&memory.server_backends_kib);
        let (other_median, other_max) =
            crate::memory::median_and_max_mib(&memory.other_backends_kib);
        writeln!(
            report,
            "\n### Memory after the measurements\n\nThis process (server and load generator): \
             {:.0} MiB resident.\n\n| PostgreSQL backends | count | private median | private largest |\n\
             | --- | ---: | ---: | ---: |\n\
             | the server's pool | {} | {server_median:.1} MiB | {server_max:.1} MiB |\n\
             | the benchmark's own sessions | {} | {other_median:.1} MiB | {other_max:.1} MiB |",
            memory.process_mib(),
            memory.server_backends_kib.len(),
            memory.other_backends_kib.len(),
        )?;
        if let Some(query) = &memory.largest_other_query {
            writeln!(
                report,
                "\nThe largest of the benchmark's own last ran: `{}`",
                query.split_whitespace().collect::<Vec<_>>().join(" ")
            )?;
        }
    }
    Ok(())
}

/// Writes out every dirty page now, so that the next measurement neither
/// waits for the writes of what came before it nor logs whole pages
/// because a checkpoint started during it.
async fn checkpoint(db: &Database) -> anyhow::Result<()> {
    db.connection().await?.batch_execute("CHECKPOINT").await?;
    Ok(())
}
