//! Every main page, checked by axe-core (run in the page, as a browser
//! extension would) for WCAG 2.1 A and AA problems, and at 390 px wide for
//! a page wider than the phone.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::driver::Browser;
use crate::helpers::{ADMIN_PASSWORD, TestApp, send};

/// axe-core 4.14.1 (MPL-2.0, Deque Systems), from the npm registry.
const AXE: &str = include_str!("axe.min.js");

/// A tenant with one of each record, and the main pages' paths.
async fn tenant_with_records(app: &TestApp) -> (crate::helpers::TestTenant, Vec<String>) {
    let t = app.create_tenant_of_tier("alpha", "large").await;
    let post = |path: &'static str, body: Value| {
        send(
            app.authed(Method::POST, "alpha", &t.admin_token, path)
                .json(&body),
            StatusCode::CREATED,
        )
    };
    let company = post(
        "/api/v1/companies",
        json!({"name": "Initech", "industry": "Software"}),
    )
    .await;
    let contact = post(
        "/api/v1/contacts",
        json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@initech.example", "company_id": company["id"]}),
    )
    .await;
    let deal = post(
        "/api/v1/deals",
        json!({"title": "Renewal", "stage": "proposal", "value": "1200.00", "company_id": company["id"]}),
    )
    .await;
    post(
        "/api/v1/activities",
        json!({"kind": "call", "subject": "Call Ann", "contact_id": contact["id"], "deal_id": deal["id"],
               "due_at": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
    let pages = [
        "/".to_owned(),
        "/contacts".to_owned(),
        format!("/contacts/{}", contact["id"]),
        "/contacts/new".to_owned(),
        "/contacts/import".to_owned(),
        "/companies".to_owned(),
        format!("/companies/{}", company["id"]),
        "/deals".to_owned(),
        "/deals?view=list".to_owned(),
        format!("/deals/{}", deal["id"]),
        format!("/deals/{}/edit", deal["id"]),
        "/activities".to_owned(),
        "/settings/users".to_owned(),
        "/settings/pipeline".to_owned(),
        "/settings/custom-fields".to_owned(),
        "/settings/profile".to_owned(),
    ]
    .into();
    (t, pages)
}

/// axe's serious and critical findings on the page, as lines to read.
async fn serious_problems(browser: &Browser) -> Vec<String> {
    let script = format!(
        "{AXE}\nreturn axe.run(document, {{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}}})\
         .then(r => r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')\
         .map(v => v.id + ': ' + v.help + ' — ' + v.nodes.map(n => n.target.join(' ')).join(', ')));"
    );
    let found = browser.client.execute(&script, vec![]).await.unwrap();
    serde_json::from_value(found).unwrap()
}

/// The checker finds what it should: an input without a label and grey
/// on grey text, put into a real page.
async fn the_checker_catches_a_planted_problem(browser: &Browser) {
    browser
        .client
        .execute(
            "const main = document.querySelector('main');
             main.insertAdjacentHTML('beforeend', '<input id=\"planted\" type=\"text\"><p id=\"faint\">faint</p>');
             // Set through the CSSOM: the page's policy ignores style attributes.
             const faint = document.getElementById('faint');
             faint.style.color = '#bbb';
             faint.style.background = '#fff';",
            vec![],
        )
        .await
        .unwrap();
    let found = serious_problems(browser).await.join("\n");
    assert!(
        found.contains("label") && found.contains("color-contrast"),
        "axe did not see the planted problems: {found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_pages_have_no_serious_accessibility_problems() {
    let app = TestApp::spawn().await;
    let (t, pages) = tenant_with_records(&app).await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    let mut problems = Vec::new();
    for path in ["/sign-in", "/forgot-password"] {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        for p in serious_problems(&browser).await {
            problems.push(format!("{path}: {p}"));
        }
    }
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    the_checker_catches_a_planted_problem(&browser).await;
    for path in &pages {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        for p in serious_problems(&browser).await {
            problems.push(format!("{path}: {p}"));
        }
    }
    browser.close().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_pages_fit_a_phone_without_scrolling_sideways() {
    let app = TestApp::spawn().await;
    let (t, pages) = tenant_with_records(&app).await;
    let browser = Browser::start(390, 844).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    let mut wide = Vec::new();
    for path in &pages {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        let widths = browser
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (page, window) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
        if page > window {
            wide.push(format!("{path}: {page} px wide in a {window} px window"));
        }
    }
    for (path, name) in [("/contacts", "contacts-390"), ("/deals", "pipeline-390")] {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        browser.screenshot(name).await;
    }
    browser.close().await;
    assert!(wide.is_empty(), "{}", wide.join("\n"));
}
