//! The platform API: changing, suspending and deleting tenants.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, TestApp, error_fields, poll_until_status, send, send_invalid, send_problem,
};

fn new_tenant(subdomain: &str) -> Value {
    json!({
        "name": "Acme Corporation",
        "subdomain": subdomain,
        "admin": {"email": "boss@acme.example", "first_name": "Bo", "last_name": "Ss", "password": ADMIN_PASSWORD}
    })
}

#[tokio::test]
async fn patching_a_tenant_changes_its_name_tier_status_and_subdomain() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let path = format!("/platform/v1/tenants/{}", t.id);
    let patched = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"name": "Alpha Two"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["name"], "Alpha Two");
    assert_eq!(patched["subdomain"], "alpha", "unnamed fields stay");
    let patched = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"tier": "medium"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["tier"], "medium");
    assert_eq!(patched["name"], "Alpha Two");
    let same = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"subdomain": "alpha"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(same["subdomain"], "alpha", "its own subdomain is not taken");
    let unchanged = send(
        app.platform(Method::PATCH, &path).json(&json!({})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&unchanged["name"], &unchanged["tier"]),
        (&json!("Alpha Two"), &json!("medium"))
    );
    // A new subdomain: the tenant answers there, and no longer at the old one.
    let patched = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"subdomain": "Omega"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["subdomain"], "omega");
    let (status, body) = poll_until_status(
        || app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::NOT_FOUND,
        Duration::from_secs(3), // a notification round trip; slack for a loaded CI machine
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("tenant_not_found")),
        "{body}"
    );
    let me = send(
        app.authed(Method::GET, "omega", &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["email"], t.admin_email);
    let tenant = app.platform_tenant(t.id).await;
    assert_eq!(
        (
            &tenant["name"],
            &tenant["subdomain"],
            &tenant["tier"],
            &tenant["status"]
        ),
        (
            &json!("Alpha Two"),
            &json!("omega"),
            &json!("medium"),
            &json!("active")
        )
    );
}

#[tokio::test]
async fn patching_to_a_taken_subdomain_is_409_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let path = format!("/platform/v1/tenants/{}", a.id);
    for taken in ["bravo", "BRAVO"] {
        let patch = app
            .platform(Method::PATCH, &path)
            .json(&json!({"subdomain": taken, "name": "Renamed"}));
        send_problem(patch, StatusCode::CONFLICT, "conflict").await;
    }
    let tenant = app.platform_tenant(a.id).await;
    assert_eq!(
        (&tenant["subdomain"], &tenant["name"]),
        (&json!("alpha"), &json!("alpha Inc"))
    );
}

#[tokio::test]
async fn patching_an_invalid_value_is_422_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "small").await;
    let path = format!("/platform/v1/tenants/{}", t.id);
    for (body, field) in [
        (json!({"status": "paused"}), "status"),
        (json!({"status": "deleted"}), "status"),
        (json!({"status": 1}), "status"),
        (json!({"tier": "xl"}), "tier"),
        (json!({"subdomain": "www"}), "subdomain"),
        (json!({"subdomain": "no_way"}), "subdomain"),
        (json!({"name": ""}), "name"),
        (json!({"plan": "gold"}), "plan"),
    ] {
        let problem = send_invalid(app.platform(Method::PATCH, &path).json(&body), field).await;
        assert_eq!(error_fields(&problem), vec![field], "{body}");
    }
    let mixed = json!({"name": "Fine", "status": "paused"});
    send_invalid(app.platform(Method::PATCH, &path).json(&mixed), "status").await;
    let tenant = app.platform_tenant(t.id).await;
    assert_eq!(
        (
            &tenant["name"],
            &tenant["subdomain"],
            &tenant["tier"],
            &tenant["status"]
        ),
        (
            &json!("alpha Inc"),
            &json!("alpha"),
            &json!("small"),
            &json!("active")
        )
    );
}

#[tokio::test]
async fn suspending_a_tenant_makes_its_api_403_tenant_suspended_within_a_second_and_resuming_restores_it()
 {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let other = app.create_tenant("bravo").await;
    let path = format!("/platform/v1/tenants/{}", t.id);
    // Warm any cache first: the change must reach it.
    send(
        app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    let suspended = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"status": "suspended"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(suspended["status"], "suspended");
    let (status, body) = poll_until_status(
        || app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::FORBIDDEN,
        Duration::from_secs(3), // a notification round trip; slack for a loaded CI machine
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "tenant_suspended");
    // Every tenant path answers so, signed in or not.
    let login = app
        .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
        .json(&json!({"email": t.admin_email, "password": ADMIN_PASSWORD}));
    send_problem(login, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let lookup = app.tenant_request(
        Method::GET,
        &t.subdomain,
        "/api/v1/invitations/lookup?token=x",
    );
    send_problem(lookup, StatusCode::FORBIDDEN, "tenant_suspended").await;
    // Another tenant and the platform are unaffected.
    send(
        app.authed(
            Method::GET,
            &other.subdomain,
            &other.admin_token,
            "/api/v1/me",
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.platform_tenant(t.id).await["status"], "suspended");
    // Resuming restores the tenant, sessions included.
    let resumed = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"status": "active"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(resumed["status"], "active");
    let (status, body) = poll_until_status(
        || app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
        Duration::from_secs(3), // a notification round trip; slack for a loaded CI machine
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], t.admin_email);
}

#[tokio::test]
async fn deleting_a_tenant_is_204_drops_its_schema_and_its_api_becomes_tenant_not_found() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let other = app.create_tenant("bravo").await;
    app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let schema = format!("tenant_{}", t.id);
    let count_schema = format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'");
    assert_eq!(app.sql_i64(&count_schema).await, 1);
    send(
        app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    let path = format!("/platform/v1/tenants/{}", t.id);
    let deleted = send(app.platform(Method::DELETE, &path), StatusCode::NO_CONTENT).await;
    assert_eq!(deleted, Value::Null, "a 204 has no body");
    let (status, body) = poll_until_status(
        || app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::NOT_FOUND,
        Duration::from_secs(3), // a notification round trip; slack for a loaded CI machine
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "tenant_not_found");
    let login = app
        .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
        .json(&json!({"email": t.admin_email, "password": ADMIN_PASSWORD}));
    send_problem(login, StatusCode::NOT_FOUND, "tenant_not_found").await;
    assert_eq!(app.sql_i64(&count_schema).await, 0, "the schema is gone");
    let registry_rows = app
        .sql_i64(&format!(
            "SELECT count(*) FROM public.tenants WHERE id = {}",
            t.id
        ))
        .await;
    assert_eq!(registry_rows, 0);
    send_problem(
        app.platform(Method::GET, &path),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        app.platform(Method::DELETE, &path),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send(
        app.authed(
            Method::GET,
            &other.subdomain,
            &other.admin_token,
            "/api/v1/me",
        ),
        StatusCode::OK,
    )
    .await;
    let stats = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&stats["tenant_count"], &stats["total_users"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    // The subdomain is free again.
    send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("alpha")),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn platform_stats_total_tenants_users_contacts_and_deals() {
    let app = TestApp::spawn().await;
    let empty = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    for key in [
        "tenant_count",
        "total_users",
        "total_contacts",
        "total_deals",
    ] {
        assert_eq!(empty[key], 0, "{key} in {empty}");
    }
    let a = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    app.add_user(&a, "rep@alpha.example", "sales_rep").await;
    let (viewer, _) = app.add_user(&a, "viewer@alpha.example", "viewer").await;
    let stats = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stats["tenant_count"], 2, "{stats}");
    assert_eq!(stats["total_users"], 4, "{stats}");
    assert_eq!(stats["total_contacts"], 0, "{stats}");
    assert_eq!(stats["total_deals"], 0, "{stats}");
    send(
        app.authed(
            Method::PATCH,
            &a.subdomain,
            &a.admin_token,
            &format!("/api/v1/users/{viewer}"),
        )
        .json(&json!({"active": false})),
        StatusCode::OK,
    )
    .await;
    let stats = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stats["total_users"], 3, "only active users count: {stats}");
}

#[tokio::test]
async fn an_unknown_or_non_integer_tenant_id_is_404() {
    let app = TestApp::spawn().await;
    app.create_tenant("alpha").await;
    for id in ["999", "abc", "0", "-1", "1.5", "99999999999", "1abc"] {
        let path = format!("/platform/v1/tenants/{id}");
        send_problem(
            app.platform(Method::GET, &path),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        let patch = app
            .platform(Method::PATCH, &path)
            .json(&json!({"name": "x"}));
        send_problem(patch, StatusCode::NOT_FOUND, "not_found").await;
        send_problem(
            app.platform(Method::DELETE, &path),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    assert_eq!(app.sql_i64("SELECT count(*) FROM public.tenants").await, 1);
}

#[tokio::test]
async fn once_a_rename_or_suspension_is_answered_the_same_server_never_serves_the_old_state() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let t = app.create_tenant("alpha").await;
    // Others keep looking the tenant up by both names, so lookups race
    // with every change and the cache is always warm.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for host in ["alpha", "omega", "alpha", "omega"] {
        let (app, stop) = (app.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = app
                    .tenant_request(Method::GET, host, "/api/v1/me")
                    .send()
                    .await;
            }
        }));
    }
    let status_of = |host: &'static str| {
        let app = app.clone();
        async move {
            let response = app
                .tenant_request(Method::GET, host, "/api/v1/me")
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    let patch = |body: Value| {
        send(
            app.platform(Method::PATCH, &format!("/platform/v1/tenants/{}", t.id))
                .json(&body),
            StatusCode::OK,
        )
    };
    for round in 0..25 {
        let (old, new) = if round % 2 == 0 {
            ("alpha", "omega")
        } else {
            ("omega", "alpha")
        };
        patch(json!({"subdomain": new})).await;
        assert_eq!(
            status_of(old).await,
            (StatusCode::NOT_FOUND, "tenant_not_found".into()),
            "round {round}: the old host answered after the rename"
        );
        patch(json!({"status": "suspended"})).await;
        assert_eq!(
            status_of(new).await,
            (StatusCode::FORBIDDEN, "tenant_suspended".into()),
            "round {round}"
        );
        patch(json!({"status": "active"})).await;
        // Active again: asks for a token (or, with the anonymous load
        // around, for patience).
        let (status, code) = status_of(new).await;
        assert!(
            code == "unauthorized" || code == "rate_limited",
            "round {round}: {status} {code}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn maintenance_answers_503_with_its_message_on_every_server_while_the_others_serve() {
    let app = TestApp::spawn().await;
    let alpha = app.create_tenant("alpha").await;
    let beta = app.create_tenant("beta").await;
    // A second server over the same database, which has alpha cached.
    let other = app.another_server().await;
    let on_other = || other.authed(Method::GET, "alpha", &alpha.admin_token, "/api/v1/me");
    send(on_other(), StatusCode::OK).await;

    let path = format!("/platform/v1/tenants/{}", alpha.id);
    let changed = send(
        app.platform(Method::PATCH, &path).json(&json!({
            "status": "maintenance",
            "maintenance_message": "Moving to faster disks; back by 14:00 UTC."
        })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["status"], "maintenance");
    assert_eq!(changed["maintenance_by"], "platform API");
    assert!(changed["maintenance_since"].is_string(), "{changed}");

    for (label, request) in [
        (
            "this server",
            app.authed(Method::GET, "alpha", &alpha.admin_token, "/api/v1/me"),
        ),
        ("the other server", on_other()),
    ] {
        let started = std::time::Instant::now();
        let mut request = Some(request);
        loop {
            let response = request.take().unwrap().send().await.unwrap();
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(
                    response.headers()["retry-after"].to_str().unwrap(),
                    "30",
                    "{label}"
                );
                let problem: Value = response.json().await.unwrap();
                assert_eq!(problem["code"], "maintenance", "{label}");
                assert_eq!(
                    problem["detail"], "Moving to faster disks; back by 14:00 UTC.",
                    "{label}"
                );
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(3),
                "{label} still served"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            request = Some(on_other());
        }
    }
    // Its pages say so; the other tenant is served.
    let page = app
        .tenant_request(Method::GET, "alpha", "/sign-in")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = page.text().await.unwrap();
    assert!(html.contains("Down for maintenance"), "{html}");
    assert!(html.contains("Moving to faster disks"), "{html}");
    send(
        app.authed(Method::GET, "beta", &beta.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;

    // Bad input changes nothing.
    send_invalid(
        app.platform(Method::PATCH, &path)
            .json(&json!({"maintenance_message": "no status"})),
        "maintenance_message",
    )
    .await;
    send_invalid(
        app.platform(Method::PATCH, &path)
            .json(&json!({"status": "maintenance", "maintenance_message": "x".repeat(501)})),
        "maintenance_message",
    )
    .await;
    send_invalid(
        app.platform(Method::PATCH, &path)
            .json(&json!({"status": "sleeping"})),
        "status",
    )
    .await;

    let back = send(
        app.platform(Method::PATCH, &path)
            .json(&json!({"status": "active"})),
        StatusCode::OK,
    )
    .await;
    assert!(
        back["maintenance_message"].is_null() && back["maintenance_by"].is_null(),
        "{back}"
    );
    send(
        app.authed(Method::GET, "alpha", &alpha.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
}
