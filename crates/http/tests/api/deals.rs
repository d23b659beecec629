use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, send, send_invalid, send_problem};

const PATH: &str = "/api/v1/deals";

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

#[tokio::test]
async fn deals_follow_their_stage_for_probability_and_close_date() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let post = |body: Value| app.authed(Method::POST, "alpha", &token, PATH).json(&body);
    let deal = send(
        post(json!({"title": "Big one", "stage": "lead", "value": "12500"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            deal["probability"].as_str(),
            deal["value"].as_str(),
            deal["owner_id"].as_i64()
        ),
        (Some("10.00"), Some("12500.00"), Some(1))
    );
    assert!(deal["actual_close_date"].is_null());
    let one = format!("{PATH}/{}", deal["id"]);
    let patch = |body: Value| app.authed(Method::PATCH, "alpha", &token, &one).json(&body);
    let moved = send(patch(json!({"stage": "negotiation"})), StatusCode::OK).await;
    assert_eq!(moved["probability"], "75.00", "follows the new stage");
    let given = send(
        patch(json!({"stage": "proposal", "probability": 33})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(given["probability"], "33.00", "unless given");
    let won = send(patch(json!({"stage": "won"})), StatusCode::OK).await;
    assert_eq!(
        (
            won["actual_close_date"].as_str(),
            won["probability"].as_str()
        ),
        (Some(today().as_str()), Some("100.00"))
    );
    send(
        patch(json!({"actual_close_date": "2020-01-02"})),
        StatusCode::OK,
    )
    .await;
    let lost = send(patch(json!({"stage": "lost"})), StatusCode::OK).await;
    assert_eq!(
        lost["actual_close_date"], "2020-01-02",
        "an existing close date stays"
    );
    let born_closed = send(
        post(json!({"title": "Done deal", "stage": "won"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        born_closed["actual_close_date"].as_str(),
        Some(today().as_str())
    );
}

#[tokio::test]
async fn bad_deal_input_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let post = |body: Value| {
        app.authed(Method::POST, "alpha", &t.admin_token, PATH)
            .json(&body)
    };
    send_invalid(post(json!({"stage": "lead"})), "title").await;
    send_invalid(post(json!({"title": "X"})), "stage").await;
    send_invalid(post(json!({"title": "X", "stage": "maybe"})), "stage").await;
    send_invalid(
        post(json!({"title": "X", "stage": "lead", "probability": 101})),
        "probability",
    )
    .await;
    send_invalid(
        post(json!({"title": "X", "stage": "lead", "value": "1.234"})),
        "value",
    )
    .await;
    send_invalid(
        post(json!({"title": "X", "stage": "lead", "expected_close_date": "2024-13-01"})),
        "expected_close_date",
    )
    .await;
    send_invalid(
        post(json!({"title": "X", "stage": "lead", "expected_close_date": "tomorrow"})),
        "expected_close_date",
    )
    .await;
    send_invalid(
        post(json!({"title": "X", "stage": "lead", "owner_id": 999})),
        "owner_id",
    )
    .await;
    send_invalid(
        post(json!({"title": "X", "stage": "lead", "primary_contact_id": 999})),
        "primary_contact_id",
    )
    .await;
    let deal = send(
        post(json!({"title": "X", "stage": "lead"})),
        StatusCode::CREATED,
    )
    .await;
    send_invalid(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            &format!("{PATH}/{}", deal["id"]),
        )
        .json(&json!({"stage": "nowhere"})),
        "stage",
    )
    .await;
}

#[tokio::test]
async fn the_pipeline_summary_counts_totals_and_weights_per_stage() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let (rep_id, rep) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let post =
        |token: &str, body: Value| app.authed(Method::POST, "alpha", token, PATH).json(&body);
    send(post(&token, json!({"title": "A", "stage": "lead", "value": "100.01", "expected_close_date": "2030-01-10"})), StatusCode::CREATED).await;
    send(post(&token, json!({"title": "B", "stage": "lead", "value": "100.01", "expected_close_date": "2030-02-10"})), StatusCode::CREATED).await;
    send(
        post(
            &rep,
            json!({"title": "C", "stage": "proposal", "value": 1000, "probability": 33.33}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let gone = send(
        post(
            &token,
            json!({"title": "D", "stage": "proposal", "value": 5}),
        ),
        StatusCode::CREATED,
    )
    .await;
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &token,
            &format!("{PATH}/{}", gone["id"]),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    let summary = |query: &str| {
        app.authed(
            Method::GET,
            "alpha",
            &token,
            &format!("/api/v1/pipeline/summary{query}"),
        )
    };
    let all = send(summary(""), StatusCode::OK).await;
    let rows = all["data"].as_array().unwrap();
    let stages: Vec<&str> = rows.iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "lead",
            "qualified",
            "proposal",
            "negotiation",
            "won",
            "lost"
        ]
    );
    assert_eq!(
        rows[0],
        json!({"stage": "lead", "count": 2, "total_value": "200.02", "weighted_value": "20.00"})
    );
    assert_eq!(
        rows[1],
        json!({"stage": "qualified", "count": 0, "total_value": "0.00", "weighted_value": "0.00"})
    );
    assert_eq!(
        rows[2],
        json!({"stage": "proposal", "count": 1, "total_value": "1000.00", "weighted_value": "333.30"})
    );
    let mine = send(summary(&format!("?owner_id={rep_id}")), StatusCode::OK).await;
    assert_eq!(mine["data"][0]["count"], 0);
    assert_eq!(mine["data"][2]["count"], 1);
    let window = send(
        summary("?expected_close_from=2030-01-01&expected_close_to=2030-01-31"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(window["data"][0]["count"], 1);
    send_invalid(summary("?expected_close_from=soon"), "expected_close_from").await;
    send_invalid(summary("?owner_id=me"), "owner_id").await;
}

#[tokio::test]
async fn deal_contacts_are_linked_relabelled_and_unlinked() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let deal = send(
        app.authed(Method::POST, "alpha", &token, PATH)
            .json(&json!({"title": "D", "stage": "lead"})),
        StatusCode::CREATED,
    )
    .await;
    let contact = send(
        app.authed(Method::POST, "alpha", &token, "/api/v1/contacts")
            .json(&json!({"first_name": "Ann", "last_name": "Lee"})),
        StatusCode::CREATED,
    )
    .await;
    let link = format!("{PATH}/{}/contacts/{}", deal["id"], contact["id"]);
    let linked = send(
        app.authed(Method::PUT, "alpha", &token, &link)
            .json(&json!({"role": "influencer"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            linked["role"].as_str(),
            linked["contact"]["first_name"].as_str()
        ),
        (Some("influencer"), Some("Ann"))
    );
    send(
        app.authed(Method::PUT, "alpha", &token, &link)
            .json(&json!({"role": "decision_maker"})),
        StatusCode::OK,
    )
    .await;
    let list = send(
        app.authed(
            Method::GET,
            "alpha",
            &token,
            &format!("{PATH}/{}/contacts", deal["id"]),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["role"], "decision_maker");
    send(
        app.authed(Method::DELETE, "alpha", &token, &link),
        StatusCode::NO_CONTENT,
    )
    .await;
    send_problem(
        app.authed(Method::DELETE, "alpha", &token, &link),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        app.authed(
            Method::PUT,
            "alpha",
            &token,
            &format!("{PATH}/{}/contacts/999", deal["id"]),
        )
        .json(&json!({"role": "x"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_sales_rep_may_change_deals_they_own_even_if_someone_else_created_them() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (rep_id, rep) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let theirs = send(
        app.authed(Method::POST, "alpha", &t.admin_token, PATH)
            .json(&json!({"title": "Assigned", "stage": "lead", "owner_id": rep_id})),
        StatusCode::CREATED,
    )
    .await;
    let not_theirs = send(
        app.authed(Method::POST, "alpha", &t.admin_token, PATH)
            .json(&json!({"title": "Admin's", "stage": "lead"})),
        StatusCode::CREATED,
    )
    .await;
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &rep,
            &format!("{PATH}/{}", theirs["id"]),
        )
        .json(&json!({"notes": "called"})),
        StatusCode::OK,
    )
    .await;
    send_problem(
        app.authed(
            Method::PATCH,
            "alpha",
            &rep,
            &format!("{PATH}/{}", not_theirs["id"]),
        )
        .json(&json!({"notes": "x"})),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn activities_are_logged_completed_and_filtered() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let path = "/api/v1/activities";
    let post = |body: Value| app.authed(Method::POST, "alpha", &token, path).json(&body);
    send_invalid(post(json!({"kind": "fax", "subject": "Hi"})), "kind").await;
    send_invalid(post(json!({"kind": "call"})), "subject").await;
    send_invalid(
        post(json!({"kind": "call", "subject": "Hi", "due_at": "tomorrow"})),
        "due_at",
    )
    .await;
    send_invalid(
        post(json!({"kind": "call", "subject": "Hi", "deal_id": 77})),
        "deal_id",
    )
    .await;
    let call = send(
        post(json!({"kind": "call", "subject": "Intro call", "due_at": "2030-01-01T09:00:00Z"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(call["owner_id"], 1);
    send(
        post(
            json!({"kind": "task", "subject": "Send deck", "due_at": "2030-06-01T09:00:00+02:00"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let done = send(
        app.authed(
            Method::POST,
            "alpha",
            &token,
            &format!("{path}/{}/complete", call["id"]),
        ),
        StatusCode::OK,
    )
    .await;
    assert!(done["completed_at"].is_string());
    let subjects = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |query: &str| app.authed(Method::GET, "alpha", &token, &format!("{path}?{query}"));
    assert_eq!(
        subjects(&send(get("open=true"), StatusCode::OK).await),
        ["Send deck"]
    );
    assert_eq!(
        subjects(&send(get("kind=call"), StatusCode::OK).await),
        ["Intro call"]
    );
    assert_eq!(
        subjects(&send(get("due_before=2030-03-01T00:00:00Z"), StatusCode::OK).await),
        ["Intro call"]
    );
    send_invalid(get("kind=fax"), "kind").await;
    send_invalid(get("open=maybe"), "open").await;
    send_invalid(get("due_before=soon"), "due_before").await;
}
