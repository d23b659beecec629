//! Signing in and out, the current user, and passwords.

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, TestTenant, send, send_problem};

/// The fields API.md gives a user object.
const USER_FIELDS: &[&str] = &[
    "id",
    "email",
    "first_name",
    "last_name",
    "role",
    "permissions",
    "active",
    "email_verified",
    "last_login",
    "created_at",
    "updated_at",
];

/// Asserts a user object: every contract field, and nothing that looks like
/// a password or its hash.
#[track_caller]
pub fn assert_user_object(user: &Value) {
    let object = user
        .as_object()
        .unwrap_or_else(|| panic!("not a user object: {user}"));
    for field in USER_FIELDS {
        assert!(object.contains_key(*field), "{field} missing in {user}");
    }
    for key in object.keys() {
        assert!(!key.contains("password"), "{key} in {user}");
    }
    let text = user.to_string();
    assert!(
        !text.contains("$2b$") && !text.contains("$2a$") && !text.contains("$2y$"),
        "a hash in {text}"
    );
}

fn login_request(
    app: &TestApp,
    subdomain: &str,
    email: &str,
    password: &str,
) -> reqwest::RequestBuilder {
    app.tenant_request(Method::POST, subdomain, "/api/v1/auth/login")
        .json(&json!({"email": email, "password": password}))
}

pub(crate) async fn login_status(
    app: &TestApp,
    t: &TestTenant,
    email: &str,
    password: &str,
) -> StatusCode {
    login_request(app, &t.subdomain, email, password)
        .send()
        .await
        .unwrap()
        .status()
}

pub(crate) async fn me_status(app: &TestApp, t: &TestTenant, token: &str) -> StatusCode {
    app.authed(Method::GET, &t.subdomain, token, "/api/v1/me")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn login_answers_a_token_its_expiry_and_the_user_with_the_email_matched_case_insensitively() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for email in ["admin@alpha.example", "ADMIN@Alpha.Example"] {
        let before = chrono::Utc::now();
        let body = send(
            login_request(&app, &t.subdomain, email, ADMIN_PASSWORD),
            StatusCode::OK,
        )
        .await;
        let token = body["token"].as_str().expect("token");
        assert!(token.len() >= 32, "{token}");
        let expires =
            chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires_at"))
                .unwrap();
        assert!(expires > before + chrono::Duration::hours(1), "{expires}");
        assert_user_object(&body["user"]);
        assert_eq!(body["user"]["email"], "admin@alpha.example");
        assert_eq!(body["user"]["role"], "admin");
        assert!(
            body["user"]["last_login"].is_string(),
            "last_login is set: {body}"
        );
        let me = send(
            app.authed(Method::GET, &t.subdomain, token, "/api/v1/me"),
            StatusCode::OK,
        )
        .await;
        assert_eq!(me["id"], body["user"]["id"]);
    }
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_401() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let wrong_password = send_problem(
        login_request(&app, "alpha", &t.admin_email, "not the password"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let unknown_email = send_problem(
        login_request(&app, "alpha", "nobody@alpha.example", ADMIN_PASSWORD),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(wrong_password["detail"], unknown_email["detail"]);
    assert_eq!(wrong_password, unknown_email, "the bodies differ");
}

#[tokio::test]
async fn a_deactivated_or_deleted_user_cannot_sign_in() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (inactive, _) = app
        .add_user(&t, "inactive@alpha.example", "sales_rep")
        .await;
    let (deleted, _) = app.add_user(&t, "deleted@alpha.example", "sales_rep").await;
    let wrong = send_problem(
        login_request(&app, "alpha", "inactive@alpha.example", "not the password"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{inactive}"),
        )
        .json(&json!({"active": false})),
        StatusCode::OK,
    )
    .await;
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{deleted}"),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    for email in ["inactive@alpha.example", "deleted@alpha.example"] {
        let refused = send_problem(
            login_request(&app, "alpha", email, ADMIN_PASSWORD),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        assert_eq!(
            refused["detail"], wrong["detail"],
            "{email}: the answer tells the account exists"
        );
    }
    // Reactivated, the user signs in again.
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{inactive}"),
        )
        .json(&json!({"active": true})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        login_status(&app, &t, "inactive@alpha.example", ADMIN_PASSWORD).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn after_10_failed_attempts_for_one_email_further_attempts_are_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    app.add_user(&t, "nine@alpha.example", "viewer").await;
    // The same address is a user of another tenant too.
    app.add_user(&b, "admin@alpha.example", "viewer").await;
    // Nine failures do not block.
    for _ in 0..9 {
        assert_eq!(
            login_status(&app, &t, "nine@alpha.example", "wrong password!").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_status(&app, &t, "nine@alpha.example", ADMIN_PASSWORD).await,
        StatusCode::OK
    );
    // Ten failures (in any letter case) do.
    for i in 0..10 {
        let email = if i % 2 == 0 {
            "admin@alpha.example"
        } else {
            "Admin@Alpha.Example"
        };
        assert_eq!(
            login_status(&app, &t, email, "wrong password!").await,
            StatusCode::UNAUTHORIZED,
            "attempt {}",
            i + 1
        );
    }
    for password in [ADMIN_PASSWORD, "wrong password!"] {
        let response = login_request(&app, "alpha", "ADMIN@alpha.example", password)
            .send()
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("Retry-After");
        let seconds: u64 = retry_after
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After: {retry_after}"));
        assert!((1..=15 * 60).contains(&seconds), "Retry-After: {seconds}");
        crate::helpers::expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            .await;
    }
    // Other emails, and the same email in another tenant, are not limited.
    assert_eq!(
        login_status(&app, &t, "nine@alpha.example", ADMIN_PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        login_status(&app, &b, "admin@alpha.example", ADMIN_PASSWORD).await,
        StatusCode::OK
    );
    // The limited user's sessions still work.
    assert_eq!(me_status(&app, &t, &t.admin_token).await, StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_email_is_rate_limited_like_a_known_one() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for _ in 0..10 {
        assert_eq!(
            login_status(&app, &t, "ghost@alpha.example", "wrong password!").await,
            StatusCode::UNAUTHORIZED
        );
    }
    send_problem(
        login_request(&app, "alpha", "ghost@alpha.example", "wrong password!"),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn logout_is_204_and_that_token_stops_working_while_other_sessions_go_on() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let other = app.login("alpha", &t.admin_email, ADMIN_PASSWORD).await;
    let body = send(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/auth/logout"),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(body, Value::Null);
    send_problem(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    send_problem(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/auth/logout"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(me_status(&app, &t, &other).await, StatusCode::OK);
    send_problem(
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/logout"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

/// Seconds since the tenant's newest session was last seen.
async fn seconds_since_seen(app: &TestApp, t: &TestTenant) -> i64 {
    app.sql_i64(&format!(
        "SELECT extract(epoch FROM now() - last_seen_at)::bigint
           FROM tenant_{}.sessions ORDER BY id DESC LIMIT 1",
        t.id
    ))
    .await
}

async fn last_seen_ago(app: &TestApp, t: &TestTenant, seconds: u64) {
    app.sql_execute(&format!(
        "UPDATE tenant_{}.sessions SET last_seen_at = now() - make_interval(secs => {seconds})",
        t.id
    ))
    .await;
}

#[tokio::test]
async fn a_request_moves_the_idle_clock_only_when_it_is_older_than_the_touch_interval() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("clock").await;
    let interval = atrium_services::auth::AuthSettings::default()
        .touch_interval
        .as_secs();
    // Each step signs in afresh: a server remembers a session it has just
    // looked up, its idle clock included, and these steps move the clock
    // behind its back (only time moves it in life).
    let fresh = async || app.login("clock", &t.admin_email, ADMIN_PASSWORD).await;

    // Seen within the interval: left alone, so a busy session does not
    // write on every request.
    let token = fresh().await;
    last_seen_ago(&app, &t, interval / 2).await;
    assert_eq!(me_status(&app, &t, &token).await, StatusCode::OK);
    assert!(seconds_since_seen(&app, &t).await >= (interval / 2) as i64 - 1);

    // Older: a read moves it (its commit need not wait for the disk, but
    // it is committed all the same)...
    let token = fresh().await;
    last_seen_ago(&app, &t, interval * 2).await;
    assert_eq!(me_status(&app, &t, &token).await, StatusCode::OK);
    assert!(seconds_since_seen(&app, &t).await < 60);

    // ...and so does a write, with the write.
    let token = fresh().await;
    last_seen_ago(&app, &t, interval * 2).await;
    let created = app
        .authed(Method::POST, &t.subdomain, &token, "/api/v1/companies")
        .json(&json!({"name": "Clockwork Ltd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(seconds_since_seen(&app, &t).await < 60);

    // Past the idle limit the session is over.
    let idle = atrium_services::auth::AuthSettings::default()
        .session_idle
        .as_secs();
    let token = fresh().await;
    last_seen_ago(&app, &t, idle + 60).await;
    assert_eq!(me_status(&app, &t, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn me_without_a_valid_token_is_401() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    send_problem(
        app.tenant_request(Method::GET, "alpha", "/api/v1/me"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    for authorization in [
        "Bearer garbage".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {}x", t.admin_token),
        format!("Basic {}", t.admin_token),
        t.admin_token.clone(),
    ] {
        let me = app
            .tenant_request(Method::GET, "alpha", "/api/v1/me")
            .header(AUTHORIZATION, &authorization);
        send_problem(me, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let me = send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_user_object(&me);
    assert_eq!(me["email"], t.admin_email);
    assert_eq!(me["active"], true);
}

#[tokio::test]
async fn no_answer_ever_carries_a_password_hash() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "new@alpha.example", "viewer").await;
    let accepted = send(
        app.tenant_request(Method::POST, "alpha", "/api/v1/invitations/accept").json(&json!({
            "token": invited["token"], "first_name": "New", "last_name": "User", "password": ADMIN_PASSWORD
        })),
        StatusCode::CREATED,
    )
    .await;
    assert_user_object(&accepted["user"]);
    let login = send(
        login_request(&app, "alpha", &t.admin_email, ADMIN_PASSWORD),
        StatusCode::OK,
    )
    .await;
    assert_user_object(&login["user"]);
    let me = send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_user_object(&me);
    let list = send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/users"),
        StatusCode::OK,
    )
    .await;
    for user in list["data"].as_array().unwrap() {
        assert_user_object(user);
    }
    let id = accepted["user"]["id"].as_i64().unwrap();
    let one = send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{id}"),
        ),
        StatusCode::OK,
    )
    .await;
    assert_user_object(&one);
    let patched = send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{id}"),
        )
        .json(&json!({"last_name": "Q"})),
        StatusCode::OK,
    )
    .await;
    assert_user_object(&patched);
}
