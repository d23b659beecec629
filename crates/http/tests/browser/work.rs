//! The pipeline board, my activities, and the settings.

use reqwest::{Method, StatusCode};

use crate::driver::Browser;
use crate::helpers::{ADMIN_PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_moves_on_the_board_and_on_its_page_and_the_figures_follow() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
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
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    browser.client.goto(&format!("{base}/deals")).await.unwrap();
    browser.wait_for_heading("Pipeline").await;
    browser.link("New deal").await;
    browser.link("List").await;
    let text = browser.text().await;
    assert!(text.contains("1 deal · 1000.00"), "{text}");
    assert!(text.contains("No next step") && text.contains("0 days in stage"));
    browser.screenshot("pipeline-1280").await;

    // Dragged onto "won": the board comes back with the server's figures
    // and the live region says so.
    browser
        .client
        .execute(
            r#"const [id, stage] = arguments;
               const data = new DataTransfer();
               const card = document.querySelector(`[data-deal-card="${id}"]`);
               const column = document.querySelector(`[data-stage-column="${stage}"]`);
               card.dispatchEvent(new DragEvent("dragstart", {dataTransfer: data, bubbles: true}));
               column.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
               column.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));"#,
            vec![deal["id"].clone(), "won".into()],
        )
        .await
        .unwrap();
    browser
        .wait_for_text(
            "#board-status",
            "Moved Big renewal to won. won: 1 deal · 1000.00 · weighted 1000.00.",
        )
        .await;
    // From the keyboard: Alt+← on the card moves it one stage back.
    browser
        .link("Big renewal")
        .await
        .send_keys("\u{E00A}\u{E012}\u{E000}")
        .await
        .unwrap();
    browser
        .wait_for_text("#board-status", "Moved Big renewal to negotiation.")
        .await;
    let text = browser.text().await;
    assert!(
        text.contains("negotiation\n1 deal · 1000.00 · weighted 750.00"),
        "the deal counts at the stage's probability: {text}"
    );
    let history = crate::helpers::send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/audit?entity=deal&entity_id={}", deal["id"]),
        ),
        StatusCode::OK,
    )
    .await;
    assert!(
        history.to_string().contains("negotiation"),
        "the history records the move: {history}"
    );

    // An overdue call makes the card say so, and the filter finds it.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    crate::helpers::send(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/activities")
            .json(&serde_json::json!({"kind": "call", "subject": "Chase", "deal_id": deal["id"], "due_at": yesterday})),
        StatusCode::CREATED,
    )
    .await;
    browser
        .client
        .goto(&format!("{base}/deals?next_step=overdue"))
        .await
        .unwrap();
    browser.wait_for_heading("Pipeline").await;
    assert!(browser.text().await.contains("Next step overdue"));
    browser
        .client
        .goto(&format!("{base}/deals?next_step=missing"))
        .await
        .unwrap();
    browser.wait_for_heading("Pipeline").await;
    assert!(!browser.text().await.contains("Big renewal"));
    browser
        .client
        .goto(&format!("{base}/deals?next_step=soon"))
        .await
        .unwrap();
    let text = browser.text().await;
    assert!(
        text.contains("must be one of overdue, today, planned, missing"),
        "a filter that is not one says which are: {text}"
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

    // The deal's people, with their part in it.
    crate::helpers::send(
        app.authed(Method::POST, "alpha", &t.admin_token, "/api/v1/contacts")
            .json(&serde_json::json!({"first_name": "Bill", "last_name": "Lumbergh"})),
        StatusCode::CREATED,
    )
    .await;
    browser
        .client
        .goto(&format!("{base}/deals/{}", deal["id"]))
        .await
        .unwrap();
    browser
        .field("Contact")
        .await
        .select_by_label("Bill Lumbergh")
        .await
        .unwrap();
    browser.fill("Role", "decision maker").await;
    browser.press("Add contact").await;
    assert!(
        browser
            .text()
            .await
            .contains("Bill Lumbergh (decision maker)")
    );
    browser.press("Remove").await;
    assert!(!browser.text().await.contains("(decision maker)"));
    assert!(browser.text().await.contains("History"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_overdue_activity_is_marked_done_from_the_activities_page() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant_of_tier("alpha", "large").await;
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
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;
    let home = browser.text().await;
    let (due, recent) = home.split_once("Recently changed").unwrap();
    assert!(due.contains("Call Ann back"), "{home}");
    assert!(
        recent.contains("Write the proposal (activity, created"),
        "Home lists the records changed lately: {home}"
    );
    browser.screenshot("home-390").await;
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
    let t = app.create_tenant_of_tier("alpha", "large").await;
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://alpha.localhost:{}", app.addr.port());
    browser.sign_in(&base, &t.admin_email, ADMIN_PASSWORD).await;

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
