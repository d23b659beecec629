use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, send, send_invalid, send_problem};

#[tokio::test]
async fn definitions_are_created_listed_changed_and_deleted() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let path = "/api/v1/custom-fields";
    let created = send(
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&json!({
                "entity": "contact", "key": "priority", "label": "Priority", "type": "select",
                "options": ["high", "low"], "required": false
            })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            created["type"].as_str(),
            &created["options"],
            created["required"].as_bool()
        ),
        (Some("select"), &json!(["high", "low"]), Some(false))
    );
    send(
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&json!({"entity": "deal", "key": "priority", "label": "P", "type": "number"})),
        StatusCode::CREATED,
    )
    .await;
    let contacts = send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            "/api/v1/custom-fields?entity=contact",
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(contacts["data"].as_array().unwrap().len(), 1);
    let all = send(
        app.authed(Method::GET, "alpha", &t.admin_token, path),
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    let id = created["id"].as_i64().unwrap();
    let changed = send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            &format!("{path}/{id}"),
        )
        .json(&json!({"label": "Urgency", "options": ["high", "medium", "low"], "required": true})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            changed["label"].as_str(),
            changed["options"].as_array().unwrap().len(),
            changed["required"].as_bool()
        ),
        (Some("Urgency"), 3, Some(true))
    );
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            &format!("{path}/{id}"),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    send_problem(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            &format!("{path}/{id}"),
        ),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The key is free again once its definition is deleted.
    send(
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&json!({"entity": "contact", "key": "priority", "label": "P", "type": "text"})),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn bad_definitions_duplicates_and_other_roles_are_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let path = "/api/v1/custom-fields";
    let post = |body: serde_json::Value| {
        app.authed(Method::POST, "alpha", &t.admin_token, path)
            .json(&body)
    };
    let ok = json!({"entity": "company", "key": "tier", "label": "Tier", "type": "text"});
    send(post(ok.clone()), StatusCode::CREATED).await;
    send_problem(post(ok), StatusCode::CONFLICT, "conflict").await;
    send_invalid(
        post(json!({"entity": "lead", "key": "k", "label": "L", "type": "text"})),
        "entity",
    )
    .await;
    send_invalid(
        post(json!({"entity": "company", "key": "Bad Key", "label": "L", "type": "text"})),
        "key",
    )
    .await;
    send_invalid(
        post(json!({"entity": "company", "key": "k", "label": "", "type": "text"})),
        "label",
    )
    .await;
    send_invalid(
        post(json!({"entity": "company", "key": "k", "label": "L", "type": "colour"})),
        "type",
    )
    .await;
    send_invalid(
        post(json!({"entity": "company", "key": "k", "label": "L", "type": "select"})),
        "options",
    )
    .await;
    send_invalid(post(json!({"entity": "company", "key": "k", "label": "L", "type": "text", "options": ["a"]})), "options").await;
    send_invalid(post(json!({"entity": "company", "key": "k", "label": "L", "type": "text", "required": "yes"})), "required").await;
    send_invalid(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            "/api/v1/custom-fields?entity=lead",
        ),
        "entity",
    )
    .await;
    let (_, viewer) = app.add_user(&t, "v@alpha.example", "viewer").await;
    send(
        app.authed(Method::GET, "alpha", &viewer, path),
        StatusCode::OK,
    )
    .await;
    send_problem(
        app.authed(Method::POST, "alpha", &viewer, path)
            .json(&json!({"entity": "company", "key": "x", "label": "X", "type": "text"})),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}
