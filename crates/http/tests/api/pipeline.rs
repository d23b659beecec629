use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, send, send_invalid, send_problem};

fn names(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_tenant_starts_with_the_default_pipeline() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let list = send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages",
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        names(&list),
        [
            "lead",
            "qualified",
            "proposal",
            "negotiation",
            "won",
            "lost"
        ]
    );
    assert_eq!(list["next_cursor"], Value::Null);
    let won = &list["data"][4];
    assert_eq!(
        (
            won["probability"].as_str(),
            won["kind"].as_str(),
            won["position"].as_i64()
        ),
        (Some("100.00"), Some("won"), Some(5))
    );
    assert_eq!(list["data"][1]["probability"], "25.00");
}

#[tokio::test]
async fn stages_are_inserted_moved_renamed_and_deleted_keeping_a_dense_order() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let path = "/api/v1/pipeline/stages";
    let created = send(
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&json!({"name": "demo", "probability": "30.5", "position": 2})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            created["position"].as_i64(),
            created["probability"].as_str(),
            created["kind"].as_str()
        ),
        (Some(2), Some("30.50"), Some("open"))
    );
    send(
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&json!({"name": "parked", "probability": 0})),
        StatusCode::CREATED,
    )
    .await;
    let list = send(
        app.authed(Method::GET, "alpha", &t.admin_token, path),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        names(&list),
        [
            "lead",
            "demo",
            "qualified",
            "proposal",
            "negotiation",
            "won",
            "lost",
            "parked"
        ]
    );

    let moved = send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/parked",
        )
        .json(&json!({"position": 1, "name": "icebox", "kind": "lost"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            moved["name"].as_str(),
            moved["position"].as_i64(),
            moved["kind"].as_str()
        ),
        (Some("icebox"), Some(1), Some("lost"))
    );
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/icebox",
        )
        .json(&json!({"position": 4})),
        StatusCode::OK,
    )
    .await;
    let list = send(
        app.authed(Method::GET, "alpha", &t.admin_token, path),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        names(&list),
        [
            "lead",
            "demo",
            "qualified",
            "icebox",
            "proposal",
            "negotiation",
            "won",
            "lost"
        ]
    );
    let positions: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=8).collect::<Vec<_>>());

    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/demo",
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    let list = send(
        app.authed(Method::GET, "alpha", &t.admin_token, path),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        names(&list),
        [
            "lead",
            "qualified",
            "icebox",
            "proposal",
            "negotiation",
            "won",
            "lost"
        ]
    );
    assert_eq!(list["data"][6]["position"], 7);
    send_problem(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/demo",
        ),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_stage_used_by_a_deal_cannot_be_deleted_and_a_rename_moves_its_deals() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.db
        .connection()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO tenant_{}.deals (title, stage, created_by, deleted_at) VALUES ('Old', 'proposal', 1, now())",
            t.id
        ))
        .await
        .unwrap();
    send_problem(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/proposal",
        ),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/proposal",
        )
        .json(&json!({"name": "offer"})),
        StatusCode::OK,
    )
    .await;
    let stage: String = app
        .db
        .connection()
        .await
        .unwrap()
        .query_one(&format!("SELECT stage FROM tenant_{}.deals", t.id), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stage, "offer");
}

#[tokio::test]
async fn bad_stage_input_and_other_roles_are_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let path = "/api/v1/pipeline/stages";
    let post = |body: Value| {
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&body)
    };
    send_invalid(
        post(json!({"name": "x", "probability": 101})),
        "probability",
    )
    .await;
    send_invalid(
        post(json!({"name": "x", "probability": "abc"})),
        "probability",
    )
    .await;
    send_invalid(
        post(json!({"name": "x", "probability": 10, "kind": "maybe"})),
        "kind",
    )
    .await;
    send_invalid(post(json!({"name": "a/b", "probability": 10})), "name").await;
    send_invalid(
        post(json!({"name": "x", "probability": 10, "position": 0})),
        "position",
    )
    .await;
    send_invalid(post(json!({"name": "x"})), "probability").await;
    send_invalid(
        post(json!({"name": "x", "probability": 1, "colour": "red"})),
        "colour",
    )
    .await;
    send_problem(
        post(json!({"name": "lead", "probability": 10})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    send_problem(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/lead",
        )
        .json(&json!({"name": "won"})),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    send_problem(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            "/api/v1/pipeline/stages/nope",
        )
        .json(&json!({"probability": 5})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let (_, rep) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    send(app.authed(Method::GET, "alpha", &rep, path), StatusCode::OK).await;
    send_problem(
        app.authed(Method::POST, "alpha", &rep, path)
            .json(&json!({"name": "x", "probability": 1})),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    send_problem(
        app.authed(
            Method::DELETE,
            "alpha",
            &rep,
            "/api/v1/pipeline/stages/lead",
        ),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}
