//! Health, readiness, metrics, the OpenAPI document and request ids.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, send, send_problem};

/// Hosts that name no tenant, and one that does.
fn hosts(app: &TestApp) -> Vec<String> {
    let port = app.addr.port();
    vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("nope.localhost:{port}"),
        format!("a.b.localhost:{port}"),
        format!("alpha.localhost:{port}"),
    ]
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_on_any_host() {
    let app = TestApp::spawn().await;
    app.create_tenant("alpha").await;
    for host in hosts(&app) {
        let health = send(
            app.with_host(Method::GET, &host, "/healthz"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(health["status"], "ok", "{host}");
        let ready = send(app.with_host(Method::GET, &host, "/readyz"), StatusCode::OK).await;
        assert_eq!(ready["status"], "ready", "{host}");
    }
}

#[tokio::test]
async fn readyz_is_503_while_the_database_does_not_answer_and_healthz_stays_200() {
    let app = TestApp::spawn().await;
    send(app.request(Method::GET, "/readyz"), StatusCode::OK).await;
    // The server shares this pool; closed, no query can run.
    app.db.close();
    let response = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    send(app.request(Method::GET, "/healthz"), StatusCode::OK).await;
}

#[tokio::test]
async fn health_paths_answer_even_without_a_host_header() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics", "/api/openapi.json"] {
        let response = app.raw(&format!("GET {path} HTTP/1.1"), b"").await;
        assert_eq!(
            response.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_that_counts_http_requests() {
    let app = TestApp::spawn().await;
    send(app.request(Method::GET, "/healthz"), StatusCode::OK).await;
    for host in hosts(&app) {
        let response = app
            .with_host(Method::GET, &host, "/metrics")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("# TYPE atrium_http_requests_total counter"),
            "{text}"
        );
        let sample = text
            .lines()
            .find(|l| {
                l.starts_with("atrium_http_requests_total{") && l.contains("route=\"/healthz\"")
            })
            .unwrap_or_else(|| panic!("no sample for /healthz in {text}"));
        let count: f64 = sample.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 1.0, "{sample}");
        for series in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "atrium_db_pool_size",
            "atrium_db_connections_retired_total",
            "atrium_db_tenant_first_visits_total",
            "atrium_db_tenant_connections_total{from=\"lane\"}",
        ] {
            assert!(text.contains(series), "{series} missing");
        }
        assert!(!text.contains("tenant="), "no per-tenant series");
    }
}

const IMPLEMENTED_PATHS: &[(&str, &[&str])] = &[
    ("/api/v1/auth/login", &["post"]),
    ("/api/v1/auth/logout", &["post"]),
    ("/api/v1/me", &["get"]),
    ("/platform/v1/tenants/{id}/metrics", &["get"]),
    ("/api/v1/me/password", &["post"]),
    ("/api/v1/auth/password-reset", &["post"]),
    ("/api/v1/auth/password-reset/confirm", &["post"]),
    ("/api/v1/users", &["get"]),
    ("/api/v1/users/{id}", &["get", "patch", "delete"]),
    ("/api/v1/invitations", &["get", "post"]),
    ("/api/v1/invitations/{id}", &["delete"]),
    ("/api/v1/invitations/lookup", &["get"]),
    ("/api/v1/invitations/accept", &["post"]),
    ("/platform/v1/tenants", &["get", "post"]),
    ("/platform/v1/tenants/{id}", &["get", "patch", "delete"]),
    ("/platform/v1/stats", &["get"]),
];

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_implemented_path_on_any_host() {
    let app = TestApp::spawn().await;
    app.create_tenant("alpha").await;
    for host in hosts(&app) {
        let doc: Value = send(
            app.with_host(Method::GET, &host, "/api/openapi.json"),
            StatusCode::OK,
        )
        .await;
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1"), "{host}: openapi {version}");
        assert!(doc["info"]["title"].is_string());
        let paths = doc["paths"].as_object().expect("paths");
        for (path, methods) in IMPLEMENTED_PATHS {
            let item = paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
            for method in *methods {
                assert!(item.get(*method).is_some(), "{method} {path} missing");
            }
        }
        for path in paths.keys() {
            assert!(
                path.starts_with("/api/v1/") || path.starts_with("/platform/v1/"),
                "{path} listed"
            );
        }
    }
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent_and_echoed_when_sent() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("alpha").await;
    // Generated: present, non-empty and different per request.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = app.request(Method::GET, "/healthz").send().await.unwrap();
        let id = response
            .headers()
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!id.is_empty());
        seen.push(id);
    }
    assert_ne!(seen[0], seen[1], "each request gets its own id");
    // Echoed, on successes and on problem answers alike.
    let requests = [
        app.request(Method::GET, "/healthz"),
        app.authed(
            Method::GET,
            &tenant.subdomain,
            &tenant.admin_token,
            "/api/v1/me",
        ),
        app.tenant_request(Method::GET, "nope", "/api/v1/me"),
        app.tenant_request(Method::GET, &tenant.subdomain, "/api/v1/me"),
        app.request(Method::GET, "/platform/v1/stats"),
        app.request(Method::GET, "/no/such/path"),
    ];
    for (i, request) in requests.into_iter().enumerate() {
        let sent = format!("test-request-{i}");
        let response = request.header("x-request-id", &sent).send().await.unwrap();
        let echoed = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            echoed.as_deref(),
            Some(sent.as_str()),
            "request {i} ({})",
            response.status()
        );
    }
}

#[tokio::test]
async fn an_unknown_api_path_is_a_404_problem_and_any_other_a_404_page() {
    let app = TestApp::spawn().await;
    send_problem(
        app.request(Method::GET, "/api/v1/no/such/path"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let page = app
        .request(Method::GET, "/no/such/path")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
    );
    assert!(page.text().await.unwrap().contains("Page not found"));
}
