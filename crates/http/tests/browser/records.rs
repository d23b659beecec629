//! Contacts and companies: create, find, edit, delete, import, export,
//! and what a viewer may not do.

use reqwest::{Method, StatusCode};

use crate::driver::Browser;
use crate::helpers::{ADMIN_PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_created_found_edited_deleted_and_brought_back() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    crate::helpers::send(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/custom-fields").json(
            &serde_json::json!({"entity": "contact", "key": "linkedin", "label": "LinkedIn", "type": "text"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
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
    assert!(
        browser.text().await.contains("update by Ada Admin"),
        "the history names who changed it"
    );

    browser.press("Delete").await;
    browser.wait_for_heading("Deleted").await;
    browser.press("Undo").await;
    browser.wait_for_heading("Jonathan Smith").await;
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_sees_no_new_button_and_a_forged_post_is_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
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
async fn contacts_are_imported_from_a_checked_file_and_exported_again() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "first_name,last_name,email,company\nAnn,Lee,ann@lee.example,Initech\nBo,,bo@x.example,\nCy,Ng,not-an-email,\n",
    )
    .unwrap();
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
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
    // The check runs as a job; its page refreshes until it is done.
    browser.wait_for_text("main", "would be created").await;
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
    browser.wait_for_text("main", "The import is done.").await;
    let text = browser.text().await;
    assert!(
        text.contains("1 contact created") && text.contains("2 rows refused"),
        "{text}"
    );
    browser.link("Download the refused rows").await;
    let job = browser.client.current_url().await.unwrap();
    let refused = app
        .tenant_request(Method::GET, "alpha", &format!("{}/refused.csv", job.path()))
        .header("cookie", format!("atrium_session={}", t.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.starts_with("first_name,last_name,email,company,import_problem\n")
            && refused.contains("Bo,,bo@x.example,,line 3: last_name:")
            && refused.contains("Cy,Ng,not-an-email,,line 4: email:"),
        "the refused rows as they were, with why: {refused}"
    );
    // Another organisation's people do not see the job, nor its rows.
    let other = app.create_tenant_of_tier("beta", "large").await;
    let elsewhere = |path: String| {
        app.tenant_request(Method::GET, "beta", &path)
            .header("cookie", format!("atrium_session={}", other.admin_token))
            .send()
    };
    let page = elsewhere(job.path().to_owned()).await.unwrap();
    assert!(page.text().await.unwrap().contains("no longer here"));
    let rows = elsewhere(format!("{}/refused.csv", job.path()))
        .await
        .unwrap();
    assert_eq!(rows.status(), StatusCode::NOT_FOUND);
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
    let t = app.create_tenant_of_tier("alpha", "large").await;
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
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    browser.screenshot("contacts-1280").await;
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
    let t = app.create_tenant_of_tier("alpha", "large").await;
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
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_filtered_by_company_and_by_a_custom_field() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    let post = |path: &'static str, body: serde_json::Value| {
        crate::helpers::send(
            app.authed(Method::POST, "alpha", &t.admin_token, path)
                .json(&body),
            StatusCode::CREATED,
        )
    };
    post(
        "/api/v1/custom-fields",
        serde_json::json!({"entity": "contact", "key": "tier", "label": "Tier", "type": "select", "options": ["gold", "silver"]}),
    )
    .await;
    let acme = post("/api/v1/companies", serde_json::json!({"name": "Acme"})).await;
    post(
        "/api/v1/contacts",
        serde_json::json!({"first_name": "Gold", "last_name": "Acme", "company_id": acme["id"], "custom_fields": {"tier": "gold"}}),
    )
    .await;
    post(
        "/api/v1/contacts",
        serde_json::json!({"first_name": "Silver", "last_name": "Acme", "company_id": acme["id"], "custom_fields": {"tier": "silver"}}),
    )
    .await;
    post(
        "/api/v1/contacts",
        serde_json::json!({"first_name": "Gold", "last_name": "Elsewhere", "custom_fields": {"tier": "gold"}}),
    )
    .await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser
        .client
        .find(fantoccini::Locator::Css("details.filters summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .field("Company")
        .await
        .select_by_label("Acme")
        .await
        .unwrap();
    browser
        .field("Tier")
        .await
        .select_by_value("gold")
        .await
        .unwrap();
    browser.press("Filter").await;
    browser.wait_for_heading("Contacts").await;
    let text = browser.text().await;
    assert!(text.contains("Gold Acme"), "{text}");
    assert!(
        !text.contains("Silver Acme") && !text.contains("Gold Elsewhere"),
        "{text}"
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.as_str().contains("cf.tier=gold"),
        "the address holds the view: {url}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_list_is_saved_as_a_view_for_me_or_for_the_team() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
    for (first, company) in [("Ann", "Initech"), ("Bo", "Globex")] {
        let company = crate::helpers::send(
            app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/companies")
                .json(&serde_json::json!({"name": company})),
            StatusCode::CREATED,
        )
        .await;
        crate::helpers::send(
            app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/contacts")
                .json(&serde_json::json!({"first_name": first, "last_name": "Lee", "company_id": company["id"]})),
            StatusCode::CREATED,
        )
        .await;
    }
    let (_, rep_token) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    browser
        .client
        .find(fantoccini::Locator::Css("details.filters summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .field("Company")
        .await
        .select_by_label("Initech")
        .await
        .unwrap();
    browser
        .field("Sort by")
        .await
        .select_by_label("Last name A–Z")
        .await
        .unwrap();
    browser.press("Filter").await;
    assert!(!browser.text().await.contains("Bo Lee"));
    browser
        .client
        .find(fantoccini::Locator::Css("details.save-view summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.fill("View name", "Initech people").await;
    browser
        .field("Share with the team")
        .await
        .click()
        .await
        .unwrap();
    browser.press("Save view").await;
    browser
        .client
        .find(fantoccini::Locator::Css("details.save-view summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.fill("View name", "Mine only").await;
    browser.press("Save view").await;

    // The view is an address: opened from the list, it filters again.
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    assert!(browser.text().await.contains("Bo Lee"));
    browser.follow("Initech people").await;
    let text = browser.text().await;
    assert!(
        text.contains("Ann Lee") && !text.contains("Bo Lee"),
        "{text}"
    );
    browser.screenshot("contacts-view-1280").await;

    // The team sees the shared view, not the private one.
    let as_rep = app
        .tenant_request(Method::GET, "alpha", "/contacts")
        .header("cookie", format!("atrium_session={rep_token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(as_rep.contains("Initech people") && !as_rep.contains("Mine only"));

    // A name taken on this page is said so; a nameless view is refused.
    browser
        .client
        .find(fantoccini::Locator::Css("details.save-view summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.fill("View name", "initech PEOPLE").await;
    browser.press("Save view").await;
    assert!(
        browser
            .text()
            .await
            .contains("you have a view of this page with this name")
    );
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    browser
        .client
        .execute(
            "document.getElementById('view-name').removeAttribute('required');",
            vec![],
        )
        .await
        .unwrap();
    browser
        .client
        .find(fantoccini::Locator::Css("details.save-view summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.press("Save view").await;
    let text = browser.text().await;
    assert!(text.contains("is required"), "{text}");

    // Deleted, it is gone for everyone.
    browser
        .client
        .goto(&format!("{base}/contacts"))
        .await
        .unwrap();
    browser.wait_for_heading("Contacts").await;
    browser.press("×").await;
    assert!(!browser.text().await.contains("Initech people"));
    browser.close().await;
}
