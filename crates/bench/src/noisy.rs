//! A noisy neighbour: one small-tier tenant flooding the server while
//! another makes steady requests, against the quiet tenant alone.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use atrium_store::Database;

use crate::fixtures::{fill_all, sessions_for_all};
use crate::fleet::provision_many;
use crate::load::{self, LoadResult};
use crate::{Scratch, ms};

pub struct NoisyBench {
    pub flood_clients: usize,
    pub seconds: u64,
}

pub async fn run(server: &Database, bench: &NoisyBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch.db, bench).await;
    scratch.finish(server).await?;
    result
}

/// What each side asks for: the quiet tenant reads one contact, the noisy
/// one searches its contacts (heavier work per request).
const QUIET_PATH: &str = "/api/v1/contacts/7";
/// The quiet tenant's steady pace: busy for a team, well within its
/// tier's request rate.
const QUIET_RATE: u32 = 50;
const NOISY_PATH: &str = "/api/v1/contacts?q=jo";
/// Token-less requests a second at the quiet tenant: twenty times what its
/// anonymous allowance admits, well short of what saturates two cores (a
/// flood that saturates the CPU slows everyone whatever the budgets).
const ANONYMOUS_RATE: u32 = 2_000;

async fn measure(db: &Database, bench: &NoisyBench) -> anyhow::Result<String> {
    provision_many(db, "neighbour", 2, 2).await?;
    let tenants = Arc::new(sessions_for_all(db).await?);
    fill_all(db, &tenants, 1).await?;
    // Room for every tenant's limit and more: the pool is not what
    // protects the quiet tenant.
    let server_db = db.resized(16).await?;
    let (addr, server) = crate::serve_in_process(server_db, db).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.flood_clients + 1)
        .build()?;
    let duration = Duration::from_secs(bench.seconds);
    let get = |tenant: usize, path: &'static str, ok_only: bool| {
        let (client, tenants) = (client.clone(), tenants.clone());
        move |_: usize, _: usize| {
            let (client, tenants) = (client.clone(), tenants.clone());
            async move {
                let t = &tenants[tenant];
                client
                    .get(format!("http://{addr}{path}"))
                    .header("host", format!("{}.localhost", t.subdomain))
                    .bearer_auth(&t.token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200 || (!ok_only && r.status() == 503))
            }
        }
    };
    // Warm both tenants up.
    load::run(1, Duration::from_secs(1), get(0, QUIET_PATH, true)).await;
    load::run(4, Duration::from_secs(1), get(1, NOISY_PATH, true)).await;

    let solo = load::paced(QUIET_RATE, duration, get(0, QUIET_PATH, true)).await;
    let flood = tokio::spawn(load::run(
        bench.flood_clients,
        duration + Duration::from_secs(1),
        get(1, NOISY_PATH, false),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let beside = load::paced(QUIET_RATE, duration, get(0, QUIET_PATH, true)).await;
    let flood = flood.await?;
    let solo_again = load::paced(QUIET_RATE, duration, get(0, QUIET_PATH, true)).await;
    // The same quiet user while anonymous requests flood its own tenant:
    // they spend their own allowance (429), never the tenant's budget.
    let anonymous = {
        let client = client.clone();
        let tenants = tenants.clone();
        move |_: usize, _: usize| {
            let (client, tenants) = (client.clone(), tenants.clone());
            async move {
                client
                    .get(format!("http://{addr}/api/v1/me"))
                    .header("host", format!("{}.localhost", tenants[0].subdomain))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 401 || r.status() == 429)
            }
        }
    };
    let anonymous_flood = tokio::spawn(load::paced(
        ANONYMOUS_RATE,
        duration + Duration::from_secs(1),
        anonymous,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let beside_anonymous = load::paced(QUIET_RATE, duration, get(0, QUIET_PATH, true)).await;
    let anonymous_flood = anonymous_flood.await?;
    server.abort();

    let mut report = String::new();
    writeln!(report, "## A noisy neighbour\n")?;
    writeln!(
        report,
        "Two small-tier tenants (5 connections and {} requests/s each) with 200 contacts. The \
         quiet tenant makes `GET {QUIET_PATH}` {QUIET_RATE} times a second on 1 connection for \
         {} s: alone, then while the noisy tenant floods `GET {NOISY_PATH}` from {} connections \
         (each sending its next request as soon as the last is answered), then alone again. \
         Target: the quiet tenant's p99 beside the flood at most 2× its p99 alone.\n",
        atrium_domain::Tier::Small.request_rate(),
        bench.seconds,
        bench.flood_clients
    )?;
    writeln!(report, "| quiet tenant | req/s | p50 | p99 | errors |")?;
    writeln!(report, "| --- | ---: | ---: | ---: | ---: |")?;
    for (label, r) in [
        ("alone", solo),
        ("beside the flood", beside),
        ("alone again", solo_again),
        ("beside an anonymous flood of itself", beside_anonymous),
    ] {
        row(&mut report, label, r)?;
    }
    let baseline = solo.p99.max(solo_again.p99);
    writeln!(
        report,
        "\nThe noisy tenant: {:.0} req/s answered (200 or 503), p50 {}, p99 {}. \
         Quiet p99 beside the flood / alone: {:.2}× (against the worse of the two solo runs).",
        flood.per_second,
        ms(flood.p50),
        ms(flood.p99),
        beside.p99.as_secs_f64() / baseline.as_secs_f64()
    )?;
    writeln!(
        report,
        "\nThen token-less `GET /api/v1/me` flood the quiet tenant itself at {ANONYMOUS_RATE} a \
         second ({:.0} answered a second, 401 or 429, {} not): they spend the anonymous \
         allowance of their address and of the tenant, not the tenant's budget. Quiet p99 \
         beside them / alone: {:.2}× (target at most 2×).",
        anonymous_flood.per_second,
        anonymous_flood.errors,
        beside_anonymous.p99.as_secs_f64() / baseline.as_secs_f64()
    )?;
    Ok(report)
}

fn row(report: &mut String, label: &str, r: LoadResult) -> anyhow::Result<()> {
    writeln!(
        report,
        "| {label} | {:.0} | {} | {} | {} |",
        r.per_second,
        ms(r.p50),
        ms(r.p99),
        r.errors
    )?;
    Ok(())
}
