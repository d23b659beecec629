//! Provisioning one tenant against running the same DDL directly.

use atrium_store::AdminDatabase;
use std::fmt::Write;
use std::time::{Duration, Instant};

use atrium_store::Database;
use atrium_store::fleet::migrate::MigrationSets;
use atrium_store::fleet::spares;

use crate::fleet::{provision_many, provision_one};
use crate::{Scratch, median, ms};

pub struct ProvisionBench {
    pub existing: u32,
    pub samples: u32,
}

pub async fn run(server: &Database, bench: &ProvisionBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch.db, bench).await;
    scratch.finish(server).await?;
    result
}

async fn measure(db: &Database, bench: &ProvisionBench) -> anyhow::Result<String> {
    let mut report = String::new();
    writeln!(report, "## Provisioning one tenant\n")?;
    writeln!(
        report,
        "Median of {} samples each, interleaved. *Raw DDL*: `CREATE SCHEMA` and every tenant \
         migration file in one transaction on one session. *Atrium*: the provisioning path \
         (registry row, counters row, schema, role, migrations, grants, default stages, first \
         admin with a precomputed hash, notify), with the spare pool empty. *From a spare*: \
         the same call with one spare schema ready (made beforehand, not timed): a rename of \
         schema and role, the registry and counters rows and the first admin.\n",
        bench.samples
    )?;
    writeln!(
        report,
        "| existing tenants | raw DDL | Atrium | Atrium / raw | from a spare | full path / spare |"
    )?;
    writeln!(report, "| ---: | ---: | ---: | ---: | ---: | ---: |")?;
    let mut serial = 0u32;
    let first = round(db, bench.samples, &mut serial).await?;
    row(&mut report, 0, first)?;
    if bench.existing > 0 {
        let started = Instant::now();
        provision_many(db, "fill", bench.existing, 2).await?;
        let fill = started.elapsed();
        let second = round(db, bench.samples, &mut serial).await?;
        row(&mut report, bench.existing, second)?;
        writeln!(
            report,
            "\nCreating the {} existing tenants (2 at a time) took {:.1} s ({} per tenant).",
            bench.existing,
            fill.as_secs_f64(),
            ms(fill / bench.existing)
        )?;
    }
    Ok(report)
}

fn row(
    report: &mut String,
    existing: u32,
    (raw, atrium, from_spare): (Duration, Duration, Duration),
) -> anyhow::Result<()> {
    writeln!(
        report,
        "| {existing} | {} | {} | {:.2}× | {} | {:.1}× |",
        ms(raw),
        ms(atrium),
        atrium.as_secs_f64() / raw.as_secs_f64(),
        ms(from_spare),
        atrium.as_secs_f64() / from_spare.as_secs_f64()
    )?;
    Ok(())
}

/// `CREATE SCHEMA` and every tenant migration file in one transaction, run
/// directly and timed; the schema is dropped again afterwards (not timed).
pub(crate) async fn raw_ddl(db: &Database, schema: &str) -> anyhow::Result<Duration> {
    let ddl: String = MigrationSets::embedded()
        .tenant
        .iter()
        .map(|f| f.sql)
        .collect::<Vec<_>>()
        .join("\n");
    let session = db.connection().await?;
    let started = Instant::now();
    session
        .batch_execute(&format!(
            "BEGIN; CREATE SCHEMA {schema}; SET LOCAL search_path = {schema}, extensions; {ddl}; COMMIT;"
        ))
        .await?;
    let elapsed = started.elapsed();
    session
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;
    Ok(elapsed)
}

async fn round(
    db: &Database,
    samples: u32,
    serial: &mut u32,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let mut raw = Vec::new();
    let mut atrium = Vec::new();
    let mut from_spare = Vec::new();
    for _ in 0..samples {
        *serial += 1;
        raw.push(raw_ddl(db, &format!("raw_{serial}")).await?);

        let started = Instant::now();
        provision_one(db, &format!("sample-{serial}")).await?;
        atrium.push(started.elapsed());
    }
    // Apart from the samples above: making spares is DDL, and its cache
    // invalidations would land in the other two measurements.
    for _ in 0..samples {
        // One spare made (not timed), then taken.
        spares::refill(
            &AdminDatabase::new(db.clone()),
            &MigrationSets::embedded(),
            1,
        )
        .await?;
        *serial += 1;
        let started = Instant::now();
        provision_one(db, &format!("spare-{serial}")).await?;
        from_spare.push(started.elapsed());
    }
    Ok((
        median(&mut raw),
        median(&mut atrium),
        median(&mut from_spare),
    ))
}
