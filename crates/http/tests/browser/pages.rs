//! Signing in and out, the start page, and what a browser is protected by.

use reqwest::{Method, StatusCode};

use crate::driver::Browser;
use crate::helpers::{ADMIN_PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_sees_home_and_signs_out() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());

    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for_heading("Sign in").await;
    browser.link("Forgot your password?").await;
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", "not the password").await;
    browser.button("Sign in").await.click().await.unwrap();
    browser.wait_for_heading("Sign in").await;
    assert!(browser.text().await.contains("Wrong email or password."));
    let kept = browser.field("Email").await.prop("value").await.unwrap();
    assert_eq!(
        kept.as_deref(),
        Some(t.admin_email.as_str()),
        "the email stays typed"
    );

    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.button("Sign in").await.click().await.unwrap();
    browser.wait_for_heading("Home").await;
    browser.screenshot("home-1280").await;
    browser.button("Sign out").await.click().await.unwrap();
    browser.wait_for_heading("Sign in").await;
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for_heading("Sign in").await;
    browser.close().await;
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_403_and_pages_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    app.create_tenant("alpha").await;
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
