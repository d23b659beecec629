//! API throughput against PostgreSQL's own throughput for the same SQL.
//!
//! The server runs in this process on a loopback port; the direct-SQL side
//! runs the statements one authenticated `GET /api/v1/me` runs (begin, set
//! the tenant context, read the session and its user, write its idle clock
//! if that is over a minute old, commit) over the
//! same number of connections. Both sides spread requests uniformly over
//! the tenants.

use atrium_store::AdminDatabase;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use atrium_store::Database;
use futures::StreamExt;

use crate::fixtures::{
    BenchTenant, CONTACTS_PER_TENANT, DEALS_PER_TENANT, fill_all, large_tier_for_all,
    sessions_for_all,
};
use crate::fleet::provision_many;
use crate::load::{self, LoadResult};
use crate::{Scratch, ms};

#[derive(Clone)]
pub struct ApiBench {
    /// Tenant counts to measure at, ascending (e.g. 100 and 1000).
    pub tenant_counts: Vec<u32>,
    pub clients: usize,
    pub seconds: u64,
    /// Distinct tenants after which the server's sessions retire.
    pub session_max_tenants: usize,
    /// Measurements per workload and spread; the median by throughput is
    /// reported, so that a burst of other work on the machine during one
    /// of them does not decide the figure.
    pub rounds: usize,
}

/// The order of one workload's measurements: every spread in turn, `rounds`
/// times over, each as (its index in `spreads`, the spread).
fn turns(spreads: &[usize], rounds: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..rounds.max(1)).flat_map(move |_| spreads.iter().copied().enumerate())
}

/// For each spread, the run of median throughput among its samples (each a
/// measurement of the same workload), with its own latencies.
fn median_runs(samples: Vec<Vec<LoadResult>>) -> impl Iterator<Item = LoadResult> {
    samples.into_iter().map(|mut runs| {
        runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        runs[runs.len() / 2]
    })
}

/// The SQL of an authenticated request's session check, as the server
/// runs it.
const SESSION_SQL: &str = "SELECT s.id, s.last_seen_at, u.id, u.email, u.first_name, u.last_name, \
    u.role, u.permissions, u.active, u.email_verified, u.last_login, u.created_at, u.updated_at, \
    u.deleted_at FROM sessions s JOIN users u ON u.id = s.user_id \
    WHERE s.token = $1 AND s.revoked_at IS NULL AND s.expires_at > now() \
    AND s.last_seen_at > now() - make_interval(secs => $2) AND u.active AND u.deleted_at IS NULL";

/// Names the search workload looks for (each matches a few contacts).
pub(crate) const SEARCHES: &[&str] = &["john smith", "jo", "maria", "jhon", "garcia"];

pub async fn run(server: &Database, bench: &ApiBench) -> anyhow::Result<String> {
    let scratch = match Scratch::reused(server).await? {
        Some(kept) => kept,
        None => Scratch::create(server).await?,
    };
    let result = measure(&scratch, bench).await;
    scratch.finish(server).await?;
    result
}

async fn measure(scratch: &Scratch, bench: &ApiBench) -> anyhow::Result<String> {
    let db = &scratch.db;
    let mut report = String::new();
    writeln!(report, "## API against direct SQL\n")?;
    writeln!(
        report,
        "{} clients, {} s per measurement, requests spread uniformly over the tenants, after \
         one warm-up pass over every tenant. *API*: the server with its default pool of {} \
         sessions, retired after {} distinct tenants. *Direct SQL*: the same statements over \
         {} connections of their own, each serving its own share of the tenants (`BEGIN`, the \
         tenant context in one statement, the prepared session-and-user read, the idle clock's \
         write when it is over a minute old, `COMMIT`). \
         *Lookup*: `GET /api/v1/me` without a token, which resolves the tenant from `Host` and \
         answers 401, against the registry query an uncached lookup would run. Each side is \
         measured {} times, taking turns; the median is shown.\n",
        bench.clients,
        bench.seconds,
        atrium_store::DEFAULT_POOL_SIZE,
        bench.session_max_tenants,
        bench.clients,
        bench.rounds.max(1),
    )?;
    writeln!(
        report,
        "| tenants | workload | API req/s | API p50 | API p99 | SQL tx/s | SQL p50 | SQL p99 | API / SQL |"
    )?;
    writeln!(
        report,
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    // A kept database (ATRIUM_BENCH_REUSE) holds the tenants of an earlier
    // run, filled: only those beyond them are made.
    let mut made = atrium_store::registry::totals(db).await?.tenant_count as u32;
    let mut pool_sentences = Vec::new();
    let mut bare_report = String::new();
    if crate::bare::available() {
        crate::bare::header(
            &mut bare_report,
            bench.clients,
            bench.seconds.max(10),
            bench.rounds,
        )?;
    } else {
        bare_report.push_str(
            "\nThe comparison with the bare query needs `wrk` and `pgbench` on the PATH \
             (Debian: `apt install wrk postgresql-client`).\n",
        );
    }
    for &count in &bench.tenant_counts {
        if count > made {
            provision_many(db, &format!("up-to-{count}"), count - made, 2).await?;
        }
        large_tier_for_all(db).await?;
        let tenants = Arc::new(sessions_for_all(db).await?);
        fill_all(db, &tenants[(made as usize).min(tenants.len())..], 1).await?;
        made = made.max(count);
        let all = [tenants.len()];
        let api = api_load(db, &tenants, &all, bench, &mut None)
            .await?
            .remove(0);
        let sql = sql_load(scratch, &tenants, &all, bench).await?.remove(0);
        for (i, label) in WORKLOADS.iter().enumerate() {
            row(&mut report, count, label, api.results[i], sql[i])?;
        }
        pool_sentences.push(format!("At {count} tenants: {}", api.pool_sentence()));
        bare_rows(&mut bare_report, db, &tenants, bench).await?;
    }
    writeln!(report, "\n{}", pool_sentences.join("\n\n"))?;
    report.push_str(&bare_report);
    writeln!(
        report,
        "\nEach tenant holds {CONTACTS_PER_TENANT} contacts and {DEALS_PER_TENANT} deals; searches \
         cycle through {SEARCHES:?}."
    )?;
    Ok(report)
}

pub(crate) fn row(
    report: &mut String,
    tenants: u32,
    label: &str,
    api: LoadResult,
    sql: LoadResult,
) -> anyhow::Result<()> {
    writeln!(
        report,
        "| {tenants} | {label} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2}× |",
        api.per_second,
        ms(api.p50),
        ms(api.p99),
        sql.per_second,
        ms(sql.p50),
        ms(sql.p99),
        api.per_second / sql.per_second
    )?;
    if api.errors + sql.errors > 0 {
        writeln!(
            report,
            "|  | ({} API and {} SQL errors) | | | | | | | |",
            api.errors, sql.errors
        )?;
    }
    Ok(())
}

/// The API from `wrk` against the bare queries from `pgbench`, over all of
/// `tenants`, through a server of its own (warmed up as `api_load`'s).
/// Runs of at least 10 s: pgbench's connections start cold, and each first
/// visit to a tenant costs its backend the tenant's catalog entries.
async fn bare_rows(
    report: &mut String,
    db: &Database,
    tenants: &Arc<Vec<BenchTenant>>,
    bench: &ApiBench,
) -> anyhow::Result<()> {
    if !crate::bare::available() {
        return Ok(());
    }
    let server_db = server_pool(db, bench).await?;
    let (addr, server) = crate::serve_in_process(server_db.clone(), db).await?;
    warm_api(&reqwest::Client::new(), addr, tenants, bench.clients).await;
    let result = crate::bare::rows(
        report,
        db,
        addr,
        tenants,
        bench.clients,
        bench.seconds.max(10),
        bench.rounds,
    )
    .await;
    server.abort();
    let _ = server.await;
    server_db.close();
    result
}

/// The pool `atrium serve` has by default, retiring sessions as `bench`
/// says, named so that memory snapshots tell its backends apart.
async fn server_pool(db: &Database, bench: &ApiBench) -> anyhow::Result<Database> {
    let limits = atrium_store::ConnectionLimits {
        max_tenants: bench.session_max_tenants,
        ..Default::default()
    };
    db.named(
        crate::memory::SERVER_APPLICATION,
        atrium_store::DEFAULT_POOL_SIZE,
        limits,
    )
    .await
}

/// The workloads, in the order of every result list: `GET /me`, the
/// token-less tenant lookup, a contact by id, a search, the pipeline
/// summary.
pub(crate) const WORKLOADS: [&str; 5] = [
    "GET /api/v1/me",
    "tenant lookup",
    "GET /api/v1/contacts/{id}",
    "GET /api/v1/contacts?q=",
    "GET /api/v1/pipeline/summary",
];

/// The path of request `i` of workload `kind`.
fn workload_path(kind: usize, i: usize) -> String {
    match kind {
        0 | 1 => "/api/v1/me".into(),
        2 => format!(
            "/api/v1/contacts/{}",
            1 + (i as i32 * 7919) % CONTACTS_PER_TENANT
        ),
        3 => format!(
            "/api/v1/contacts?q={}",
            SEARCHES[i % SEARCHES.len()].replace(' ', "+")
        ),
        _ => "/api/v1/pipeline/summary".into(),
    }
}

/// One closed-loop run of workload `kind` over the first `spread` tenants.
/// The lookup sends no token and expects 401; the others expect 200.
pub(crate) async fn api_workload(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    tenants: &Arc<Vec<BenchTenant>>,
    spread: usize,
    kind: usize,
    bench: &ApiBench,
) -> LoadResult {
    let (client, tenants) = (client.clone(), tenants.clone());
    load::run(
        bench.clients,
        Duration::from_secs(bench.seconds),
        move |_, i| {
            let (client, tenants) = (client.clone(), tenants.clone());
            async move {
                let t = &tenants[rand::random_range(0..spread)];
                let request = client
                    .get(format!("http://{addr}{}", workload_path(kind, i)))
                    .header("host", format!("{}.localhost", t.subdomain));
                if kind == 1 {
                    // The tenant is resolved before the anonymous allowance
                    // is checked: a 429 from it has done the lookup too.
                    request
                        .send()
                        .await
                        .is_ok_and(|r| matches!(r.status().as_u16(), 401 | 429))
                } else {
                    let response = request.bearer_auth(&t.token).send().await;
                    response.is_ok_and(|r| r.status() == 200)
                }
            }
        },
    )
    .await
}

/// The authenticated requests of the workloads, once each.
const WARM_PATHS: [&str; 4] = [
    "/api/v1/me",
    "/api/v1/contacts/1",
    "/api/v1/contacts?q=jo",
    "/api/v1/pipeline/summary",
];

/// One pass over every tenant with each kind of request before measuring:
/// the figures are the server's steady state, in which each tenant's
/// catalog entries are warm in its lane's backend, not its first minute.
pub(crate) async fn warm_api(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    tenants: &[BenchTenant],
    clients: usize,
) {
    futures::stream::iter(tenants)
        .map(|t| async move {
            for path in WARM_PATHS {
                let _ = client
                    .get(format!("http://{addr}{path}"))
                    .header("host", format!("{}.localhost", t.subdomain))
                    .bearer_auth(&t.token)
                    .send()
                    .await;
            }
        })
        .buffer_unordered(clients)
        .collect::<()>()
        .await;
}

/// The API side of one measurement: its results, in the order of
/// `WORKLOADS`, and what the server's pool did meanwhile.
#[derive(Default)]
pub(crate) struct ApiRun {
    pub results: Vec<LoadResult>,
    pub activity: atrium_store::PoolActivity,
}

impl ApiRun {
    /// One sentence on where the server's tenant transactions found their
    /// sessions: a transaction off its lane meets a backend that has most
    /// likely not seen the tenant, and a retired session starts cold.
    pub fn pool_sentence(&self) -> String {
        use atrium_store::TenantConnectionSource::{Lane, OtherLane, Shared};
        let activity = &self.activity;
        let total: u64 = activity.tenant_connections.iter().sum();
        let share =
            |source| 100.0 * activity.tenant_connections_from(source) as f64 / total.max(1) as f64;
        format!(
            "The server's pool while measuring: {total} tenant transactions, {:.1}% on their own \
             lane, {:.1}% on a shared session, {:.1}% on another tenant's lane; {:.1}% on a \
             session that had not served the tenant before; {} sessions opened and {} retired.",
            share(Lane),
            share(Shared),
            share(OtherLane),
            100.0 * activity.first_visits as f64 / total.max(1) as f64,
            activity.connections_opened,
            activity.connections_retired,
        )
    }
}

/// Runs the workloads through a server over the first `spread` tenants,
/// for each of `spreads` (an `ApiRun` each). The server warms up over all
/// the tenants first, and the spreads take turns workload by workload, so
/// that a change in the machine's load between measurements falls on
/// both.
pub(crate) async fn api_load(
    db: &Database,
    tenants: &Arc<Vec<BenchTenant>>,
    spreads: &[usize],
    bench: &ApiBench,
    memory: &mut Option<crate::memory::Snapshot>,
) -> anyhow::Result<Vec<ApiRun>> {
    // The server runs with the pool `atrium serve` has by default.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_db = server_pool(db, bench).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(atrium_http::serve(
        listener,
        server_db.clone(),
        AdminDatabase::new(db.clone()),
        atrium_http::ServerSettings::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.clients)
        .build()?;
    warm_api(&client, addr, tenants, bench.clients).await;
    let mut runs: Vec<ApiRun> = spreads.iter().map(|_| ApiRun::default()).collect();
    for kind in 0..WORKLOADS.len() {
        let mut samples = vec![Vec::new(); spreads.len()];
        for (nth_spread, spread) in turns(spreads, bench.rounds) {
            let before = server_db.activity();
            samples[nth_spread]
                .push(api_workload(&client, addr, tenants, spread, kind, bench).await);
            runs[nth_spread].activity += server_db.activity().since(&before);
        }
        for (run, median) in runs.iter_mut().zip(median_runs(samples)) {
            run.results.push(median);
        }
    }
    *memory = crate::memory::snapshot(db).await.ok();
    // Stopped and awaited, so its sessions are closed before the next
    // measurement opens its own.
    drop(client);
    let _ = stop.send(());
    server.await??;
    server_db.close();
    Ok(runs)
}

/// The record reads, as the services write them.
fn record_sql() -> [String; 3] {
    let contact = atrium_store::records::record_json(&atrium_domain::records::CONTACT);
    let name = "lower(t.first_name || ' ' || t.last_name)";
    [
        format!(
            "SELECT {contact} FROM contacts t WHERE t.id = $1 AND ($2 OR t.deleted_at IS NULL)"
        ),
        format!(
            "SELECT {contact}, (ts_rank(t.search_vector, to_tsquery('simple', $1)) + similarity({name}, $2) \
             + similarity(lower(coalesce(t.email, '')), $3))::float8::text, t.id FROM contacts t \
             WHERE t.deleted_at IS NULL AND (t.search_vector @@ to_tsquery('simple', $1) OR {name} % $2 \
             OR lower(t.email) % $3) ORDER BY (ts_rank(t.search_vector, to_tsquery('simple', $1)) \
             + similarity({name}, $2) + similarity(lower(coalesce(t.email, '')), $3))::float8 DESC, t.id DESC LIMIT 51"
        ),
        "SELECT s.name, count(d.id), COALESCE(sum(d.value), 0)::numeric(16,2)::text, \
         round(COALESCE(sum(d.value * d.probability), 0) / 100, 2)::numeric(16,2)::text \
         FROM pipeline_stages s LEFT JOIN deals d ON d.stage = s.name AND d.deleted_at IS NULL \
         GROUP BY s.name, s.position ORDER BY s.position"
            .to_owned(),
    ]
}

/// `BEGIN` and the tenant context, as the server's tenant transaction sends
/// them.
fn tenant_setup(t: &BenchTenant) -> String {
    format!(
        "BEGIN; SELECT shared.enter_tenant({id}, false); \
         SELECT set_config('search_path', '{s}, extensions, pg_temp', true), \
         set_config('role', '{r}', true), set_config('application_name', '{s}', true), \
         set_config('statement_timeout', '30000', true)",
        id = t.schema.trim_start_matches("tenant_"),
        s = t.schema,
        r = t.role
    )
}

pub(crate) fn tsquery_of(q: &str) -> String {
    q.split_whitespace()
        .map(|w| format!("'{w}':*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The workloads' SQL run directly, over the first `spread` tenants for
/// each of `spreads`, taking turns as `api_load` does.
pub(crate) async fn sql_load(
    scratch: &Scratch,
    tenants: &Arc<Vec<BenchTenant>>,
    spreads: &[usize],
    bench: &ApiBench,
) -> anyhow::Result<Vec<Vec<LoadResult>>> {
    let mut clients = Vec::new();
    for _ in 0..bench.clients {
        let client = scratch.db.dedicated_connection().await?;
        // Names resolve when a statement is prepared: prepare it in a
        // tenant's context, as the server does on first use.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT set_config('search_path', '{}, extensions', true)",
                tenants[0].schema
            ))
            .await?;
        let me = client.prepare(SESSION_SQL).await?;
        let [by_id, search, summary] = record_sql();
        let records = [
            client.prepare(&by_id).await?,
            client.prepare(&search).await?,
            client.prepare(&summary).await?,
            client
                .prepare(atrium_store::sessions::TOUCH_SQL_NOT_DURABLE)
                .await?,
        ];
        client.batch_execute("COMMIT").await?;
        let lookup = client
            .prepare("SELECT id, name, subdomain, schema_name, status, tier FROM public.tenants WHERE subdomain = $1")
            .await?;
        clients.push(Arc::new((client, me, lookup, records)));
    }
    let clients = Arc::new(clients);
    let auth = atrium_services::auth::AuthSettings::default();
    let idle_seconds = auth.session_idle.as_secs_f64();
    let touch_interval = auth.touch_interval;
    // As the server's lanes do, each connection serves its own share of
    // the tenants, and meets each of them once before measuring.
    let share = |worker: usize| (worker..tenants.len()).step_by(bench.clients);
    futures::future::try_join_all(clients.iter().enumerate().map(|(worker, c)| {
        let (client, session, _, statements) = &**c;
        async move {
            for t in share(worker).map(|i| &tenants[i]) {
                client.batch_execute(&tenant_setup(t)).await?;
                client
                    .query_opt(session, &[&t.token_hash, &idle_seconds])
                    .await?;
                client.query(&statements[0], &[&1_i32, &false]).await?;
                client
                    .query(&statements[1], &[&tsquery_of("jo"), &"jo", &"jo"])
                    .await?;
                client.query(&statements[2], &[]).await?;
                client.batch_execute("COMMIT").await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }
    }))
    .await?;
    let duration = Duration::from_secs(bench.seconds);
    let mut runs: Vec<Vec<LoadResult>> = spreads.iter().map(|_| Vec::new()).collect();
    for kind in 0..WORKLOADS.len() {
        let mut samples = vec![Vec::new(); spreads.len()];
        for (nth_spread, spread) in turns(spreads, bench.rounds) {
            let (clients, tenants) = (clients.clone(), tenants.clone());
            let (workers, tenant_count) = (bench.clients, tenants.len().min(spread));
            // Worker `w` serves tenants w, w + workers, w + 2 × workers...
            let pick = move |worker: usize| {
                let share = (tenant_count - worker.min(tenant_count)).div_ceil(workers);
                worker + workers * rand::random_range(0..share.max(1))
            };
            let result = load::run(bench.clients, duration, move |worker, i| {
                let (clients, tenants) = (clients.clone(), tenants.clone());
                async move {
                    let (client, session, lookup, statements) = &*clients[worker];
                    if kind == 1 {
                        let t = &tenants[rand::random_range(0..tenant_count)];
                        return client
                            .query_opt(lookup, &[&t.subdomain])
                            .await
                            .is_ok_and(|r| r.is_some());
                    }
                    let t = &tenants[pick(worker)];
                    let q = SEARCHES[i % SEARCHES.len()];
                    let id = 1 + (i as i32 * 7919) % CONTACTS_PER_TENANT;
                    let tsq = tsquery_of(q);
                    let work = async {
                        client.batch_execute(&tenant_setup(t)).await?;
                        let signed_in = client
                            .query_opt(session, &[&t.token_hash, &idle_seconds])
                            .await?;
                        // The server's idle clock, written as a read
                        // request writes it.
                        if let Some(row) = &signed_in {
                            let last_seen: std::time::SystemTime = row.get(1);
                            if last_seen.elapsed().unwrap_or_default() > touch_interval {
                                let id: i32 = row.get(0);
                                client.execute(&statements[3], &[&id]).await?;
                            }
                        }
                        match kind {
                            0 => {}
                            2 => drop(client.query(&statements[0], &[&id, &false]).await?),
                            3 => drop(client.query(&statements[1], &[&tsq, &q, &q]).await?),
                            _ => drop(client.query(&statements[2], &[]).await?),
                        };
                        client.batch_execute("COMMIT").await?;
                        Ok::<_, tokio_postgres::Error>(signed_in.is_some())
                    };
                    work.await.unwrap_or(false)
                }
            })
            .await;
            samples[nth_spread].push(result);
        }
        for (run, median) in runs.iter_mut().zip(median_runs(samples)) {
            run.push(median);
        }
    }
    Ok(runs)
}
