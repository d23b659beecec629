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

/// The link of the newest email of `kind` to `to`, as the outbox holds it.
async fn link_in_outbox(app: &TestApp, kind: &str, to: &str) -> String {
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
    let t = app.create_tenant("alpha").await;
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
    let t = app.create_tenant("alpha").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_created_found_edited_deleted_and_brought_back() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    crate::helpers::send(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/custom-fields").json(
            &serde_json::json!({"entity": "contact", "key": "linkedin", "label": "LinkedIn", "type": "text"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    browser.follow("New contact").await;
    browser.wait_for_heading("New contact").await;
    browser.fill("First name", "Jonathan").await;
    browser.fill("Email", "not an email").await;
    browser.fill("LinkedIn", "in/jon").await;
    browser.press("Save").await;
    assert!(
        browser
            .text()
            .await
            .contains("Some fields need another look.")
    );
    let kept = browser
        .field("First name")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Jonathan"), "the form stays as typed");
    browser.fill("Last name", "Smith").await;
    browser.fill("Email", "jon@smith.example").await;
    browser.press("Save").await;
    browser.wait_for_heading("Jonathan Smith").await;
    assert!(browser.text().await.contains("in/jon"));
    browser.screenshot("contact-1280").await;

    browser
        .client
        .goto(&format!("{base}/contacts?q=jnoathan"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    assert!(
        browser.text().await.contains("Jonathan Smith"),
        "a typo still finds him"
    );

    browser.follow("Jonathan Smith").await;
    browser.follow("Edit").await;
    browser.fill("Phone", "+1 555 0100").await;
    browser.press("Save").await;
    browser.wait_for_heading("Jonathan Smith").await;
    assert!(browser.text().await.contains("+1 555 0100"));
    assert!(browser.text().await.contains("History"));

    browser.press("Delete").await;
    browser.wait_for_heading("Deleted").await;
    browser.press("Undo").await;
    browser.wait_for_heading("Jonathan Smith").await;
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_sees_no_new_button_and_a_forged_post_is_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (_, viewer_token) = app.add_user(&t, "viewer@alpha.example", "viewer").await;
    let cookie = format!("atrium_session={viewer_token}");
    let page = app
        .tenant_request(Method::GET, "alpha", "/contacts")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(body.contains("Contacts") && !body.contains("New contact"));
    // The token a page would carry, so only the permission can refuse it.
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let forged = app
        .tenant_request(Method::POST, "alpha", "/contacts/new")
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("first_name", "Eve"),
            ("last_name", "Forger"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let without_token = app
        .tenant_request(Method::POST, "alpha", "/sign-out")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(without_token.status(), StatusCode::FORBIDDEN);
    // Another tenant's record is a page that is not there.
    let other = app
        .tenant_request(Method::GET, "alpha", "/contacts/999999")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert!(other.text().await.unwrap().contains("Page not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_moves_on_the_board_and_on_its_page_and_the_figures_follow() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let deal = crate::helpers::send(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/deals")
            .json(
                &serde_json::json!({"title": "Big renewal", "stage": "lead", "value": "1000.00"}),
            ),
        StatusCode::CREATED,
    )
    .await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser.client.goto(&format!("{base}/deals")).await.unwrap();
    browser.wait_for_heading("Pipeline").await;
    browser.link("New deal").await;
    browser.link("List").await;
    assert!(browser.text().await.contains("1 deal · 1000.00"));
    browser
        .field("Move to stage")
        .await
        .select_by_value("won")
        .await
        .unwrap();
    browser.screenshot("pipeline-1280").await;
    browser.press("Move").await;
    browser.wait_for_heading("Pipeline").await;
    let text = browser.text().await;
    assert!(
        text.contains("won\n1 deal · 1000.00 · weighted 1000.00"),
        "the won column counts the deal at full probability: {text}"
    );

    browser
        .client
        .goto(&format!("{base}/deals/{}", deal["id"]))
        .await
        .unwrap();
    browser.wait_for_heading("Big renewal").await;
    browser
        .field("Stage")
        .await
        .select_by_value("lead")
        .await
        .unwrap();
    browser.press("Move").await;
    browser.wait_for_heading("Big renewal").await;
    let moved = crate::helpers::send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/deals/{}", deal["id"]),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["stage"], "lead");
    assert!(browser.text().await.contains("History"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_overdue_activity_is_marked_done_from_the_activities_page() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    for (subject, due) in [
        ("Call Ann back", Some(yesterday)),
        ("Write the proposal", None),
    ] {
        crate::helpers::send(
            app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/activities")
                .json(&serde_json::json!({"kind": "call", "subject": subject, "due_at": due})),
            StatusCode::CREATED,
        )
        .await;
    }
    let browser = Browser::start(390, 844).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser
        .client
        .goto(&format!("{base}/activities"))
        .await
        .unwrap();
    browser.wait_for_heading("Activities").await;
    let text = browser.text().await;
    let (overdue, rest) = text.split_once("Today").unwrap();
    assert!(overdue.contains("Call Ann back"), "{text}");
    assert!(
        rest.contains("Write the proposal"),
        "no due date is upcoming: {text}"
    );
    browser.screenshot("activities-390").await;
    browser.press("Done").await;
    browser.wait_for_heading("Activities").await;
    assert!(!browser.text().await.contains("Call Ann back"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_invites_adds_a_stage_and_a_field_and_changes_the_password() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;

    browser.follow("Settings").await;
    browser.wait_for_heading("Profile").await;
    browser.follow("Users").await;
    browser.wait_for_heading("Users").await;
    browser.fill("Email", "newbie@alpha.example").await;
    browser
        .field("Role")
        .await
        .select_by_value("manager")
        .await
        .unwrap();
    browser.press("Invite").await;
    assert!(browser.text().await.contains("newbie@alpha.example"));
    browser.press("Revoke").await;
    assert!(!browser.text().await.contains("newbie@alpha.example"));

    browser.follow("Pipeline").await;
    browser.wait_for_heading("Pipeline stages").await;
    browser.fill("Stage name", "Demo booked").await;
    browser.fill("Probability", "30").await;
    browser.press("Add stage").await;
    assert!(browser.text().await.contains("Saved."));
    browser.fill("Stage name", "Demo booked").await;
    browser.fill("Probability", "30").await;
    browser.press("Add stage").await;
    let text = browser.text().await;
    assert!(
        text.contains("a stage with this name exists"),
        "a taken name is said so: {text}"
    );

    browser.follow("Custom fields").await;
    browser.wait_for_heading("Custom fields").await;
    browser
        .field("Entity")
        .await
        .select_by_value("deal")
        .await
        .unwrap();
    browser.fill("Key", "region").await;
    browser.fill("Label", "Region").await;
    browser
        .field("Type")
        .await
        .select_by_value("select")
        .await
        .unwrap();
    browser.fill("Options", "EMEA, Americas").await;
    browser.press("Add field").await;
    assert!(browser.text().await.contains("Region"));
    browser
        .client
        .goto(&format!("{base}/deals/new"))
        .await
        .unwrap();
    browser.wait_for_heading("New deal").await;
    browser
        .field("Region")
        .await
        .select_by_value("EMEA")
        .await
        .unwrap();
    let stage = browser.field("Stage").await.html(false).await.unwrap();
    assert!(
        stage.contains("Demo booked"),
        "the new stage is a choice: {stage}"
    );

    browser
        .client
        .goto(&format!("{base}/settings/profile"))
        .await
        .unwrap();
    browser.fill("Current password", ADMIN_PASSWORD).await;
    browser.fill("New password", "a different passphrase").await;
    browser.press("Change password").await;
    assert!(browser.text().await.contains("Saved."));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_imported_from_a_checked_file_and_exported_again() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "first_name,last_name,email,company\nAnn,Lee,ann@lee.example,Initech\nBo,,bo@x.example,\nCy,Ng,not-an-email,\n",
    )
    .unwrap();
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.follow("Import").await;
    browser.wait_for_heading("Import contacts").await;
    browser
        .field("CSV file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    browser.press("Check file").await;
    let text = browser.text().await;
    assert!(text.contains("1 contact would be created"), "{text}");
    assert!(text.contains("2 rows would be refused"), "{text}");
    assert!(
        text.contains("last_name"),
        "each refusal names its field: {text}"
    );
    let none = crate::helpers::send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/contacts"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        none["data"].as_array().unwrap().len(),
        0,
        "a check writes nothing"
    );
    browser.press("Import").await;
    assert!(browser.text().await.contains("The import is done."));
    let after = crate::helpers::send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/contacts"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["data"].as_array().unwrap().len(), 1);
    browser.close().await;

    let exported = app
        .tenant_request(Method::GET, "alpha", "/contacts/export")
        .header("cookie", format!("atrium_session={}", t.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(exported.status(), StatusCode::OK);
    let csv = exported.text().await.unwrap();
    assert!(
        csv.starts_with("id,first_name,last_name") && csv.contains("ann@lee.example"),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_found_as_you_type() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for (first, last) in [("John", "Smith"), ("Maria", "Garcia"), ("Joan", "Baker")] {
        crate::helpers::send(
            app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/contacts")
                .json(&serde_json::json!({"first_name": first, "last_name": last})),
            StatusCode::CREATED,
        )
        .await;
    }
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    // Typed, not submitted: the list follows each keystroke.
    browser
        .field("Search contacts")
        .await
        .send_keys("mar")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = browser.text().await;
        if text.contains("Maria Garcia") && !text.contains("John Smith") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the list never narrowed: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.as_str().ends_with("/contacts?q=mar"),
        "the address keeps the query: {url}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_page_lists_its_people_and_a_contact_page_logs_a_call() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let post = |path: &'static str, body: serde_json::Value| {
        crate::helpers::send(
            app.authed(Method::POST, "alpha", &t.admin_token, path)
                .json(&body),
            StatusCode::CREATED,
        )
    };
    let parent = post(
        "/api/v1/companies",
        serde_json::json!({"name": "Initech Group"}),
    )
    .await;
    let company = post(
        "/api/v1/companies",
        serde_json::json!({"name": "Initech", "parent_company_id": parent["id"]}),
    )
    .await;
    let contact = post(
        "/api/v1/contacts",
        serde_json::json!({"first_name": "Peter", "last_name": "Gibbons", "company_id": company["id"]}),
    )
    .await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser
        .client
        .goto(&format!("{base}/sign-in"))
        .await
        .unwrap();
    browser.fill("Email", &t.admin_email).await;
    browser.fill("Password", ADMIN_PASSWORD).await;
    browser.press("Sign in").await;
    browser
        .client
        .goto(&format!("{base}/companies/{}", parent["id"]))
        .await
        .unwrap();
    browser.wait_for_heading("Initech Group").await;
    browser.follow("Initech").await;
    browser.wait_for_heading("Initech").await;
    assert!(
        browser.text().await.contains("Initech Group"),
        "its parent is named"
    );
    browser.follow("Peter Gibbons").await;
    browser.wait_for_heading("Peter Gibbons").await;
    browser
        .fill("Subject", "Called about the TPS reports")
        .await;
    browser.press("Log activity").await;
    browser.wait_for_heading("Peter Gibbons").await;
    assert!(
        browser
            .text()
            .await
            .contains("Called about the TPS reports")
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.as_str()
            .ends_with(&format!("/contacts/{}", contact["id"]))
    );
    browser.close().await;
}
