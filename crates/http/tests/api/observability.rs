//! Per-tenant metrics and the per-tenant concurrency limit under a flood.

use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};

use atrium_http::ServerSettings;

use crate::helpers::{PLATFORM_TOKEN, TestApp, send, send_problem};

async fn metrics_of(app: &TestApp, id: i64) -> serde_json::Value {
    send(
        app.platform(Method::GET, &format!("/platform/v1/tenants/{id}/metrics")),
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn metrics_move_for_the_tenant_used_and_not_for_others() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant_of_tier("alpha", "small").await;
    let b = app.create_tenant_of_tier("bravo", "small").await;
    let before = metrics_of(&app, b.id).await;
    for _ in 0..10 {
        send(
            app.authed(Method::GET, "alpha", &a.admin_token, "/api/v1/me"),
            StatusCode::OK,
        )
        .await;
    }
    let alpha = metrics_of(&app, a.id).await;
    assert_eq!(alpha["window_seconds"], 3600);
    // create_tenant signs the admin in: that request counts too.
    assert!(alpha["requests"].as_u64().unwrap() >= 10, "{alpha}");
    assert_eq!(alpha["errors"], 0);
    let (p50, p99) = (
        alpha["latency_ms"]["p50"].as_f64().unwrap(),
        alpha["latency_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{alpha}");
    assert!(alpha["db_time_ms"].as_f64().unwrap() > 0.0, "{alpha}");
    assert_eq!(
        metrics_of(&app, b.id).await,
        before,
        "bravo saw no requests"
    );

    send_problem(
        app.platform(Method::GET, "/platform/v1/tenants/999/metrics"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        app.request(
            Method::GET,
            &format!("/platform/v1/tenants/{}/metrics", a.id),
        ),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn a_flooding_tenant_gets_503_beyond_its_limit_and_the_others_are_served() {
    // Only the slot wait may turn a request away: on a loaded machine the
    // quiet tenant's requests below can take long enough that the default
    // request timeout would end the admitted (locked) ones too.
    let app = TestApp::spawn_with(ServerSettings {
        platform_token: Some(PLATFORM_TOKEN.into()),
        request_timeout: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let noisy = app.create_tenant_of_tier("noisy", "small").await;
    let quiet = app.create_tenant_of_tier("quiet", "small").await;
    // The noisy tenant's requests are slow: its sessions table is locked,
    // so each one holds its connection slot until the lock goes.
    let locker = app.db.dedicated_connection().await.unwrap();
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE tenant_{}.sessions IN ACCESS EXCLUSIVE MODE",
            noisy.id
        ))
        .await
        .unwrap();
    let flood = {
        let requests = (0..32).map(|_| {
            app.authed(Method::GET, "noisy", &noisy.admin_token, "/api/v1/me")
                .send()
        });
        tokio::spawn(join_all(requests))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        send(
            app.authed(Method::GET, "quiet", &quiet.admin_token, "/api/v1/me"),
            StatusCode::OK,
        )
        .await;
    }
    // Past the slot wait (2 s) the requests beyond the small tier's five
    // connections are turned away.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    locker.batch_execute("COMMIT").await.unwrap();
    let responses = flood.await.unwrap();
    let mut turned_away = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                turned_away += 1;
                assert!(response.headers().contains_key("retry-after"));
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["code"], "unavailable");
            }
            other => panic!("unexpected {other}"),
        }
    }
    // At most 5 run at once; and the first of those to finish has spent
    // seconds of database time waiting on the lock, which puts the tenant
    // in debt, so the others may be refused after signing in too.
    assert!(
        (27..=31).contains(&turned_away),
        "{turned_away} of 32 turned away; at most 5 run at once"
    );
    let noisy_metrics = metrics_of(&app, noisy.id).await;
    assert_eq!(noisy_metrics["errors"], turned_away, "{noisy_metrics}");
    let quiet_metrics = metrics_of(&app, quiet.id).await;
    assert_eq!(quiet_metrics["errors"], 0, "{quiet_metrics}");
}

#[tokio::test]
async fn a_tenant_past_its_request_rate_waits_then_gets_503_and_the_others_do_not() {
    let app = TestApp::spawn().await;
    let noisy = app.create_tenant_of_tier("noisy", "small").await;
    // Large: database time is charged by the clock, and on a machine busy
    // with other test binaries one of a small tenant's requests can take
    // longer than its whole tenth of a core for a second, whoever floods.
    let quiet = app.create_tenant_of_tier("quiet", "large").await;
    // Far more signed-in requests at once than a small tier's rate and
    // burst, each allowed to wait a second for its turn.
    let flood = join_all((0..400).map(|_| {
        app.authed(Method::GET, "noisy", &noisy.admin_token, "/api/v1/me")
            .send()
    }));
    let quiet = async {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let response = app
                .authed(Method::GET, "quiet", &quiet.admin_token, "/api/v1/me")
                .send()
                .await
                .unwrap();
            statuses.push(response.status());
        }
        statuses
    };
    let (flood, quiet) = tokio::join!(flood, quiet);
    let mut admitted = 0;
    let mut turned_away = 0;
    for response in flood {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => admitted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                turned_away += 1;
                assert!(response.headers().contains_key("retry-after"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    // Admitted: as many as the tier's burst and its five connections let
    // through before the wait runs out (fewer on a loaded machine).
    assert!(
        turned_away > 0 && admitted >= 10,
        "{admitted} admitted, {turned_away} turned away"
    );
    assert!(
        quiet.iter().all(|s| *s == StatusCode::OK),
        "the quiet tenant is never turned away: {quiet:?}"
    );
}

/// Log lines written in this test (the server runs on the test's thread).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The test binary's log, captured by a global subscriber: a thread-local
/// one races with other tests' threads over tracing's callsite cache.
fn captured_logs() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .json()
                .with_writer(move || writer.clone())
                .finish(),
        )
        .expect("no other global subscriber in this test binary");
        captured
    })
}

#[tokio::test]
async fn an_internal_errors_log_line_names_the_request_its_tenant_route_and_user() {
    let captured = captured_logs();
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "small").await;
    // A table gone from under the server: the next list is a 500.
    app.sql_execute(&format!(
        "ALTER TABLE tenant_{}.contacts RENAME TO contacts_gone",
        t.id
    ))
    .await;
    let response = app
        .authed(Method::GET, "alpha", &t.admin_token, "/api/v1/contacts")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["fields"]["message"] == "internal error" && l["span"]["request_id"] == "trace-me-42"
        })
        .unwrap_or_else(|| panic!("no internal error logged for the request: {logs}"));
    let span = &line["span"];
    assert_eq!(span["route"], "/api/v1/contacts", "{line}");
    assert_eq!(span["tenant"], t.id, "{line}");
    assert!(span["user"].as_i64().is_some_and(|u| u > 0), "{line}");
}

#[tokio::test]
async fn statements_past_the_threshold_are_logged_and_counted_for_their_tenant() {
    let captured = captured_logs();
    // Every statement is past a zero threshold.
    let app = TestApp::spawn_with(ServerSettings {
        slow_statement: Duration::ZERO,
        platform_token: Some(PLATFORM_TOKEN.into()),
        ..Default::default()
    })
    .await;
    let t = app.create_tenant_of_tier("alpha", "small").await;
    let response = app
        .authed(Method::GET, "alpha", &t.admin_token, "/api/v1/contacts")
        .header("x-request-id", "slow-one-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["fields"]["message"] == "slow statement" && l["span"]["request_id"] == "slow-one-7"
        })
        .unwrap_or_else(|| panic!("no slow statement logged for the request: {logs}"));
    assert!(
        line["fields"]["statement"]
            .as_str()
            .is_some_and(|s| s.starts_with("SELECT")),
        "{line}"
    );
    assert_eq!(line["span"]["tenant"], t.id, "{line}");
    assert_eq!(
        line["fields"]["schema"],
        format!("tenant_{}", t.id),
        "{line}"
    );
    let alpha = metrics_of(&app, t.id).await;
    assert!(alpha["slow_statements"].as_u64().unwrap() >= 1, "{alpha}");
    let text = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("atrium_slow_statements_total{{tenant_id=\"{}\"}}", t.id);
    assert!(text.contains(&series), "{series} missing from {text}");
}
