//! Servers remember signed-in sessions; whatever ends a session or changes
//! its user takes effect on every server within a second.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, TestApp, TestTenant, expect_json, poll_until_status, send};

const WITHIN: Duration = Duration::from_secs(1);

/// `GET /api/v1/me` with `token` on `server`.
fn me<'a>(
    server: &'a TestApp,
    tenant: &'a TestTenant,
    token: &'a str,
) -> impl Fn() -> reqwest::RequestBuilder + 'a {
    move || server.authed(Method::GET, &tenant.subdomain, token, "/api/v1/me")
}

/// Asserts `token` stops working on `server` within a second.
async fn ends_within_a_second(server: &TestApp, tenant: &TestTenant, token: &str, what: &str) {
    let started = std::time::Instant::now();
    let (status, body) =
        poll_until_status(me(server, tenant, token), StatusCode::UNAUTHORIZED, WITHIN).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{what}: still signed in on the other server after {:?}: {body}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_ended_session_stops_working_on_every_server_within_a_second() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme").await;
    let other = app.another_server().await;
    let sign_in = || app.login("acme", &acme.admin_email, ADMIN_PASSWORD);
    // Each token is used on the other server first, so it is remembered
    // there before it ends.
    let remembered = async |token: &str| {
        for _ in 0..3 {
            send(me(&other, &acme, token)(), StatusCode::OK).await;
        }
    };

    // Signing out on one server.
    let token = sign_in().await;
    remembered(&token).await;
    send(
        app.authed(Method::POST, "acme", &token, "/api/v1/auth/logout"),
        StatusCode::NO_CONTENT,
    )
    .await;
    ends_within_a_second(&other, &acme, &token, "logout").await;

    // A password change ends the user's other sessions, not the one that
    // changed it.
    let changer = sign_in().await;
    let bystander = sign_in().await;
    remembered(&changer).await;
    remembered(&bystander).await;
    send(
        app.authed(Method::POST, "acme", &changer, "/api/v1/me/password")
            .json(&json!({"current_password": ADMIN_PASSWORD, "new_password": "another-long-password"})),
        StatusCode::NO_CONTENT,
    )
    .await;
    ends_within_a_second(&other, &acme, &bystander, "password change").await;
    send(me(&other, &acme, &changer)(), StatusCode::OK).await;

    // An operator revoking every session in psql.
    remembered(&changer).await;
    app.sql_execute(&format!(
        "UPDATE tenant_{}.sessions SET revoked_at = now() WHERE revoked_at IS NULL",
        acme.id
    ))
    .await;
    ends_within_a_second(&other, &acme, &changer, "revoked in SQL").await;
}

#[tokio::test]
async fn a_deactivated_or_changed_user_is_seen_on_every_server_within_a_second() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme").await;
    let other = app.another_server().await;
    let (sam, sam_token) = app.add_user(&acme, "sam@acme.com", "sales_rep").await;
    let shown = expect_json(
        me(&other, &acme, &sam_token)().send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["role"], "sales_rep");

    // A new role shows at once on the other server.
    let user_path = format!("/api/v1/users/{sam}");
    send(
        app.authed(Method::PATCH, "acme", &acme.admin_token, &user_path)
            .json(&json!({"role": "viewer"})),
        StatusCode::OK,
    )
    .await;
    let started = std::time::Instant::now();
    loop {
        let shown = expect_json(
            me(&other, &acme, &sam_token)().send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        if shown["role"] == "viewer" {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "the old role after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Deactivated: signed out everywhere.
    send(
        app.authed(Method::PATCH, "acme", &acme.admin_token, &user_path)
            .json(&json!({"active": false})),
        StatusCode::OK,
    )
    .await;
    ends_within_a_second(&other, &acme, &sam_token, "deactivation").await;
}

#[tokio::test]
async fn remembered_sessions_are_forgotten_when_the_listener_is_lost() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme").await;
    let other = app.another_server().await;
    let token = acme.admin_token.clone();
    // Servers trust what they remember only once their listeners (the
    // tenant directory's and the sessions') are connected, which they do
    // in the background after starting: a busy machine can take a while.
    let started = std::time::Instant::now();
    while app
        .sql_i64(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name IN ('atrium session listener', 'atrium tenant listener')",
        )
        .await
        < 4
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "listeners never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        send(me(&other, &acme, &token)(), StatusCode::OK).await;
    }
    // The session is remembered: with its notification switched off, a
    // revocation goes unnoticed (this is what the triggers are for, and
    // what shows the other tests exercise the memory at all).
    let sessions = format!("tenant_{}.sessions", acme.id);
    for statement in [
        format!("ALTER TABLE {sessions} DISABLE TRIGGER sessions_notify_changed"),
        format!("UPDATE {sessions} SET revoked_at = now()"),
        format!("ALTER TABLE {sessions} ENABLE TRIGGER sessions_notify_changed"),
    ] {
        app.sql_execute(&statement).await;
    }
    send(me(&other, &acme, &token)(), StatusCode::OK).await;

    // Losing the listener's connection forgets everything remembered: a
    // notification may have been missed.
    let ended = app
        .sql_i64(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'atrium session listener'
                AND datname = current_database()) t",
        )
        .await;
    assert!(ended >= 2, "one listener per server: {ended}");
    ends_within_a_second(&other, &acme, &token, "listener lost").await;
}
