//! Provisioning one tenant against running the same DDL directly.

use std::fmt::Write;
use std::time::{Duration, Instant};

use atrium_store::Database;
use atrium_store::migrate::MigrationSets;

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
         admin with a precomputed hash, notify).\n",
        bench.samples
    )?;
    writeln!(
        report,
        "| existing tenants | raw DDL | Atrium | Atrium / raw |"
    )?;
    writeln!(report, "| ---: | ---: | ---: | ---: |")?;
    let mut serial = 0u32;
    let (raw, atrium) = round(db, bench.samples, &mut serial).await?;
    row(&mut report, 0, raw, atrium)?;
    if bench.existing > 0 {
        let started = Instant::now();
        provision_many(db, "fill", bench.existing, 2).await?;
        let fill = started.elapsed();
        let (raw, atrium) = round(db, bench.samples, &mut serial).await?;
        row(&mut report, bench.existing, raw, atrium)?;
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

fn row(report: &mut String, existing: u32, raw: Duration, atrium: Duration) -> anyhow::Result<()> {
    writeln!(
        report,
        "| {existing} | {} | {} | {:.2}× |",
        ms(raw),
        ms(atrium),
        atrium.as_secs_f64() / raw.as_secs_f64()
    )?;
    Ok(())
}

async fn round(
    db: &Database,
    samples: u32,
    serial: &mut u32,
) -> anyhow::Result<(Duration, Duration)> {
    let mut raw = Vec::new();
    let mut atrium = Vec::new();
    let ddl: String = MigrationSets::embedded()
        .tenant
        .iter()
        .map(|f| f.sql)
        .collect::<Vec<_>>()
        .join("\n");
    for _ in 0..samples {
        *serial += 1;
        let schema = format!("raw_{serial}");
        let session = db.session().await?;
        let started = Instant::now();
        session
            .batch_execute(&format!(
                "BEGIN; CREATE SCHEMA {schema}; SET LOCAL search_path = {schema}, extensions; {ddl}; COMMIT;"
            ))
            .await?;
        raw.push(started.elapsed());
        session
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await?;
        drop(session);

        let started = Instant::now();
        provision_one(db, &format!("sample-{serial}")).await?;
        atrium.push(started.elapsed());
    }
    Ok((median(&mut raw), median(&mut atrium)))
}
