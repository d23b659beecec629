//! Tenant export and import against plain `COPY` of the same tables.

use atrium_store::AdminDatabase;
use std::fmt::Write;
use std::time::{Duration, Instant};

use atrium_domain::Subdomain;
use atrium_store::fleet::archive::{self, ARCHIVED_TABLES, ImportTarget};
use atrium_store::fleet::migrate::MigrationSets;
use atrium_store::{Database, quote_ident, registry};
use futures::{SinkExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use crate::Scratch;
use crate::fleet::provision_one;

pub struct ArchiveBench {
    pub contacts: u32,
}

pub async fn run(server: &Database, bench: &ArchiveBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch.db, bench).await;
    scratch.finish(server).await?;
    result
}

/// Companies, deals, deal contacts, activities and audit events in
/// proportion to the contacts.
pub(crate) async fn fill(db: &Database, schema: &str, contacts: u32) -> anyhow::Result<()> {
    let companies = (contacts / 10).max(1);
    let deals = (contacts / 5).max(1);
    let activities = contacts / 2;
    let session = db.connection().await?;
    session
        .batch_execute(&format!(
            "SET search_path = {schema};
             INSERT INTO companies (name, domain, industry, city, country, employee_count, annual_revenue, created_by)
               SELECT 'Company ' || g, 'company' || g || '.example', 'Software', 'Lyon', 'FR', g % 500, g * 1000.5, 1
               FROM generate_series(1, {companies}) g;
             UPDATE companies SET parent_company_id = id - 1 WHERE id % 10 <> 1;
             INSERT INTO contacts (first_name, last_name, email, phone, company_id, custom_fields, created_by)
               SELECT (ARRAY['Ann','Bob','Chidi','Élodie','Farid'])[1 + g % 5], 'Name' || g,
                      'person' || g || '@example.com', '+33 1 ' || g, 1 + g % {companies},
                      jsonb_build_object('score', g % 100), 1
               FROM generate_series(1, {contacts}) g;
             INSERT INTO deals (title, value, stage, primary_contact_id, company_id, owner_id, expected_close_date, created_by)
               SELECT 'Deal ' || g, g * 10.25, (ARRAY['lead','qualified','proposal','won','lost'])[1 + g % 5],
                      1 + g % {contacts}, 1 + g % {companies}, 1, DATE '2026-01-01' + g % 365, 1
               FROM generate_series(1, {deals}) g;
             INSERT INTO activities (kind, subject, body, contact_id, deal_id, created_by)
               SELECT 'call', 'Call ' || g, 'Talked about the renewal; next step in a week.',
                      1 + g % {contacts}, 1 + g % {deals}, 1
               FROM generate_series(1, {activities}) g;
             INSERT INTO deal_contacts (deal_id, contact_id, role, created_by)
               SELECT g, 1 + (g * 7) % {contacts}, 'decision_maker', 1 FROM generate_series(1, {deals}) g;
             INSERT INTO custom_field_definitions (entity, key, label, type, created_by)
               VALUES ('contact', 'score', 'Score', 'number', 1);
             INSERT INTO audit_events (entity, entity_id, action, user_id, changes)
               SELECT 'contact', g, 'create', 1, '{{}}' FROM generate_series(1, {contacts}) g;
             ANALYZE;"
        ))
        .await?;
    Ok(())
}

async fn measure(db: &Database, bench: &ArchiveBench) -> anyhow::Result<String> {
    provision_one(db, "source").await?;
    let source = registry::find_by_subdomain(db, "source").await?;
    fill(db, &source.schema_name, bench.contacts).await?;
    let dir = tempfile::tempdir()?;
    let archive_path = dir.path().join("source.atrium");

    // Interleaved: each side reads and writes the same tables, each file
    // on the same disk.
    let started = Instant::now();
    let file = tokio::fs::File::create(&archive_path).await?;
    let exported = archive::export(&AdminDatabase::new(db.clone()), &source, file).await?;
    let export_time = started.elapsed();

    let copy_dir = dir.path().join("copy");
    std::fs::create_dir(&copy_dir)?;
    let copy_out_time = copy_out(db, &source.schema_name, &copy_dir).await?;

    let started = Instant::now();
    let subdomain = Subdomain::parse("imported")?;
    archive::import(
        &AdminDatabase::new(db.clone()),
        &MigrationSets::embedded(),
        tokio::fs::File::open(&archive_path).await?,
        &ImportTarget {
            subdomain: &subdomain,
            name: None,
        },
    )
    .await?;
    let import_time = started.elapsed();

    provision_one(db, "plain-copy").await?;
    let target = registry::find_by_subdomain(db, "plain-copy").await?;
    let copy_in_time = copy_in(db, &target.schema_name, &copy_dir).await?;

    let rows = exported.rows();
    let mut report = String::new();
    writeln!(report, "## Tenant export and import against COPY\n")?;
    writeln!(
        report,
        "One tenant of {} contacts, {} rows in all ({}), {:.1} MiB of archive. *Export*: \
         `atrium tenant export` to a file. *`COPY TO`*: each table to a file of its own. \
         *Import*: `atrium tenant import`, from the new tenant's registry row and schema to the \
         checksums, the sequences and the commit. *`COPY FROM`*: the same files into an empty \
         tenant's tables in one transaction.\n",
        bench.contacts,
        rows,
        exported
            .tables
            .iter()
            .map(|t| format!("{} {}", t.rows, t.name))
            .collect::<Vec<_>>()
            .join(", "),
        exported.bytes as f64 / (1024.0 * 1024.0)
    )?;
    writeln!(
        report,
        "| direction | Atrium | rows/s | plain `COPY` | rows/s | Atrium / `COPY` |"
    )?;
    writeln!(report, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for (label, atrium, plain) in [
        ("export", export_time, copy_out_time),
        ("import", import_time, copy_in_time),
    ] {
        writeln!(
            report,
            "| {label} | {:.2} s | {:.0} | {:.2} s | {:.0} | {:.2}× |",
            atrium.as_secs_f64(),
            rows as f64 / atrium.as_secs_f64(),
            plain.as_secs_f64(),
            rows as f64 / plain.as_secs_f64(),
            atrium.as_secs_f64() / plain.as_secs_f64()
        )?;
    }
    Ok(report)
}

async fn copy_out(db: &Database, schema: &str, dir: &std::path::Path) -> anyhow::Result<Duration> {
    let session = db.connection().await?;
    let started = Instant::now();
    for table in ARCHIVED_TABLES {
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(dir.join(table)).await?);
        let stream = session
            .copy_out(&format!("COPY {}.{table} TO STDOUT", quote_ident(schema)))
            .await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
    }
    Ok(started.elapsed())
}

async fn copy_in(db: &Database, schema: &str, dir: &std::path::Path) -> anyhow::Result<Duration> {
    let session = db.connection().await?;
    let q_schema = quote_ident(schema);
    let all: Vec<String> = ARCHIVED_TABLES
        .iter()
        .map(|t| format!("{q_schema}.{t}"))
        .collect();
    session
        .batch_execute(&format!("TRUNCATE {} CASCADE", all.join(", ")))
        .await?;
    let started = Instant::now();
    session.batch_execute("BEGIN").await?;
    for table in ARCHIVED_TABLES {
        let bytes = tokio::fs::read(dir.join(table)).await?;
        let sink = session
            .copy_in::<_, bytes::Bytes>(&format!("COPY {q_schema}.{table} FROM STDIN"))
            .await?;
        let mut sink = std::pin::pin!(sink);
        for chunk in bytes.chunks(256 * 1024) {
            sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
        }
        sink.as_mut().finish().await?;
    }
    session.batch_execute("COMMIT").await?;
    Ok(started.elapsed())
}
