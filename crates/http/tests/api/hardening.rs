use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, send};

#[tokio::test]
async fn parallel_guesses_cannot_slip_past_the_login_limit() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let t = app.create_tenant("alpha").await;
    let mut guesses = Vec::new();
    for i in 0..30 {
        let (app, email) = (app.clone(), t.admin_email.clone());
        guesses.push(tokio::spawn(async move {
            app.tenant_request(Method::POST, "alpha", "/api/v1/auth/login")
                .json(&json!({"email": email, "password": format!("wrong-guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut unauthorized = 0;
    let mut limited = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(unauthorized, 10, "exactly the limit was tried");
    assert_eq!(limited, 20);
}

#[tokio::test]
async fn a_tenant_suspended_by_hand_in_psql_is_refused_within_a_second() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    app.db
        .session()
        .await
        .unwrap()
        .batch_execute("UPDATE public.tenants SET status = 'suspended' WHERE subdomain = 'alpha'")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status = app
            .authed(Method::GET, "alpha", &t.admin_token, "/api/v1/me")
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3), // slack for a loaded CI machine
            "still served after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn using_one_reset_token_ends_the_others() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for _ in 0..2 {
        send(
            app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset")
                .json(&json!({"email": t.admin_email})),
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let session = app.db.session().await.unwrap();
    let bodies: Vec<String> = session
        .query(
            "SELECT body FROM public.outbox WHERE kind = 'password_reset' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let token = |body: &str| {
        body.split("token=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (token(&bodies[0]), token(&bodies[1]));
    let confirm = |token: &str| {
        app.tenant_request(Method::POST, "alpha", "/api/v1/auth/password-reset/confirm")
            .json(&json!({"token": token, "new_password": "a brand new password"}))
    };
    send(confirm(&second), StatusCode::NO_CONTENT).await;
    send(confirm(&first), StatusCode::UNPROCESSABLE_ENTITY).await;
}
