//! The tenant is chosen by the `Host` header, and only a single label
//! under the base domain names one.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, TestApp, send, send_problem};

#[tokio::test]
async fn a_tenant_path_without_a_host_header_is_tenant_not_found() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for head in [
        "GET /api/v1/me HTTP/1.1".to_owned(),
        format!(
            "GET /api/v1/me HTTP/1.1\r\nAuthorization: Bearer {}",
            t.admin_token
        ),
        "GET /api/v1/invitations/lookup?token=x HTTP/1.1".to_owned(),
    ] {
        let response = app.raw(&head, b"").await;
        assert_eq!(
            response.status,
            404,
            "{head}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(response.json()["code"], "tenant_not_found", "{head}");
    }
    let body = json!({"email": t.admin_email, "password": ADMIN_PASSWORD}).to_string();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let response = app.raw(&head, body.as_bytes()).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["code"], "tenant_not_found");
}

#[tokio::test]
async fn a_bare_base_domain_an_ip_a_deeper_name_or_an_unknown_subdomain_is_tenant_not_found() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let port = app.addr.port();
    let hosts = [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("a.alpha.localhost:{port}"),
        format!("alpha.b.localhost:{port}"),
        format!("nope.localhost:{port}"),
        format!("alpha.example.com:{port}"),
        format!("alphalocalhost:{port}"),
    ];
    for host in &hosts {
        let me = app
            .with_host(Method::GET, host, "/api/v1/me")
            .bearer_auth(&t.admin_token);
        send_problem(me, StatusCode::NOT_FOUND, "tenant_not_found").await;
        let login = app
            .with_host(Method::POST, host, "/api/v1/auth/login")
            .json(&json!({"email": t.admin_email, "password": ADMIN_PASSWORD}));
        send_problem(login, StatusCode::NOT_FOUND, "tenant_not_found").await;
        let users = app
            .with_host(Method::GET, host, "/api/v1/users")
            .bearer_auth(&t.admin_token);
        send_problem(users, StatusCode::NOT_FOUND, "tenant_not_found").await;
    }
    // The same requests on the tenant's own host work.
    send(
        app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn the_host_is_matched_case_insensitively_and_with_or_without_a_port() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let port = app.addr.port();
    for host in [
        format!("ALPHA.LocalHost:{port}"),
        format!("Alpha.LOCALHOST:{port}"),
        "alpha.localhost".to_owned(),
    ] {
        let me = send(
            app.with_host(Method::GET, &host, "/api/v1/me")
                .bearer_auth(&t.admin_token),
            StatusCode::OK,
        )
        .await;
        assert_eq!(me["email"], t.admin_email, "{host}");
        let login = send(
            app.with_host(Method::POST, &host, "/api/v1/auth/login")
                .json(&json!({"email": t.admin_email, "password": ADMIN_PASSWORD})),
            StatusCode::OK,
        )
        .await;
        assert!(login["token"].is_string(), "{host}");
    }
}
