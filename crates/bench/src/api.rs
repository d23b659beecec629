//! API throughput against PostgreSQL's own throughput for the same SQL.
//!
//! The server runs in this process on a loopback port; the direct-SQL side
//! runs the statements one authenticated `GET /api/v1/me` runs (begin, set
//! the tenant context, read the session and its user, commit) over the
//! same number of connections. Both sides spread requests uniformly over
//! the tenants.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use atrium_store::Database;
use atrium_store::migrate::tenant_role_name;

use crate::fleet::provision_many;
use crate::load::{self, LoadResult};
use crate::{Scratch, ms};

pub struct ApiBench {
    /// Tenant counts to measure at, ascending (e.g. 100 and 1000).
    pub tenant_counts: Vec<u32>,
    pub clients: usize,
    pub seconds: u64,
}

/// The SQL of an authenticated request's session check, as the server
/// runs it.
const SESSION_SQL: &str = "SELECT s.id, s.last_seen_at, u.id, u.email, u.first_name, u.last_name, \
    u.role, u.permissions, u.active, u.email_verified, u.last_login, u.created_at, u.updated_at, \
    u.deleted_at FROM sessions s JOIN users u ON u.id = s.user_id \
    WHERE s.token = $1 AND s.revoked_at IS NULL AND s.expires_at > now() \
    AND s.last_seen_at > now() - make_interval(secs => $2) AND u.active AND u.deleted_at IS NULL";

struct BenchTenant {
    subdomain: String,
    schema: String,
    role: String,
    token: String,
    token_hash: String,
}

pub async fn run(server: &Database, bench: &ApiBench) -> anyhow::Result<String> {
    let scratch = Scratch::create(server).await?;
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
        "{} clients, {} s per measurement, requests spread uniformly over the tenants. \
         *Direct SQL*: the same statements over {} connections of their own (`BEGIN`, the tenant \
         context in one statement, the prepared session-and-user read, `COMMIT`). \
         *Lookup*: `GET /api/v1/me` without a token, which resolves the tenant from `Host` and \
         answers 401, against the registry query an uncached lookup would run.\n",
        bench.clients, bench.seconds, bench.clients
    )?;
    writeln!(
        report,
        "| tenants | workload | API req/s | API p50 | API p99 | SQL tx/s | SQL p50 | SQL p99 | API / SQL |"
    )?;
    writeln!(
        report,
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let mut made = 0;
    for &count in &bench.tenant_counts {
        provision_many(db, &format!("up-to-{count}"), count - made, 2).await?;
        made = count;
        let tenants = Arc::new(sessions_for_all(db).await?);
        let api = api_load(db, &tenants, bench).await?;
        let sql = sql_load(scratch, &tenants, bench).await?;
        row(&mut report, count, "GET /api/v1/me", api.0, sql.0)?;
        row(&mut report, count, "tenant lookup", api.1, sql.1)?;
    }
    Ok(report)
}

fn row(
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

/// Gives every tenant's admin a session with a known token.
async fn sessions_for_all(db: &Database) -> anyhow::Result<Vec<BenchTenant>> {
    let session = db.session().await?;
    let prefix = atrium_store::registry::role_prefix(&session).await?;
    let rows = session
        .query(
            "SELECT id, subdomain, schema_name FROM public.tenants ORDER BY id",
            &[],
        )
        .await?;
    let mut tenants = Vec::new();
    for row in rows {
        let (id, subdomain, schema): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        let token = format!("bench-token-{id}-{}", rand::random::<u64>());
        let token_hash = atrium_services::tokens::hash(&token);
        session
            .execute(
                &format!(
                    "INSERT INTO {schema}.sessions (user_id, token, expires_at)
                     VALUES (1, $1, now() + interval '1 day')"
                ),
                &[&token_hash],
            )
            .await?;
        tenants.push(BenchTenant {
            subdomain,
            role: tenant_role_name(&prefix, id),
            schema,
            token,
            token_hash,
        });
    }
    Ok(tenants)
}

async fn api_load(
    db: &Database,
    tenants: &Arc<Vec<BenchTenant>>,
    bench: &ApiBench,
) -> anyhow::Result<(LoadResult, LoadResult)> {
    // The server gets as many database sessions as the SQL side.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_db = db.resized(bench.clients).await?;
    let server = tokio::spawn(atrium_http::serve(
        listener,
        server_db,
        db.clone(),
        atrium_http::ServerSettings::default(),
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.clients)
        .build()?;
    let duration = Duration::from_secs(bench.seconds);
    let me = {
        let (client, tenants) = (client.clone(), tenants.clone());
        load::run(bench.clients, duration, move |_, _| {
            let (client, tenants) = (client.clone(), tenants.clone());
            async move {
                let t = &tenants[rand::random_range(0..tenants.len())];
                client
                    .get(format!("http://{addr}/api/v1/me"))
                    .header("host", format!("{}.localhost", t.subdomain))
                    .bearer_auth(&t.token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await
    };
    let lookup = {
        let (client, tenants) = (client.clone(), tenants.clone());
        load::run(bench.clients, duration, move |_, _| {
            let (client, tenants) = (client.clone(), tenants.clone());
            async move {
                let t = &tenants[rand::random_range(0..tenants.len())];
                client
                    .get(format!("http://{addr}/api/v1/me"))
                    .header("host", format!("{}.localhost", t.subdomain))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 401)
            }
        })
        .await
    };
    server.abort();
    Ok((me, lookup))
}

async fn sql_load(
    scratch: &Scratch,
    tenants: &Arc<Vec<BenchTenant>>,
    bench: &ApiBench,
) -> anyhow::Result<(LoadResult, LoadResult)> {
    let mut clients = Vec::new();
    for _ in 0..bench.clients {
        let client = scratch.db.dedicated_session().await?;
        // Names resolve when a statement is prepared: prepare it in a
        // tenant's context, as the server does on first use.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT set_config('search_path', '{}, extensions', true)",
                tenants[0].schema
            ))
            .await?;
        let me = client.prepare(SESSION_SQL).await?;
        client.batch_execute("COMMIT").await?;
        let lookup = client
            .prepare("SELECT id, name, subdomain, schema_name, status, tier FROM public.tenants WHERE subdomain = $1")
            .await?;
        clients.push(Arc::new((client, me, lookup)));
    }
    let clients = Arc::new(clients);
    let duration = Duration::from_secs(bench.seconds);
    let idle_seconds = 7.0 * 24.0 * 3600.0_f64;
    let me = {
        let (clients, tenants) = (clients.clone(), tenants.clone());
        load::run(bench.clients, duration, move |worker, _| {
            let (clients, tenants) = (clients.clone(), tenants.clone());
            async move {
                let (client, statement, _) = &*clients[worker];
                let t = &tenants[rand::random_range(0..tenants.len())];
                let setup = format!(
                    "BEGIN; SELECT set_config('search_path', '{s}, extensions', true), \
                     set_config('role', '{r}', true), set_config('application_name', '{s}', true), \
                     set_config('statement_timeout', '30000', true)",
                    s = t.schema,
                    r = t.role
                );
                client.batch_execute(&setup).await.is_ok()
                    && client
                        .query_opt(statement, &[&t.token_hash, &idle_seconds])
                        .await
                        .is_ok_and(|r| r.is_some())
                    && client.batch_execute("COMMIT").await.is_ok()
            }
        })
        .await
    };
    let lookup = {
        let (clients, tenants) = (clients.clone(), tenants.clone());
        load::run(bench.clients, duration, move |worker, _| {
            let (clients, tenants) = (clients.clone(), tenants.clone());
            async move {
                let (client, _, statement) = &*clients[worker];
                let t = &tenants[rand::random_range(0..tenants.len())];
                client
                    .query_opt(statement, &[&t.subdomain])
                    .await
                    .is_ok_and(|r| r.is_some())
            }
        })
        .await
    };
    Ok((me, lookup))
}
