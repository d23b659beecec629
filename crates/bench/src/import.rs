//! A large contact import through the API next to `COPY` of the same rows.
//!
//! The CSV is generated while it is sent (chunked, never held by the
//! client), so the process's peak memory during the import is the
//! server's: the spooled body is on disk and rows are read one at a time.

use std::fmt::Write;
use std::time::{Duration, Instant};

use atrium_store::Database;

use crate::Scratch;
use crate::fixtures::sessions_for_all;
use crate::fleet::provision_many;

pub struct ImportBench {
    pub rows: u32,
    /// Imports and `COPY`s measured in turn, each into fresh tenants: the
    /// machine's speed drifts over a run, and the median of the rounds'
    /// ratios is steadier than any one of them.
    pub rounds: u32,
}

/// Rows per generated chunk of the body.
const CHUNK_ROWS: u32 = 1000;
/// Distinct company names in the file (each is created once, then matched).
const COMPANIES: u32 = 500;
const HEADER: &str = "first_name,last_name,email,phone,company\n";

fn csv_rows(from: u32, to: u32) -> String {
    let mut text = String::with_capacity(((to - from) * 64) as usize);
    for n in from..to {
        let first = ["Ann", "Bob", "Chidi", "Dana", "Élodie", "Farid", "Grace"][n as usize % 7];
        let last = ["Lee", "Okafor", "Novak", "García", "Chen", "O'Brien"][n as usize % 6];
        let _ = writeln!(
            text,
            "{first},{last}{n},person{n}@import.example,+1 555 {:07},Company {}",
            n,
            n % COMPANIES
        );
    }
    text
}

pub async fn run(server: &Database, bench: &ImportBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch.db, bench).await;
    scratch.finish(server).await?;
    result
}

async fn measure(db: &Database, bench: &ImportBench) -> anyhow::Result<String> {
    let rounds = bench.rounds.max(1);
    provision_many(db, "import", 2 * rounds, 2).await?;
    let tenants = sessions_for_all(db).await?;
    let (addr, server) = crate::serve_in_process(db.clone(), db).await?;

    let rows = bench.rows;
    let file_bytes: usize = HEADER.len()
        + (0..rows)
            .step_by(CHUNK_ROWS as usize)
            .map(|from| csv_rows(from, (from + CHUNK_ROWS).min(rows)).len())
            .sum::<usize>();
    let baseline = crate::memory::own_kib("VmRSS")?;
    let mut measured = Vec::new();
    let mut first_good = None;
    for (round, pair) in tenants.chunks(2).enumerate() {
        let (api_tenant, copy_tenant) = (&pair[0], &pair[1]);
        // Every other round runs `COPY` first, so a drift in the machine's
        // speed does not always favour the same side.
        let copy_first = round % 2 == 1;
        let mut copy_time = None;
        if copy_first {
            copy_time = Some(copy_rows(db, &copy_tenant.schema, rows).await?);
        }
        let good = send_import(addr, api_tenant, good_file(rows)).await?;
        anyhow::ensure!(
            good.status == 200,
            "the import answered {}: {}",
            good.status,
            good.text
        );
        let import_report: serde_json::Value = serde_json::from_str(&good.text)?;
        anyhow::ensure!(
            import_report["created"] == rows && import_report["failed"] == 0,
            "the import did not create every row: {}",
            good.text
        );
        // The server vacuums the imported tables in the background after
        // answering; that work must not run beside the next measurement.
        let tidy_time = tidied(db, &api_tenant.schema).await?;
        let copy_time = match copy_time {
            Some(time) => time,
            None => copy_rows(db, &copy_tenant.schema, rows).await?,
        };
        measured.push((good.time, copy_time, tidy_time));
        first_good.get_or_insert(good);
    }
    let good = first_good.expect("at least one round");
    let api_tenant = &tenants[0];
    // Hostile files of the body limit's size: millions of malformed rows
    // (refused whole for their row count), and the most malformed rows an
    // import takes, each as wide as fits (every row fails).
    let many = send_import(addr, api_tenant, generated("", "x\n", HOSTILE_BYTES / 2)).await?;
    anyhow::ensure!(
        many.status == 413,
        "millions of rows answered {}",
        many.status
    );
    let wide_row = format!("{}\n", "x".repeat(HOSTILE_BYTES / 100_000 - 1));
    let failing = send_import(addr, api_tenant, generated(HEADER, &wide_row, 99_999)).await?;
    anyhow::ensure!(
        failing.status == 200,
        "wide bad rows answered {}",
        failing.status
    );
    server.abort();
    let mut report = String::new();
    writeln!(report, "## Contact import against COPY\n")?;
    writeln!(
        report,
        "{rows} rows ({:.1} MiB of CSV, {COMPANIES} distinct company names) sent chunked to \
         `POST /api/v1/contacts/import`, next to `COPY ... FROM STDIN` of the same rows into \
         another tenant's `contacts` and `companies`, in {rounds} rounds (fresh tenants each, \
         `COPY` first in every other). The import checks each row, looks its email up for the \
         upsert, matches or creates its company and writes an audit event (a batch's new \
         contacts together, updates one by one in savepoints); `COPY` does none of that.\n",
        file_bytes as f64 / (1024.0 * 1024.0)
    )?;
    writeln!(
        report,
        "| round | API import | rows/s | `COPY` | rows/s | import rows/s ÷ `COPY` rows/s | vacuum after the answer |"
    )?;
    writeln!(report, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    let rate = |time: Duration| f64::from(rows) / time.as_secs_f64();
    let mut ratios = Vec::new();
    for (round, (api_time, copy_time, tidy_time)) in measured.iter().enumerate() {
        let ratio = copy_time.as_secs_f64() / api_time.as_secs_f64();
        ratios.push(ratio);
        writeln!(
            report,
            "| {} | {:.1} s | {:.0} | {:.1} s | {:.0} | {ratio:.2}× | {:.1} s |",
            round + 1,
            api_time.as_secs_f64(),
            rate(*api_time),
            copy_time.as_secs_f64(),
            rate(*copy_time),
            tidy_time.as_secs_f64(),
        )?;
    }
    ratios.sort_by(f64::total_cmp);
    writeln!(
        report,
        "\nMedian: the import runs at {:.2}× `COPY`'s rows per second.\n",
        ratios[ratios.len() / 2]
    )?;
    writeln!(
        report,
        "Peak resident memory of the whole process (server and client) while each file was \
         sent, above the {:.1} MiB before the first:\n",
        baseline as f64 / 1024.0
    )?;
    writeln!(report, "| file | answer | time | peak above baseline |")?;
    writeln!(report, "| --- | --- | ---: | ---: |")?;
    let hostile_mib = HOSTILE_BYTES as f64 / (1024.0 * 1024.0);
    for (label, sent) in [
        (
            format!(
                "{rows} good rows ({:.1} MiB)",
                file_bytes as f64 / (1024.0 * 1024.0)
            ),
            &good,
        ),
        (
            format!(
                "{} one-column rows ({hostile_mib:.0} MiB)",
                HOSTILE_BYTES / 2
            ),
            &many,
        ),
        (
            format!("99,999 malformed wide rows ({hostile_mib:.0} MiB)"),
            &failing,
        ),
    ] {
        writeln!(
            report,
            "| {label} | {} ({} bytes) | {:.1} s | {:.1} MiB |",
            sent.status,
            sent.text.len(),
            sent.time.as_secs_f64(),
            sent.peak_kib.saturating_sub(baseline) as f64 / 1024.0
        )?;
    }
    Ok(report)
}

/// The clean file of `rows` contacts, generated while it is sent.
fn good_file(rows: u32) -> reqwest::Body {
    let body = futures::stream::iter(
        std::iter::once(Ok::<_, std::io::Error>(bytes::Bytes::from(HEADER))).chain(
            (0..rows)
                .step_by(CHUNK_ROWS as usize)
                .map(move |from| Ok(csv_rows(from, (from + CHUNK_ROWS).min(rows)).into())),
        ),
    );
    reqwest::Body::wrap_stream(body)
}

/// Size of the hostile files: just under the import body limit.
const HOSTILE_BYTES: usize = 19 * 1024 * 1024;

/// A body of `head` and `count` copies of `row`, made while it is sent
/// (the client holds one chunk at a time, so the peak is the server's).
fn generated(head: &str, row: &str, count: usize) -> reqwest::Body {
    let per_chunk = (64 * 1024 / row.len()).max(1);
    let chunk = bytes::Bytes::from(row.repeat(per_chunk));
    let (full, rest) = (count / per_chunk, count % per_chunk);
    let chunks = std::iter::once(bytes::Bytes::from(head.to_owned()))
        .chain(std::iter::repeat_n(chunk, full))
        .chain(std::iter::once(bytes::Bytes::from(row.repeat(rest))))
        .map(Ok::<_, std::io::Error>);
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

/// What one import request answered, and the process's peak memory while
/// it ran.
struct Sent {
    status: reqwest::StatusCode,
    text: String,
    time: Duration,
    peak_kib: u64,
}

async fn send_import(
    addr: std::net::SocketAddr,
    tenant: &crate::fixtures::BenchTenant,
    body: reqwest::Body,
) -> anyhow::Result<Sent> {
    reset_peak_memory()?;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/contacts/import"))
        .header("host", format!("{}.localhost", tenant.subdomain))
        .header("content-type", "text/csv")
        .bearer_auth(&tenant.token)
        .timeout(Duration::from_secs(30 * 60))
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    Ok(Sent {
        status,
        text,
        time: started.elapsed(),
        peak_kib: crate::memory::own_kib("VmHWM")?,
    })
}

/// Waits for the server's background `VACUUM ANALYZE` of an imported
/// tenant's tables (every table it writes analyzed): how long after the
/// answer.
async fn tidied(db: &Database, schema: &str) -> anyhow::Result<Duration> {
    let tables = atrium_services::contacts_csv::TABLES_WRITTEN.map(str::to_owned);
    let session = db.connection().await?;
    let started = Instant::now();
    loop {
        let analyzed: i64 = session
            .query_one(
                "SELECT count(*) FROM pg_stat_user_tables
                 WHERE schemaname = $1 AND relname = ANY($2) AND last_analyze IS NOT NULL",
                &[&schema, &tables.as_slice()],
            )
            .await?
            .get(0);
        let done = analyzed == tables.len() as i64;
        if done {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the imported tables were not vacuumed within ten minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same rows by `COPY`: companies first, then contacts linked to them.
async fn copy_rows(db: &Database, schema: &str, rows: u32) -> anyhow::Result<Duration> {
    use futures::SinkExt;
    let session = db.connection().await?;
    let started = Instant::now();
    let companies = session
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {schema}.companies (id, name, created_by) FROM STDIN (FORMAT csv)"
        ))
        .await?;
    let mut companies = std::pin::pin!(companies);
    let mut text = String::new();
    for n in 0..COMPANIES {
        writeln!(text, "{},Company {n},1", n + 1)?;
    }
    companies.send(text.into()).await?;
    companies.as_mut().finish().await?;
    let contacts = session
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {schema}.contacts (first_name, last_name, email, phone, company_id, created_by) \
             FROM STDIN (FORMAT csv)"
        ))
        .await?;
    let mut contacts = std::pin::pin!(contacts);
    for from in (0..rows).step_by(CHUNK_ROWS as usize) {
        let mut chunk = String::new();
        for line in csv_rows(from, (from + CHUNK_ROWS).min(rows)).lines() {
            // The company name becomes its id, as the import links it.
            let (rest, company) = line.rsplit_once(",Company ").unwrap_or((line, "0"));
            let id: u32 = company.parse()?;
            writeln!(chunk, "{rest},{},1", id + 1)?;
        }
        contacts.send(chunk.into()).await?;
    }
    contacts.as_mut().finish().await?;
    Ok(started.elapsed())
}

/// Resets `VmHWM` to the current resident size (Linux `clear_refs` 5).
fn reset_peak_memory() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")?;
    Ok(())
}
