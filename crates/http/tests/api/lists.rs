//! API.md: every collection pages. This walks the OpenAPI document, so a
//! list added later is held to the rule without a new test.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_fields, send, send_problem};

#[tokio::test]
async fn every_collection_in_the_document_pages_with_limit_and_cursor() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.create_tenant("beta").await; // two tenants for the platform list
    let post = |path: &str, body: Value| {
        send(
            app.authed(Method::POST, "alpha", &t.admin_token, path)
                .json(&body),
            StatusCode::CREATED,
        )
    };
    // At least two of everything, so a page of one has a next page.
    app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    for email in ["one@x.example", "two@x.example"] {
        post(
            "/api/v1/invitations",
            json!({"email": email, "role": "viewer"}),
        )
        .await;
    }
    for key in ["tier", "region"] {
        let field = json!({"entity": "contact", "key": key, "label": key, "type": "text"});
        post("/api/v1/custom-fields", field).await;
    }
    let mut contacts = Vec::new();
    for name in ["Ann", "Bob"] {
        let contact = post(
            "/api/v1/contacts",
            json!({"first_name": name, "last_name": "Lee"}),
        )
        .await;
        contacts.push(contact["id"].as_i64().unwrap());
        post("/api/v1/companies", json!({"name": format!("{name} Ltd")})).await;
        post(
            "/api/v1/activities",
            json!({"kind": "call", "subject": name}),
        )
        .await;
    }
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/contacts/{}", contacts[0]),
        )
        .json(&json!({"phone": "555"})),
        StatusCode::OK,
    )
    .await;
    let mut deal = 0;
    for title in ["Big", "Small"] {
        deal = post("/api/v1/deals", json!({"title": title, "stage": "lead"})).await["id"]
            .as_i64()
            .unwrap();
    }
    for contact in &contacts {
        send(
            app.authed(
                Method::PUT,
                "alpha",
                &t.admin_token,
                &format!("/api/v1/deals/{deal}/contacts/{contact}"),
            )
            .json(&json!({"role": "user"})),
            StatusCode::OK,
        )
        .await;
    }

    let document = send(
        app.request(Method::GET, "/api/openapi.json"),
        StatusCode::OK,
    )
    .await;
    let mut collections = BTreeSet::new();
    for (template, operations) in document["paths"].as_object().unwrap() {
        if operations.get("get").is_none() {
            continue;
        }
        let path = template.replace("/deals/{id}/", &format!("/deals/{deal}/"));
        if path.contains('{') || path.ends_with("/lookup") {
            continue; // one record, not a collection
        }
        let extra = if path.ends_with("/audit") {
            format!("&entity=contact&entity_id={}", contacts[0])
        } else {
            String::new()
        };
        let get = |query: String| {
            let url = format!("{path}?{query}{extra}");
            if path.starts_with("/platform/") {
                app.platform(Method::GET, &url)
            } else {
                app.authed(Method::GET, "alpha", &t.admin_token, &url)
            }
        };
        let first = get("limit=1".into()).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK, "{path}");
        let Ok(first) = first.json::<Value>().await else {
            continue; // not JSON (the CSV export)
        };
        let Some(data) = first.get("data").and_then(Value::as_array) else {
            continue; // not a list (e.g. stats)
        };
        collections.insert(template.clone());
        assert_eq!(data.len(), 1, "{path}: limit=1 gives one item");
        let cursor = first["next_cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: a first page of one has a next_cursor"));
        let second = send(get(format!("limit=1&cursor={cursor}")), StatusCode::OK).await;
        assert_eq!(second["data"].as_array().unwrap().len(), 1, "{path}");
        assert_ne!(second["data"][0], data[0], "{path}: pages do not overlap");
        for bad in ["limit=0", "limit=201", "limit=abc"] {
            let problem = send_problem(
                get(bad.into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            )
            .await;
            assert_eq!(error_fields(&problem), ["limit"], "{path} {bad}");
        }
        let problem = send_problem(
            get("cursor=bm9wZQ".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), ["cursor"], "{path}");
    }
    let expected: BTreeSet<String> = [
        "/api/v1/activities",
        "/api/v1/audit",
        "/api/v1/companies",
        "/api/v1/contacts",
        "/api/v1/custom-fields",
        "/api/v1/deals",
        "/api/v1/deals/{id}/contacts",
        "/api/v1/invitations",
        "/api/v1/pipeline/stages",
        "/api/v1/pipeline/summary",
        "/api/v1/users",
        "/platform/v1/tenants",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(collections, expected, "the lists the document names");
}
