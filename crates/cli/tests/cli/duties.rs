//! The operator's duties beyond provisioning: index health, capacity,
//! rehearsed migrations.

use std::time::Duration;

use atrium_testkit::migrated_database;

use crate::helpers::{assert_fails, atrium, create_tenant, json, stderr, stdout};

async fn sql(db: &atrium_store::Database, statement: &str) {
    db.connection()
        .await
        .unwrap()
        .batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e} {:?}", e.as_db_error()));
}

async fn tenant_schema(db: &atrium_store::Database, subdomain: &str) -> String {
    db.connection()
        .await
        .unwrap()
        .query_one(
            "SELECT schema_name FROM public.tenants WHERE subdomain = $1",
            &[&subdomain],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bloated_index_is_found_and_rebuilt_while_writes_go_on() {
    let t = migrated_database().await;
    let url = &t.url;
    create_tenant(url, "acme");
    let schema = tenant_schema(&t.db, "acme").await;
    // 150,000 contacts, then nine in ten deleted: the survivors keep every
    // leaf page of the primary key a tenth full.
    sql(
        &t.db,
        &format!(
            "INSERT INTO {schema}.contacts (first_name, last_name, email, created_by)
             SELECT 'F' || g, 'L' || g, 'c' || g || '@example.com', (SELECT min(id) FROM {schema}.users)
               FROM generate_series(1, 150000) g;
             DELETE FROM {schema}.contacts WHERE id % 10 <> 0;"
        ),
    )
    .await;
    sql(&t.db, &format!("VACUUM ANALYZE {schema}.contacts")).await;
    // What an interrupted concurrent rebuild leaves: an invalid index.
    let interrupted = t
        .db
        .connection()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY contacts_pkey_ccnew ON {schema}.contacts (created_by)"
        ))
        .await;
    assert!(interrupted.is_err(), "duplicates make the build fail");

    let bloated = json(&atrium(url, &["indexes", "--bloated", "--json"]));
    let pkey = bloated
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["index"] == "contacts_pkey")
        .unwrap_or_else(|| panic!("contacts_pkey not found bloated: {bloated}"));
    assert_eq!(
        (pkey["tenant"].as_str(), pkey["cluster"].as_str()),
        (Some("acme"), Some("default")),
        "{pkey}"
    );
    assert!(pkey["bloat_ratio"].as_f64().unwrap() > 0.6, "{pkey}");
    // One tenant's estimate lists every B-tree index, bloated or not.
    let all = json(&atrium(url, &["indexes", "acme", "--bloated", "--json"]));
    assert!(all.as_array().unwrap().len() > bloated.as_array().unwrap().len());
    let table = stdout(&atrium(url, &["indexes", "--bloated"]));
    assert!(
        table.contains("BLOAT") && table.contains("contacts_pkey"),
        "{table}"
    );

    // A writer keeps adding contacts while the indexes are rebuilt, and a
    // watcher notes how many it has written each time it sees a concurrent
    // rebuild of the table in progress: writes that went on in between
    // were not blocked by it (a plain REINDEX would hold them all).
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let written = std::sync::Arc::new(AtomicU32::new(0));
    let writer = tokio::spawn({
        let (db, schema, stop, written) =
            (t.db.clone(), schema.clone(), stop.clone(), written.clone());
        async move {
            let session = db.connection().await.unwrap();
            while !stop.load(Relaxed) {
                session
                    .execute(
                        &format!(
                            "INSERT INTO {schema}.contacts (first_name, last_name, created_by)
                             VALUES ('During', 'Rebuild', (SELECT min(id) FROM {schema}.users))"
                        ),
                        &[],
                    )
                    .await
                    .expect("a write during the rebuild");
                written.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let watcher = tokio::spawn({
        let (db, schema, stop, written) =
            (t.db.clone(), schema.clone(), stop.clone(), written.clone());
        async move {
            let session = db.connection().await.unwrap();
            let mut seen = Vec::new();
            while !stop.load(Relaxed) {
                let rebuilding = session
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM pg_stat_progress_create_index
                              WHERE relid = '{schema}.contacts'::regclass
                                AND command = 'REINDEX CONCURRENTLY'"
                        ),
                        &[],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0);
                if rebuilding > 0 {
                    seen.push(written.load(Relaxed));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let maintained = tokio::task::spawn_blocking({
        let url = url.clone();
        move || atrium(&url, &["maintain", "--reindex", "--json"])
    })
    .await
    .unwrap();
    stop.store(true, Relaxed);
    writer.await.unwrap();
    let seen = watcher.await.unwrap();
    assert!(
        maintained.status.success(),
        "{} {}",
        stderr(&maintained),
        stdout(&maintained)
    );
    let report: serde_json::Value = serde_json::from_slice(&maintained.stdout).unwrap();
    assert_eq!(report["reindex_ran"], true, "{report}");
    let rebuilt = report["reindexed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["index"] == "contacts_pkey")
        .unwrap_or_else(|| panic!("contacts_pkey not rebuilt: {report}"));
    assert!(
        rebuilt["bytes_after"].as_i64().unwrap() * 2 < rebuilt["bytes_before"].as_i64().unwrap(),
        "{rebuilt}"
    );
    let (first, last) = (seen.first().copied(), seen.last().copied());
    assert!(
        first.zip(last).is_some_and(|(first, last)| last > first),
        "writes went on while the rebuild ran (writes counted at each sighting: {seen:?})"
    );
    let bloated = json(&atrium(url, &["indexes", "--bloated", "--json"]));
    assert!(
        !bloated
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["index"] == "contacts_pkey"),
        "{bloated}"
    );
    let leftovers: i64 =
        t.db.connection()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname ~ '_ccnew'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(leftovers, 0, "the interrupted rebuild's index was dropped");
    let check = atrium(url, &["check"]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert_fails(
        &atrium(url, &["indexes", "nobody", "--bloated"]),
        1,
        "not found",
    );
}

#[tokio::test]
async fn capacity_shows_sizes_growth_and_when_the_disk_fills() {
    let t = migrated_database().await;
    let url = &t.url;
    create_tenant(url, "acme");
    create_tenant(url, "bravo");
    let schema = tenant_schema(&t.db, "acme").await;
    sql(
        &t.db,
        &format!(
            "INSERT INTO {schema}.contacts (first_name, last_name, email, created_by)
             SELECT 'F' || g, 'L' || g, 'c' || g || '@example.com', (SELECT min(id) FROM {schema}.users)
               FROM generate_series(1, 2000) g"
        ),
    )
    .await;
    sql(&t.db, &format!("ANALYZE {schema}.contacts")).await;

    // The first maintain of the day samples every tenant; the next does not.
    let first = json(&atrium(url, &["maintain", "--json"]));
    assert_eq!(first["capacity_samples"], 2, "{first}");
    let second = json(&atrium(url, &["maintain", "--json"]));
    assert_eq!(second["capacity_samples"], 0, "{second}");

    // A history: 7 and 30 days ago each tenant was 7 and 30 MiB smaller,
    // and a sample too old to keep.
    sql(
        &t.db,
        "INSERT INTO public.capacity_samples (tenant_id, sampled_on, total_bytes, rows)
         SELECT tenant_id, current_date - d, total_bytes - d * 1048576, rows
           FROM public.capacity_samples, (VALUES (7), (30), (40)) AS days(d)",
    )
    .await;
    let report = json(&atrium(url, &["capacity", "--disk-size", "1GiB", "--json"]));
    let acme = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        report["tenants"][0]["tenant"], "acme",
        "largest first: {report}"
    );
    let near = |value: &serde_json::Value, expected: i64| {
        (value.as_i64().unwrap() - expected).abs() < 256 * 1024
    };
    assert!(near(&acme["growth_7d_bytes"], 7 * 1048576), "{acme}");
    assert_eq!(acme["growth_7d_days"], 7, "{acme}");
    assert!(near(&acme["growth_30d_bytes"], 30 * 1048576), "{acme}");
    assert_eq!(acme["growth_30d_days"], 30, "{acme}");
    assert!(acme["rows"].as_i64().unwrap() >= 2000, "{acme}");
    assert_eq!(
        acme["total_bytes"].as_i64().unwrap(),
        acme["table_bytes"].as_i64().unwrap()
            + acme["index_bytes"].as_i64().unwrap()
            + acme["toast_bytes"].as_i64().unwrap()
    );
    let cluster = &report["clusters"][0];
    assert_eq!(cluster["cluster"], "default");
    assert_eq!(cluster["disk_source"], "declared", "{cluster}");
    assert_eq!(cluster["disk_total_bytes"], 1 << 30, "{cluster}");
    // Two tenants, each a MiB a day.
    let per_day = cluster["growth_bytes_per_day"].as_f64().unwrap();
    assert!((per_day - 2.0 * 1048576.0).abs() < 100_000.0, "{cluster}");
    let days = cluster["days_until_full"].as_f64().unwrap();
    let free = cluster["disk_free_bytes"].as_f64().unwrap();
    assert!((days - free / per_day).abs() < 0.2, "{cluster}");
    assert!(cluster["full_on"].is_string(), "{cluster}");
    assert_eq!(report["totals"]["tenant_count"], 2, "{report}");
    assert!(report["totals"]["total_bytes"].as_i64().unwrap() > 0);

    let table = stdout(&atrium(url, &["capacity", "--disk-size", "default=1GiB"]));
    assert!(
        table.contains("FULL_ON") && table.contains("acme"),
        "{table}"
    );

    // One tenant, table by table, rows counted.
    let one = json(&atrium(url, &["capacity", "acme", "--json"]));
    let contacts = one["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "contacts")
        .unwrap_or_else(|| panic!("{one}"));
    assert_eq!(contacts["rows"], 2000, "{one}");
    assert_eq!(one["tenant"], "acme");
    assert!(stdout(&atrium(url, &["capacity", "acme"])).contains("TOAST_MIB"));

    // Samples are bounded: the next day's sample drops the 40-day-old one.
    sql(
        &t.db,
        "DELETE FROM public.capacity_samples WHERE sampled_on = current_date",
    )
    .await;
    let resampled = json(&atrium(url, &["maintain", "--json"]));
    assert_eq!(resampled["capacity_samples"], 2, "{resampled}");
    let oldest: i32 =
        t.db.connection()
            .await
            .unwrap()
            .query_one(
                "SELECT current_date - min(sampled_on) FROM public.capacity_samples",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(oldest, 30);

    assert_fails(&atrium(url, &["capacity", "nobody"]), 1, "not found");
    assert_fails(
        &atrium(url, &["capacity", "--disk-size", "lots"]),
        2,
        "disk-size",
    );
    assert_fails(
        &atrium(url, &["capacity", "--disk-size", "0"]),
        2,
        "disk-size",
    );
}

#[tokio::test]
async fn a_migration_is_rehearsed_on_a_copy_of_the_largest_tenant() {
    let t = migrated_database().await;
    let url = &t.url;
    create_tenant(url, "acme");
    create_tenant(url, "bravo");
    let nothing = atrium(url, &["migrate", "--rehearse", "acme"]);
    assert!(nothing.status.success(), "{}", stderr(&nothing));
    assert!(
        stderr(&nothing).contains("nothing to rehearse"),
        "{}",
        stderr(&nothing)
    );
    // bravo, the larger, is back at version 2: 0003 (the session triggers)
    // is pending for it.
    let schema = tenant_schema(&t.db, "bravo").await;
    sql(
        &t.db,
        &format!(
            "INSERT INTO {schema}.contacts (first_name, last_name, created_by)
             SELECT 'F' || g, 'L' || g, (SELECT min(id) FROM {schema}.users)
               FROM generate_series(1, 5000) g;
             DROP TRIGGER sessions_notify_changed ON {schema}.sessions;
             DROP TRIGGER sessions_notify_deleted ON {schema}.sessions;
             DROP TRIGGER users_notify_changed ON {schema}.users;
             DELETE FROM {schema}.schema_migrations WHERE version = '0003';
             UPDATE public.tenants SET schema_version = 2 WHERE subdomain = 'bravo';"
        ),
    )
    .await;
    // Sizes are the statistics' (autovacuum would analyze it soon).
    sql(&t.db, &format!("ANALYZE {schema}.contacts")).await;
    let rehearsed = json(&atrium(url, &["migrate", "--rehearse", "--json"]));
    assert_eq!(rehearsed["tenant"], "bravo", "the largest: {rehearsed}");
    let rehearsal = &rehearsed["rehearsal"];
    assert_eq!(rehearsal["from_version"], 2, "{rehearsed}");
    assert!(
        rehearsal["rows_copied"].as_i64().unwrap() >= 5000,
        "{rehearsed}"
    );
    let migration = &rehearsal["migrations"][0];
    assert_eq!(migration["version"], 3, "{rehearsed}");
    assert!(migration["seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        migration["locks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "users" && l["blocks"] == "writes"),
        "a new trigger holds writes to users: {rehearsed}"
    );
    let table = stdout(&atrium(url, &["migrate", "--rehearse", "bravo"]));
    assert!(
        table.contains("LOCKS TAKEN") && table.contains("0003"),
        "{table}"
    );
    // Still at version 2, without the triggers: then migrate does it for real.
    let version: i32 =
        t.db.connection()
            .await
            .unwrap()
            .query_one(
                "SELECT schema_version FROM public.tenants WHERE subdomain = 'bravo'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(version, 2);
    assert!(atrium(url, &["migrate"]).status.success());

    assert_fails(
        &atrium(url, &["migrate", "--rehearse", "nobody"]),
        1,
        "not found",
    );
    assert_fails(&atrium(url, &["migrate", "--json"]), 2, "rehearse");
    assert_fails(
        &atrium(url, &["migrate", "--rehearse", "acme", "--tenant", "acme"]),
        2,
        "tenant",
    );
}

/// What a flood of requests met.
#[derive(Debug)]
struct Flood {
    served: usize,
    /// 503s for the tenant's request rate ("using all of its capacity").
    over_rate: usize,
    /// 503s for the tenant's database time.
    over_budget: usize,
    seconds: f64,
}

/// `n` signed-in `GET /api/v1/me` at once at the server on `port`.
async fn flood(port: u16, token: &str, n: usize) -> Flood {
    let client = reqwest::Client::builder()
        .resolve(
            "acme.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    let url = format!("http://acme.localhost:{port}/api/v1/me");
    let started = std::time::Instant::now();
    // Spawned, so they all go out at once.
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), token.to_owned());
            tokio::spawn(async move {
                let response = client.get(url).bearer_auth(token).send().await.unwrap();
                let status = response.status().as_u16();
                let problem: serde_json::Value = response.json().await.unwrap_or_default();
                (status, problem["detail"].as_str().unwrap_or("").to_owned())
            })
        })
        .collect();
    let mut flood = Flood {
        served: 0,
        over_rate: 0,
        over_budget: 0,
        seconds: 0.0,
    };
    for request in requests {
        let (status, detail) = request.await.unwrap();
        match status {
            200 => flood.served += 1,
            503 if detail.contains("capacity") => flood.over_rate += 1,
            503 if detail.contains("database time") => flood.over_budget += 1,
            _ => {}
        }
    }
    flood.seconds = started.elapsed().as_secs_f64();
    flood
}

/// The most a small tenant's flood lasting `seconds` can be served by one
/// of `servers` servers: its share of the burst of 100, and of 50 a second
/// for the flood and the one second a request may wait (and a few more
/// for the edges of a second).
fn small_tier_share(servers: f64, seconds: f64) -> f64 {
    (100.0 + 50.0 * (seconds + 1.0)) / servers + 5.0
}

/// An `atrium serve` over `url` on a free port, running in `dir`.
fn serve_over(url: &str, dir: &std::path::Path) -> crate::helpers::Serving {
    crate::helpers::Serving::start(
        crate::helpers::command(dir)
            .env("ATRIUM_DATABASE_URL", url)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--unsafe-allow-privileged-login",
            ]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_split_a_tenants_request_rate_between_them() {
    let t = migrated_database().await;
    let url = &t.url;
    create_tenant(url, "acme");
    let dir = tempfile::tempdir().unwrap();
    let start = || serve_over(url, dir.path());
    let mut first = start();
    first.wait_for("servers=1");
    let mut second = start();
    first.wait_for("servers=2");
    second.wait_for("servers=2");
    let login: serde_json::Value = reqwest::Client::builder()
        .resolve(
            "acme.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], first.port)),
        )
        .build()
        .unwrap()
        .post(format!(
            "http://acme.localhost:{}/api/v1/auth/login",
            first.port
        ))
        .json(&serde_json::json!({"email": "boss@acme.com", "password": "a-long-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    // A small tenant: 50 requests a second after a burst of 100. Each of
    // two servers gives half.
    let half = flood(first.port, &token, 300).await;
    assert!(
        (half.served as f64) <= small_tier_share(2.0, half.seconds),
        "more than half the tier: {half:?}"
    );
    assert!(half.served > 0, "the tenant was served at all: {half:?}");

    // One stops: the other takes the whole tier within a heartbeat (and
    // its bucket refills in two seconds).
    second.stop();
    first.wait_for("servers=1");
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", first.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("atrium_live_servers 1"), "{metrics}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let whole = flood(first.port, &token, 300).await;
    assert!(
        (whole.served as f64) <= small_tier_share(1.0, whole.seconds),
        "more than the tier: {whole:?}"
    );
    // Database time, charged by the clock, is the other limit: on a
    // machine busy with other test binaries the tenant's requests run
    // slowly and its budget refuses a flood before its rate does (CI saw
    // 11 served). Where the rate alone refused, the two floods (as long as
    // each other: requests queue for the tier's connections and wait for
    // the rate) show the share: the whole tier serves about twice half
    // (a burst and a second of the rate: 150 against 75). A tier not given
    // back would serve about as much as half; the edges of each second
    // add the same few requests to both, and on a busy machine the tier's
    // connections, not the rate, can bound the second flood (CI saw 93
    // then 135), so the test asks for a quarter more, not twice.
    if half.over_budget == 0 && whole.over_budget == 0 {
        assert!(half.over_rate > 0, "the rate refused the flood: {half:?}");
        assert!(
            whole.served as f64 >= 1.25 * half.served as f64,
            "the stop gave the tier back: {half:?} then {whole:?}"
        );
    }
    first.stop();
}

/// What `GET /api/v1/me` without a token answers for `tenant` at `port`:
/// the status and, for a refusal, the problem's code.
async fn me_anonymously(port: u16, tenant: &str) -> (u16, Option<String>) {
    let host = format!("{tenant}.localhost");
    let response = reqwest::Client::builder()
        .resolve(&host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .unwrap()
        .get(format!("http://{host}:{port}/api/v1/me"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let problem: serde_json::Value = response.json().await.unwrap_or_default();
    let code = problem["code"].as_str().map(str::to_owned);
    if code.as_deref() == Some("maintenance") {
        assert!(retry_after, "a maintenance answer says when to come back");
    }
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_from_the_command_line_reaches_two_servers_within_a_second() {
    let t = migrated_database().await;
    let url = &t.url;
    create_tenant(url, "acme");
    create_tenant(url, "globex");
    let dir = tempfile::tempdir().unwrap();
    let start = || serve_over(url, dir.path());
    let servers = [start(), start()];
    let signed_out = (401, Some("unauthorized".to_owned()));
    let in_maintenance = (503, Some("maintenance".to_owned()));
    for server in &servers {
        // Resolved (and cached) by both servers before the change.
        assert_eq!(me_anonymously(server.port, "acme").await, signed_out);
    }
    // Every server answers `expected` for acme within a second of the
    // command's return, while globex keeps serving.
    let reaches_both = async |args: &'static [&'static str], expected: &(u16, Option<String>)| {
        let out = tokio::task::spawn_blocking({
            let url = url.clone();
            move || atrium(&url, args)
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let changed = std::time::Instant::now();
        for server in &servers {
            while me_anonymously(server.port, "acme").await != *expected {
                assert!(
                    changed.elapsed() < Duration::from_secs(1),
                    "server on port {} still answers the old way after a second",
                    server.port
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(me_anonymously(server.port, "globex").await, signed_out);
        }
    };
    reaches_both(
        &[
            "tenant",
            "maintenance",
            "acme",
            "on",
            "--message",
            "Back at noon",
        ],
        &in_maintenance,
    )
    .await;
    reaches_both(&["tenant", "maintenance", "acme", "off"], &signed_out).await;
    let again = atrium(url, &["tenant", "maintenance", "acme", "off"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing changed"),
        "{}",
        stderr(&again)
    );

    // Maintenance never lifts a suspension, on or off.
    assert!(
        atrium(url, &["tenant", "suspend", "globex"])
            .status
            .success()
    );
    for state in ["on", "off"] {
        assert_fails(
            &atrium(url, &["tenant", "maintenance", "globex", state]),
            1,
            "is suspended",
        );
    }
    let shown = json(&atrium(url, &["tenant", "show", "globex", "--json"]));
    assert_eq!(shown["status"], "suspended");
    for server in servers {
        server.stop();
    }
}
