//! Signing in and out, the start page, the emailed links, and what a
//! browser is protected by.

use reqwest::{Method, StatusCode};

use crate::driver::Browser;
use crate::helpers::{ADMIN_PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_sees_home_and_signs_out() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());

    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for_heading("Sign in").await;
    browser.link("Forgot your password?").await;
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", "not the password").await;
    browser.press("Sign in").await;
    browser.wait_for_heading("Sign in").await;
    assert!(browser.text().await.contains("Wrong email or password."));
    let kept = browser.field("Email").await.prop("value").await.unwrap();
    assert_eq!(
        kept.as_deref(),
        Some(t.admin_email.as_str()),
        "the email stays typed"
    );

    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser.wait_for_heading("Home").await;
    browser.screenshot("home-1280").await;
    browser.press("Sign out").await;
    browser.wait_for_heading("Sign in").await;
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for_heading("Sign in").await;
    browser.close().await;
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_403_and_pages_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    app.create_tenant_of_tier("alpha", "large").await;
    let page = app
        .tenant_request(Method::GET, "alpha", "/sign-in")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    // A sign-in posted from elsewhere carries no token of this visitor.
    let forged = app
        .tenant_request(Method::POST, "alpha", "/sign-in")
        .form(&[
            ("email", "admin@alpha.example"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("Not allowed"));
}

#[tokio::test]
async fn the_base_host_asks_for_the_organisation_and_sends_people_to_its_sign_in() {
    let app = TestApp::spawn().await;
    let page = app
        .request(Method::GET, "/")
        .header("host", format!("localhost:{}", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(body.contains("Your organisation") && body.contains("Continue"));
    let sent = app
        .request(Method::GET, "/?organisation=Acme")
        .header("host", format!("localhost:{}", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sent.headers()["location"],
        format!("http://acme.localhost:{}/sign-in", app.addr.port()).as_str()
    );
    let unknown = app
        .tenant_request(Method::GET, "nobody", "/sign-in")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("Organisation not found")
    );
}

/// The link of the newest email of `kind` to `to`, as the outbox holds it.
pub(crate) async fn link_in_outbox(app: &TestApp, kind: &str, to: &str) -> String {
    let session = app.db.connection().await.unwrap();
    let body: String = session
        .query_one(
            "SELECT body FROM public.outbox WHERE kind = $1 AND lower(to_email) = lower($2)
             ORDER BY id DESC LIMIT 1",
            &[&kind, &to],
        )
        .await
        .unwrap()
        .get(0);
    body.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_person_joins_from_the_emailed_link_and_lands_signed_in() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    app.invite(&t, "rep@alpha.example", "sales_rep").await;
    let link = link_in_outbox(&app, "invitation", "rep@alpha.example").await;
    let browser = Browser::start(390, 844).await;
    browser.client.goto(&link).await.unwrap();
    let heading = browser
        .client
        .find(fantoccini::Locator::Css("h1"))
        .await
        .unwrap();
    assert!(heading.text().await.unwrap().starts_with("Join "));
    assert!(browser.text().await.contains("rep@alpha.example"));
    browser.fill("First name", "Rita").await;
    browser.fill("Last name", "Rep").await;
    browser.fill("Password", "short").await;
    browser.press("Join").await;
    assert!(
        browser.text().await.contains("Password"),
        "refused, the form is back"
    );
    browser.fill("Password", "a long enough password").await;
    browser.screenshot("join-390").await;
    browser.press("Join").await;
    browser.wait_for_heading("Home").await;
    assert!(browser.text().await.contains("Rita Rep"));
    // The link works once.
    browser.client.goto(&link).await.unwrap();
    browser.wait_for_heading("Invitation not valid").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_password_is_reset_from_the_emailed_link() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.follow("Forgot your password?").await;
    browser.wait_for_heading("Forgot your password?").await;
    browser.fill("Email", &t.admin_email).await;
    browser.press("Send reset link").await;
    browser.wait_for_heading("Forgot your password?").await;
    assert!(browser.text().await.contains("a reset link is on its way"));

    let link = link_in_outbox(&app, "password_reset", &t.admin_email).await;
    browser.client.goto(&link).await.unwrap();
    browser.wait_for_heading("Choose a new password").await;
    browser.fill("New password", "my new passphrase").await;
    browser
        .fill("Repeat new password", "my new passphrase!")
        .await;
    browser.press("Set password").await;
    assert!(
        browser
            .text()
            .await
            .contains("is not the same as the new password")
    );
    browser.fill("New password", "my new passphrase").await;
    browser
        .fill("Repeat new password", "my new passphrase")
        .await;
    browser.press("Set password").await;
    browser.wait_for_heading("Sign in").await;
    assert!(browser.text().await.contains("Your new password is set."));
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", "my new passphrase").await;
    browser.press("Sign in").await;
    browser.wait_for_heading("Home").await;
    // The link is spent.
    browser.client.goto(&link).await.unwrap();
    browser.fill("New password", "another passphrase").await;
    browser
        .fill("Repeat new password", "another passphrase")
        .await;
    browser.press("Set password").await;
    assert!(browser.text().await.contains("Ask for a new one"));
    browser.close().await;
}

#[tokio::test]
async fn a_server_at_capacity_answers_pages_with_a_503_page_and_the_api_with_a_problem() {
    let app = TestApp::spawn_with(atrium_http::ServerSettings {
        max_requests_in_flight: 0,
        ..Default::default()
    })
    .await;
    let page = app
        .tenant_request(Method::GET, "alpha", "/sign-in")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(page.headers()["retry-after"], "1");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers().contains_key("content-security-policy"));
    let body = page.text().await.unwrap();
    assert!(
        body.contains("Busy right now") && body.contains("Request id"),
        "{body}"
    );
    let api = app
        .tenant_request(Method::GET, "alpha", "/api/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        api.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
}
