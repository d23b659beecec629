//! Memory over time under a steady load with nobody scraping `/metrics`:
//! the server's resident size must level off, not grow with the requests
//! served (histogram samples used to wait for a scrape that never came).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atrium_store::Database;

use crate::Scratch;
use crate::fixtures::{fill_all, large_tier_for_all, sessions_for_all};
use crate::fleet::provision_many;

pub struct SoakBench {
    pub clients: usize,
    pub seconds: u64,
}

/// Resident-size samples taken over the run.
const SAMPLES: u64 = 10;

pub async fn run(server: &Database, bench: &SoakBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch.db, bench).await;
    scratch.finish(server).await?;
    result
}

async fn measure(db: &Database, bench: &SoakBench) -> anyhow::Result<String> {
    provision_many(db, "soak", 4, 4).await?;
    large_tier_for_all(db).await?;
    let tenants = Arc::new(sessions_for_all(db).await?);
    fill_all(db, &tenants, 1).await?;
    let (addr, server) = crate::serve_in_process(db.clone(), db).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.clients)
        .build()?;
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..bench.clients {
        let (client, tenants, served, stop) = (
            client.clone(),
            tenants.clone(),
            served.clone(),
            stop.clone(),
        );
        // Counts only: a latency kept per request would itself grow.
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let t = &tenants[i % tenants.len()];
                let path = if i % 2 == 0 {
                    "/api/v1/me"
                } else {
                    "/api/v1/contacts/7"
                };
                if client
                    .get(format!("http://{addr}{path}"))
                    .header("host", format!("{}.localhost", t.subdomain))
                    .bearer_auth(&t.token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                i += bench_stride();
            }
        }));
    }
    let started = Instant::now();
    let every = Duration::from_secs(bench.seconds.max(SAMPLES) / SAMPLES);
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        tokio::time::sleep(every).await;
        samples.push((
            started.elapsed(),
            served.load(Ordering::Relaxed),
            crate::memory::own_kib("VmRSS")?,
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await?;
    }
    server.abort();

    let mut report = String::new();
    writeln!(report, "## Memory under a steady load, with no scraper\n")?;
    writeln!(
        report,
        "{} clients send `GET /api/v1/me` and `GET /api/v1/contacts/7` to 4 large-tier tenants for {} s; \
         nothing reads `/metrics`. The process's resident size (server and client together) \
         every {} s:\n",
        bench.clients,
        bench.seconds,
        every.as_secs()
    )?;
    writeln!(report, "| at | requests served | resident |")?;
    writeln!(report, "| ---: | ---: | ---: |")?;
    for (at, requests, kib) in &samples {
        writeln!(
            report,
            "| {} s | {requests} | {:.1} MiB |",
            at.as_secs(),
            *kib as f64 / 1024.0
        )?;
    }
    // From the second sample on (the first includes warming up).
    let (_, first_requests, first_kib) = samples[1];
    let (_, last_requests, last_kib) = samples[samples.len() - 1];
    let per_request = (last_kib as f64 - first_kib as f64) * 1024.0
        / (last_requests - first_requests).max(1) as f64;
    writeln!(
        report,
        "\nGrowth after the first sample: {:.2} bytes per request ({:+.1} MiB over {} requests).",
        per_request,
        (last_kib as f64 - first_kib as f64) / 1024.0,
        last_requests - first_requests
    )?;
    Ok(report)
}

/// Workers step through the tenants and paths apart from each other.
fn bench_stride() -> usize {
    7
}
