//! Changing and resetting passwords.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, error_fields, send, send_invalid, send_problem};

const NEW_PASSWORD: &str = "a brand new passphrase";

use crate::auth::{login_status, me_status};

#[tokio::test]
async fn changing_the_password_with_a_wrong_current_password_is_422_naming_current_password() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let change = app
        .authed(Method::POST, "alpha", &t.admin_token, "/api/v1/me/password")
        .json(&json!({"current_password": "not my password", "new_password": NEW_PASSWORD}));
    let problem = send_invalid(change, "current_password").await;
    assert_eq!(error_fields(&problem), vec!["current_password"]);
    assert_eq!(
        login_status(&app, &t, &t.admin_email, ADMIN_PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        login_status(&app, &t, &t.admin_email, NEW_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn changing_the_password_to_one_under_10_or_over_72_bytes_is_422_naming_new_password() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for new_password in [
        "short".to_owned(),
        "123456789".to_owned(),
        "p".repeat(73),
        "é".repeat(37),
    ] {
        let change = app
            .authed(Method::POST, "alpha", &t.admin_token, "/api/v1/me/password")
            .json(&json!({"current_password": ADMIN_PASSWORD, "new_password": new_password}));
        send_invalid(change, "new_password").await;
    }
    assert_eq!(
        login_status(&app, &t, &t.admin_email, ADMIN_PASSWORD).await,
        StatusCode::OK
    );
    let change = app
        .tenant_request(Method::POST, "alpha", "/api/v1/me/password")
        .json(&json!({
            "current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD
        }));
    send_problem(change, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn changing_the_password_is_204_and_ends_the_users_other_sessions_but_not_this_one() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let other_session = app.login("alpha", &t.admin_email, ADMIN_PASSWORD).await;
    let (_, someone_else) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let change = app
        .authed(Method::POST, "alpha", &t.admin_token, "/api/v1/me/password")
        .json(&json!({"current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD}));
    assert_eq!(send(change, StatusCode::NO_CONTENT).await, Value::Null);
    assert_eq!(
        login_status(&app, &t, &t.admin_email, ADMIN_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, &t, &t.admin_email, NEW_PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        me_status(&app, &t, &other_session).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_status(&app, &t, &t.admin_token).await, StatusCode::OK);
    assert_eq!(
        me_status(&app, &t, &someone_else).await,
        StatusCode::OK,
        "another user's session ended"
    );
}

async fn outbox_count(app: &TestApp, email: &str) -> i64 {
    app.sql_i64(&format!(
        "SELECT count(*) FROM public.outbox WHERE kind = 'password_reset' AND lower(to_email) = lower('{email}')"
    ))
    .await
}

#[tokio::test]
async fn a_password_reset_is_202_for_known_and_unknown_emails_alike_and_queues_an_email_only_for_a_user()
 {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let mut answers = Vec::new();
    for email in [t.admin_email.as_str(), "nobody@alpha.example"] {
        let response = app
            .tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{email}");
        answers.push(response.text().await.unwrap());
    }
    assert_eq!(
        answers[0], answers[1],
        "the answers tell known from unknown emails"
    );
    assert_eq!(outbox_count(&app, &t.admin_email).await, 1);
    assert_eq!(outbox_count(&app, "nobody@alpha.example").await, 0);
    let token = app.reset_token_from_outbox(&t.admin_email).await;
    assert!(token.len() >= 32, "{token}");
    assert!(!answers[0].contains(&token), "the API answered the token");
    let link = app
        .sql_i64(&format!(
            "SELECT count(*) FROM public.outbox WHERE kind = 'password_reset'
             AND body LIKE '%http://alpha.localhost:{}/reset-password?token={token}%'",
            app.addr.port()
        ))
        .await;
    assert_eq!(link, 1, "the link points at the tenant's host");
}

#[tokio::test]
async fn a_reset_token_sets_a_new_password_once_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let second_session = app.login("alpha", &t.admin_email, ADMIN_PASSWORD).await;
    send(
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
            .json(&json!({"email": "Admin@Alpha.example"})),
        StatusCode::ACCEPTED,
    )
    .await;
    let token = app.reset_token_from_outbox(&t.admin_email).await;
    let confirm = |password: &str| {
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset/confirm")
            .json(&json!({"token": token, "new_password": password}))
    };
    assert_eq!(
        send(confirm(NEW_PASSWORD), StatusCode::NO_CONTENT).await,
        Value::Null
    );
    assert_eq!(
        me_status(&app, &t, &t.admin_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me_status(&app, &t, &second_session).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, &t, &t.admin_email, ADMIN_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, &t, &t.admin_email, NEW_PASSWORD).await,
        StatusCode::OK
    );
    // Used once, the token is refused and the password stays.
    let problem = send_invalid(confirm("yet another passphrase"), "token").await;
    assert_eq!(error_fields(&problem), vec!["token"]);
    assert_eq!(
        login_status(&app, &t, &t.admin_email, NEW_PASSWORD).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unknown_expired_or_other_tenants_reset_token_is_422_naming_token() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let confirm = |subdomain: &str, token: &str| {
        app.tenant_request(
            Method::POST,
            subdomain,
            "/api/v1/auth/password-reset/confirm",
        )
        .json(&json!({"token": token, "new_password": NEW_PASSWORD}))
    };
    for token in ["unknown-token", "", "x"] {
        send_invalid(confirm("alpha", token), "token").await;
    }
    // Another tenant's token means nothing here.
    send(
        app.tenant_request(Method::POST, "bravo", "/api/v1/auth/password-reset")
            .json(&json!({"email": b.admin_email})),
        StatusCode::ACCEPTED,
    )
    .await;
    let bravo_token = app.reset_token_from_outbox(&b.admin_email).await;
    send_invalid(confirm("alpha", &bravo_token), "token").await;
    // An expired token.
    send(
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
            .json(&json!({"email": t.admin_email})),
        StatusCode::ACCEPTED,
    )
    .await;
    let token = app.reset_token_from_outbox(&t.admin_email).await;
    let expired = app
        .sql_execute(&format!(
            "UPDATE tenant_{}.password_reset_tokens SET expires_at = now() - interval '1 second'",
            t.id
        ))
        .await;
    assert_eq!(expired, 1);
    send_invalid(confirm("alpha", &token), "token").await;
    assert_eq!(
        login_status(&app, &t, &t.admin_email, ADMIN_PASSWORD).await,
        StatusCode::OK
    );
    // Bravo's token still works in bravo.
    send(confirm("bravo", &bravo_token), StatusCode::NO_CONTENT).await;
}

#[tokio::test]
async fn a_reset_with_a_short_new_password_is_422_naming_new_password_and_keeps_the_token() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    send(
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
            .json(&json!({"email": t.admin_email})),
        StatusCode::ACCEPTED,
    )
    .await;
    let token = app.reset_token_from_outbox(&t.admin_email).await;
    let confirm = |password: &str| {
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset/confirm")
            .json(&json!({"token": token, "new_password": password}))
    };
    let problem = send_invalid(confirm("short"), "new_password").await;
    let fields: BTreeSet<String> = error_fields(&problem).into_iter().collect();
    assert!(!fields.contains("token"), "{problem}");
    send_invalid(confirm(&"p".repeat(73)), "new_password").await;
    send(confirm(NEW_PASSWORD), StatusCode::NO_CONTENT).await;
    assert_eq!(
        login_status(&app, &t, &t.admin_email, NEW_PASSWORD).await,
        StatusCode::OK
    );
}
