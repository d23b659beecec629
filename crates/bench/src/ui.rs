//! The web application's pages against the JSON API for the same data,
//! and the pages' latency on a large tenant.
//!
//! The server runs in this process on a loopback port. One client sends
//! one request after another (no queueing in the figures: each is the
//! server's time plus one loopback round trip, the same on both sides).
//! Pages are signed in with the session cookie, the API with the same
//! session as a bearer token.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use atrium_store::Database;
use futures::StreamExt;

use crate::fixtures::{BenchTenant, fill_all, large_tier_for_all, sessions_for_all};
use crate::fleet::{provision_many, provision_one};
use crate::load::{self, LoadResult};
use crate::{Scratch, ms};

pub struct UiBench {
    /// Small tenants the side-by-side measurements spread over.
    pub tenants: u32,
    /// Seconds per measurement.
    pub seconds: u64,
    /// Contacts in the large tenant (with a tenth as many companies, a
    /// fifth as many deals and half as many activities).
    pub contacts: u32,
}

/// The default pipeline's stages: the board's columns.
const STAGES: [&str; 6] = [
    "lead",
    "qualified",
    "proposal",
    "negotiation",
    "won",
    "lost",
];
/// Searches typed on the large tenant: prefixes, a full name, typos.
const SEARCHES: [&str; 5] = ["far", "farid", "farid name12", "fraid", "elodie"];
/// Contacts of the tenant searched as the "10,000 contacts" asks.
const SEARCH_CONTACTS: u32 = 10_000;
/// Measurements per side-by-side pair; the run of median p50 is reported.
const ROUNDS: usize = 3;

pub async fn run(server: &Database, bench: &UiBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
    let result = measure(&scratch.db, bench).await;
    scratch.finish(server).await?;
    result
}

#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    addr: std::net::SocketAddr,
}

impl Http {
    fn page(&self, t: &BenchTenant, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("http://{}{path}", self.addr))
            .header("host", format!("{}.localhost", t.subdomain))
            .header("cookie", format!("atrium_session={}", t.token))
    }

    fn api(&self, t: &BenchTenant, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("http://{}{path}", self.addr))
            .header("host", format!("{}.localhost", t.subdomain))
            .bearer_auth(&t.token)
    }
}

async fn ok(request: reqwest::RequestBuilder) -> bool {
    match request.send().await {
        Ok(response) if response.status() == 200 => response.bytes().await.is_ok(),
        _ => false,
    }
}

/// One sequential client for `seconds`.
async fn one_client<F, Fut>(seconds: u64, work: F) -> LoadResult
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    load::run(1, Duration::from_secs(seconds), work).await
}

/// The run with the median p50 of several.
fn median(mut runs: Vec<LoadResult>) -> LoadResult {
    runs.sort_by_key(|r| r.p50);
    runs[runs.len() / 2]
}

async fn measure(db: &Database, bench: &UiBench) -> anyhow::Result<String> {
    eprintln!("making {} tenants and a large one…", bench.tenants);
    provision_many(db, "ui", bench.tenants, 2).await?;
    provision_one(db, "big").await?;
    provision_one(db, "mid").await?;
    large_tier_for_all(db).await?;
    let everyone = sessions_for_all(db).await?;
    let (named, small): (Vec<BenchTenant>, Vec<BenchTenant>) = everyone
        .into_iter()
        .partition(|t| t.subdomain == "big" || t.subdomain == "mid");
    let find = |name: &str| {
        named
            .iter()
            .find(|t| t.subdomain == name)
            .cloned()
            .expect("made above")
    };
    let (big, mid) = (find("big"), find("mid"));
    let small = Arc::new(small);
    fill_all(db, &small, 1).await?;
    crate::archive::fill(db, &big.schema, bench.contacts).await?;
    crate::archive::fill(db, &mid.schema, SEARCH_CONTACTS).await?;
    // As autovacuum leaves a tenant some time after a bulk load: a fresh
    // GIN index holds its new entries in a pending list, which makes the
    // planner (rightly) shun it until a vacuum merges them.
    let session = db.connection().await?;
    for schema in [&big.schema, &mid.schema] {
        // One statement a call: VACUUM refuses to run in a transaction
        // block, which several statements in one call would be.
        for table in ["contacts", "deals", "activities", "audit_events"] {
            session
                .batch_execute(&format!("VACUUM ANALYZE {schema}.{table}"))
                .await?;
        }
    }
    drop(session);
    let (addr, server) = crate::serve_in_process(db.clone(), db).await?;
    let http = Http {
        client: reqwest::Client::builder().build()?,
        addr,
    };
    // Every tenant's pages and lists once, so that the figures are the
    // server's steady state.
    futures::stream::iter(small.iter())
        .map(|t| {
            let http = http.clone();
            async move {
                ok(http.page(t, "/contacts")).await;
                ok(http.page(t, "/deals")).await;
                ok(http.api(t, "/api/v1/contacts?limit=50")).await;
            }
        })
        .buffer_unordered(4)
        .collect::<()>()
        .await;

    let mut report = String::new();
    writeln!(report, "## Pages against the JSON API\n")?;
    writeln!(
        report,
        "One client, one request after another, {} s per measurement, {ROUNDS} measurements per \
         side (taking turns; the median is shown), requests spread uniformly over {} tenants of \
         200 contacts and 100 deals. *Contacts*: `GET /contacts` (the page of 50, with its \
         filters) against `GET /api/v1/contacts?limit=50`. *Board*: `GET /deals` (every stage's \
         figures and up to 50 cards each, with their next step) against what an API client \
         needs for the same board: `GET /api/v1/pipeline/summary` and `GET \
         /api/v1/deals?stage=…&limit=50` for each of the {} stages, one after another.\n",
        bench.seconds,
        small.len(),
        STAGES.len()
    )?;
    writeln!(
        report,
        "| what | page p50 | page p95 | API p50 | API p95 | page / API (p50) | target |"
    )?;
    writeln!(report, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    for (what, page_path) in [("Contacts", "/contacts"), ("Board", "/deals")] {
        let (mut pages, mut apis) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let (h, tenants) = (http.clone(), small.clone());
            pages.push(
                one_client(bench.seconds, move |_, _| {
                    let (h, tenants) = (h.clone(), tenants.clone());
                    async move {
                        let t = &tenants[rand::random_range(0..tenants.len())];
                        ok(h.page(t, page_path)).await
                    }
                })
                .await,
            );
            let (h, tenants) = (http.clone(), small.clone());
            apis.push(
                one_client(bench.seconds, move |_, _| {
                    let (h, tenants) = (h.clone(), tenants.clone());
                    async move {
                        let t = &tenants[rand::random_range(0..tenants.len())];
                        if page_path == "/contacts" {
                            return ok(h.api(t, "/api/v1/contacts?limit=50")).await;
                        }
                        let mut all = ok(h.api(t, "/api/v1/pipeline/summary")).await;
                        for stage in STAGES {
                            all &= ok(h.api(t, &format!("/api/v1/deals?stage={stage}&limit=50")))
                                .await;
                        }
                        all
                    }
                })
                .await,
            );
        }
        let (page, api) = (median(pages), median(apis));
        writeln!(
            report,
            "| {what} | {} | {} | {} | {} | {:.2}× | ≤ 1.3× |",
            ms(page.p50),
            ms(page.p95),
            ms(api.p50),
            ms(api.p95),
            page.p50.as_secs_f64() / api.p50.as_secs_f64()
        )?;
        if page.errors + api.errors > 0 {
            writeln!(
                report,
                "|  | ({} page and {} API errors) | | | | | |",
                page.errors, api.errors
            )?;
        }
    }

    writeln!(report, "\n## Pages of a large tenant\n")?;
    writeln!(
        report,
        "A tenant of {} contacts, {} companies, {} deals and {} activities; one client, one \
         request after another, {} s each. A move is the board's \"Move\" (`POST \
         /deals/{{id}}/move`) and the board it comes back to. A search is what the contacts page \
         asks for as a person types (`/contacts?q=…`, cycling through {SEARCHES:?}), on a \
         tenant of {SEARCH_CONTACTS} contacts and on the large one. The fixtures have five \
         first names, so a search matches a fifth of the tenant: a harsh case for ranking.\n",
        bench.contacts,
        (bench.contacts / 10).max(1),
        (bench.contacts / 5).max(1),
        bench.contacts / 2,
        bench.seconds
    )?;
    writeln!(report, "| page | requests | p50 | p95 | p99 | target p95 |")?;
    writeln!(report, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    let big = Arc::new(big);
    let board = http.page(&big, "/deals").send().await?.text().await?;
    let csrf = board
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("the board has no form token"))?
        .to_owned();
    let contacts = bench.contacts as usize;
    let deals = (bench.contacts / 5).max(1) as usize;
    type Path = fn(usize, usize, usize) -> String;
    let pages: [(&str, Path, u32); 4] = [
        ("Contacts list", |_, _, _| "/contacts".into(), 150),
        ("Pipeline board", |_, _, _| "/deals".into(), 150),
        (
            "A contact",
            |i, contacts, _| format!("/contacts/{}", 1 + (i * 7919) % contacts),
            150,
        ),
        (
            "A deal",
            |i, _, deals| format!("/deals/{}", 1 + (i * 7919) % deals),
            150,
        ),
    ];
    for (what, path, target) in pages {
        let (h, t) = (http.clone(), big.clone());
        let result = one_client(bench.seconds, move |_, i| {
            let (h, t) = (h.clone(), t.clone());
            async move { ok(h.page(&t, &path(i, contacts, deals))).await }
        })
        .await;
        large_row(&mut report, what, result, target)?;
    }
    let (h, t) = (http.clone(), big.clone());
    let moved = one_client(bench.seconds, move |_, i| {
        let (h, t, csrf) = (h.clone(), t.clone(), csrf.clone());
        async move {
            let stage = if i % 2 == 0 { "proposal" } else { "qualified" };
            let response = h
                .client
                .post(format!("http://{}/deals/3/move", h.addr))
                .header("host", format!("{}.localhost", t.subdomain))
                .header("cookie", format!("atrium_session={}", t.token))
                .form(&[("stage", stage), ("back", "/deals"), ("csrf", &csrf)])
                .send()
                .await;
            // Followed to the board, as the browser does.
            match response {
                Ok(r) if r.status() == 200 && r.url().path() == "/deals" => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await;
    large_row(
        &mut report,
        "Move a deal (and the board after it)",
        moved,
        300,
    )?;
    // Searches last: a slow one puts the tenant in database-time debt,
    // which the pages after it would pay.
    for (what, tenant) in [
        (
            format!("Search as you type, {SEARCH_CONTACTS} contacts"),
            mid,
        ),
        (
            format!("Search as you type, {} contacts", bench.contacts),
            (*big).clone(),
        ),
    ] {
        let (h, t) = (http.clone(), Arc::new(tenant));
        let result = one_client(bench.seconds, move |_, i| {
            let (h, t) = (h.clone(), t.clone());
            async move {
                let q = SEARCHES[i % SEARCHES.len()].replace(' ', "+");
                ok(h.page(&t, &format!("/contacts?q={q}"))).await
            }
        })
        .await;
        large_row(&mut report, &what, result, 150)?;
    }
    server.abort();
    Ok(report)
}

fn large_row(
    report: &mut String,
    what: &str,
    result: LoadResult,
    target_ms: u32,
) -> anyhow::Result<()> {
    let met = result.p95 <= Duration::from_millis(u64::from(target_ms));
    writeln!(
        report,
        "| {what} | {:.0}/s | {} | {} | {} | ≤ {target_ms} ms {} |",
        result.per_second,
        ms(result.p50),
        ms(result.p95),
        ms(result.p99),
        if met { "(met)" } else { "(**missed**)" }
    )?;
    if result.errors > 0 {
        writeln!(report, "|  | ({} errors) | | | | |", result.errors)?;
    }
    Ok(())
}
