//! Invitations: admins invite, invitees look up and accept without signing in.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, TestApp, TestTenant, error_fields, send, send_invalid, send_problem,
};

fn accept_body(token: &Value, password: &str) -> Value {
    json!({"token": token, "first_name": "Ivy", "last_name": "Invitee", "password": password})
}

fn lookup(app: &TestApp, subdomain: &str, token: &str) -> reqwest::RequestBuilder {
    app.tenant_request(
        Method::GET,
        subdomain,
        &format!("/api/v1/invitations/lookup?token={token}"),
    )
}

fn accept(
    app: &TestApp,
    subdomain: &str,
    token: &Value,
    password: &str,
) -> reqwest::RequestBuilder {
    app.tenant_request(Method::POST, subdomain, "/api/v1/invitations/accept")
        .json(&accept_body(token, password))
}

async fn pending(app: &TestApp, t: &TestTenant) -> Value {
    send(
        app.authed(
            Method::GET,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/invitations",
        ),
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn an_admin_invites_with_201_a_token_and_an_accept_url_on_the_tenants_host() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let before = chrono::Utc::now();
    let invited = app.invite(&t, "Ivy@Alpha.example", "sales_rep").await;
    assert!(invited["id"].is_i64(), "{invited}");
    assert_eq!(invited["email"], "Ivy@Alpha.example");
    assert_eq!(invited["role"], "sales_rep");
    let token = invited["token"].as_str().expect("token");
    assert!(token.len() >= 32);
    let url = invited["accept_url"].as_str().expect("accept_url");
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    assert!(url.starts_with(&base), "{url} does not start with {base}");
    assert!(url.contains(token), "{url} lacks the token");
    let expires =
        chrono::DateTime::parse_from_rfc3339(invited["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - before).num_hours();
    assert!(
        (167..=168).contains(&days),
        "expires in {days} hours, not 7 days"
    );
    let queued = app
        .sql_i64(&format!(
            "SELECT count(*) FROM public.outbox WHERE kind = 'invitation' AND body LIKE '%{token}%'"
        ))
        .await;
    assert_eq!(queued, 1, "the invitation email is queued");
}

#[tokio::test]
async fn only_admins_may_invite_or_list_or_revoke_invitations() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "pending@alpha.example", "viewer").await;
    for role in ["manager", "sales_rep", "viewer"] {
        let (_, token) = app
            .add_user(&t, &format!("{role}@alpha.example"), role)
            .await;
        let create = app
            .authed(Method::POST, "alpha", &token, "/api/v1/invitations")
            .json(&json!({"email": format!("by-{role}@alpha.example"), "role": "viewer"}));
        send_problem(create, StatusCode::FORBIDDEN, "forbidden").await;
        send_problem(
            app.authed(Method::GET, "alpha", &token, "/api/v1/invitations"),
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        let revoke = app.authed(
            Method::DELETE,
            "alpha",
            &token,
            &format!("/api/v1/invitations/{}", invited["id"]),
        );
        send_problem(revoke, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let create = app
        .tenant_request(Method::POST, "alpha", "/api/v1/invitations")
        .json(&json!({"email": "anon@alpha.example", "role": "viewer"}));
    send_problem(create, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let list = pending(&app, &t).await;
    let emails: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec!["pending@alpha.example"],
        "a refused invitation was made or revoked"
    );
}

#[tokio::test]
async fn inviting_an_email_with_a_pending_invitation_or_an_existing_user_is_409() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.invite(&t, "ivy@alpha.example", "viewer").await;
    app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    for email in [
        "ivy@alpha.example",
        "IVY@alpha.example",
        "rep@alpha.example",
        "Rep@Alpha.Example",
        "admin@alpha.example",
    ] {
        let create = app
            .authed(Method::POST, "alpha", &t.admin_token, "/api/v1/invitations")
            .json(&json!({"email": email, "role": "manager"}));
        send_problem(create, StatusCode::CONFLICT, "conflict").await;
    }
    assert_eq!(pending(&app, &t).await["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_email_or_role_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let create = |body: Value| {
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/invitations")
            .json(&body)
    };
    for email in ["not-an-email", "", "a@b", "two words@alpha.example"] {
        let problem =
            send_invalid(create(json!({"email": email, "role": "viewer"})), "email").await;
        assert_eq!(error_fields(&problem), vec!["email"], "{email}");
    }
    for role in ["owner", "", "ADMIN"] {
        let problem = send_invalid(
            create(json!({"email": "ok@alpha.example", "role": role})),
            "role",
        )
        .await;
        assert_eq!(error_fields(&problem), vec!["role"], "{role}");
    }
    let problem = send_invalid(create(json!({"email": "nope", "role": "owner"})), "email").await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, vec!["email", "role"]);
    send_invalid(create(json!({"email": "ok@alpha.example"})), "role").await;
    assert!(
        pending(&app, &t).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_list_shows_pending_invitations_only_and_never_a_token() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let kept = app.invite(&t, "kept@alpha.example", "viewer").await;
    let accepted = app.invite(&t, "accepted@alpha.example", "viewer").await;
    let revoked = app.invite(&t, "revoked@alpha.example", "viewer").await;
    let expired = app.invite(&t, "expired@alpha.example", "viewer").await;
    send(
        accept(&app, "alpha", &accepted["token"], ADMIN_PASSWORD),
        StatusCode::CREATED,
    )
    .await;
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/invitations/{}", revoked["id"]),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    app.sql_execute(&format!(
        "UPDATE public.invitations SET expires_at = now() - interval '1 second' WHERE id = {}",
        expired["id"]
    ))
    .await;
    let list = pending(&app, &t).await;
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["id"], kept["id"]);
    assert_eq!(rows[0]["email"], "kept@alpha.example");
    assert_eq!(rows[0]["role"], "viewer");
    assert!(rows[0]["expires_at"].is_string());
    let text = list.to_string();
    for invited in [&kept, &accepted, &revoked, &expired] {
        assert!(
            !text.contains(invited["token"].as_str().unwrap()),
            "a token is listed: {text}"
        );
    }
    assert!(rows[0].get("token").is_none(), "{list}");
}

#[tokio::test]
async fn a_revoked_invitation_is_204_and_its_token_stops_working() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "ivy@alpha.example", "viewer").await;
    let path = format!("/api/v1/invitations/{}", invited["id"]);
    let token = invited["token"].as_str().unwrap();
    send(lookup(&app, "alpha", token), StatusCode::OK).await;
    assert_eq!(
        send(
            app.authed(Method::DELETE, "alpha", &t.admin_token, &path),
            StatusCode::NO_CONTENT
        )
        .await,
        Value::Null
    );
    send_problem(
        lookup(&app, "alpha", token),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        accept(&app, "alpha", &invited["token"], ADMIN_PASSWORD),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        app.authed(Method::DELETE, "alpha", &t.admin_token, &path),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for id in ["999", "abc"] {
        let path = format!("/api/v1/invitations/{id}");
        send_problem(
            app.authed(Method::DELETE, "alpha", &t.admin_token, &path),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // The email may be invited again.
    app.invite(&t, "ivy@alpha.example", "viewer").await;
}

#[tokio::test]
async fn lookup_without_signing_in_shows_the_tenant_email_role_and_expiry() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "ivy@alpha.example", "manager").await;
    let preview = send(
        lookup(&app, "alpha", invited["token"].as_str().unwrap()),
        StatusCode::OK,
    )
    .await;
    assert_eq!(preview["tenant_name"], "alpha Inc");
    assert_eq!(preview["email"], "ivy@alpha.example");
    assert_eq!(preview["role"], "manager");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(preview["expires_at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(invited["expires_at"].as_str().unwrap()).unwrap()
    );
    assert!(preview.get("token").is_none(), "{preview}");
    for path in [
        "/api/v1/invitations/lookup?token=unknown".to_owned(),
        "/api/v1/invitations/lookup?token=".to_owned(),
        "/api/v1/invitations/lookup".to_owned(),
    ] {
        send_problem(
            app.tenant_request(Method::GET, "alpha", &path),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn accepting_is_201_and_signs_the_new_user_in_with_the_invited_role_once() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "ivy@alpha.example", "manager").await;
    let accepted = send(
        accept(&app, "alpha", &invited["token"], ADMIN_PASSWORD),
        StatusCode::CREATED,
    )
    .await;
    crate::auth::assert_user_object(&accepted["user"]);
    assert!(accepted["expires_at"].is_string(), "{accepted}");
    let token = accepted["token"].as_str().expect("a session token");
    let me = send(
        app.authed(Method::GET, "alpha", token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["email"], "ivy@alpha.example");
    assert_eq!(me["role"], "manager");
    assert_eq!(me["first_name"], "Ivy");
    assert_eq!(me["last_name"], "Invitee");
    assert_eq!(me["active"], true);
    app.login("alpha", "ivy@alpha.example", ADMIN_PASSWORD)
        .await;
    // Once only.
    send_problem(
        accept(&app, "alpha", &invited["token"], "another good password"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        lookup(&app, "alpha", invited["token"].as_str().unwrap()),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(app.platform_tenant(t.id).await["user_count"], 2);
    send_problem(
        accept(&app, "alpha", &json!("unknown-token"), ADMIN_PASSWORD),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn an_expired_invitation_is_404_for_lookup_and_accept_and_the_email_can_be_invited_again() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "ivy@alpha.example", "viewer").await;
    let expired = app
        .sql_execute(&format!(
            "UPDATE public.invitations SET expires_at = now() - interval '1 second' WHERE id = {}",
            invited["id"]
        ))
        .await;
    assert_eq!(expired, 1);
    send_problem(
        lookup(&app, "alpha", invited["token"].as_str().unwrap()),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        accept(&app, "alpha", &invited["token"], ADMIN_PASSWORD),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let again = app.invite(&t, "ivy@alpha.example", "viewer").await;
    send(
        accept(&app, "alpha", &again["token"], ADMIN_PASSWORD),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn accepting_with_a_password_under_10_bytes_is_422_naming_password_and_keeps_the_invitation()
{
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "ivy@alpha.example", "viewer").await;
    for password in ["short".to_owned(), "123456789".to_owned(), "p".repeat(73)] {
        let problem = send_invalid(
            accept(&app, "alpha", &invited["token"], &password),
            "password",
        )
        .await;
        assert_eq!(error_fields(&problem), vec!["password"]);
    }
    let nameless = app
        .tenant_request(Method::POST, "alpha", "/api/v1/invitations/accept")
        .json(&json!({"token": invited["token"], "first_name": " ", "last_name": "X", "password": ADMIN_PASSWORD}));
    send_invalid(nameless, "first_name").await;
    send(
        lookup(&app, "alpha", invited["token"].as_str().unwrap()),
        StatusCode::OK,
    )
    .await;
    send(
        accept(&app, "alpha", &invited["token"], ADMIN_PASSWORD),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn a_removed_user_can_be_invited_again_and_comes_back_as_the_same_user() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (id, _) = app.add_user(&t, "leaver@alpha.example", "viewer").await;
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{id}"),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    let invited: Value = app
        .authed(Method::POST, "alpha", &t.admin_token, "/api/v1/invitations")
        .json(&json!({"email": "leaver@alpha.example", "role": "manager"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let accepted = accept(&app, "alpha", &invited["token"], ADMIN_PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(
        accepted["user"]["id"].as_i64(),
        Some(id),
        "the same user, history kept"
    );
    assert_eq!(accepted["user"]["role"], "manager", "with the invited role");
    assert_eq!(accepted["user"]["active"], true);
    assert!(accepted["user"]["deleted_at"].is_null());
    app.login("alpha", "leaver@alpha.example", ADMIN_PASSWORD)
        .await;
}

#[tokio::test]
async fn an_invitation_accepted_concurrently_creates_one_user() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let t = app.create_tenant("alpha").await;
    let invited = app.invite(&t, "ivy@alpha.example", "viewer").await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (app, token) = (app.clone(), invited["token"].clone());
        tasks.push(tokio::spawn(async move {
            let response = accept(&app, "alpha", &token, ADMIN_PASSWORD)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }));
    }
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::NOT_FOUND => {}
            other => panic!("a concurrent accept answered {other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    let users = send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/users"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(users["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn another_tenants_invitation_token_is_404_on_accept_and_stays_usable_at_home() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let invited = app.invite(&t, "ivy@alpha.example", "viewer").await;
    send_problem(
        accept(&app, "bravo", &invited["token"], ADMIN_PASSWORD),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send(
        accept(&app, "alpha", &invited["token"], ADMIN_PASSWORD),
        StatusCode::CREATED,
    )
    .await;
}
