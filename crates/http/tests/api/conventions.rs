//! Conventions of API.md that hold on every endpoint: JSON bodies, problem
//! documents, body limits, lists and their paging, `include_deleted`.

use std::collections::BTreeSet;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, TestApp, TestTenant, error_fields, send, send_invalid, send_problem,
};

const ONE_MIB: usize = 1024 * 1024;

/// Every signed-in user (admin first), paged with `limit`, as the pages came.
async fn pages(app: &TestApp, tenant: &TestTenant, path: &str, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
            None => format!("{path}?limit={limit}"),
        };
        let page = send(
            app.authed(Method::GET, &tenant.subdomain, &tenant.admin_token, &url),
            StatusCode::OK,
        )
        .await;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn malformed_json_is_400_bad_request() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for body in [
        "{nope",
        "",
        "{\"email\": \"a@b.example\", \"password\": ",
        "{\"email\": \"a@b.example\", \"password\": \"x\"} trailing",
        "{'email': 'a@b.example'}",
    ] {
        let login = app
            .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        send_problem(login, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    let patch = app
        .authed(
            Method::PATCH,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/users/1",
        )
        .header(CONTENT_TYPE, "application/json")
        .body("{\"first_name\": ");
    send_problem(patch, StatusCode::BAD_REQUEST, "bad_request").await;
    let create = app
        .platform(Method::POST, "/platform/v1/tenants")
        .header(CONTENT_TYPE, "application/json")
        .body("{\"name\": \"x\",");
    send_problem(create, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn malformed_json_is_400_even_when_its_start_does_not_fit_the_body() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    // Not JSON at all, yet what the parser sees first is an object missing
    // fields, or an array where an object belongs.
    let mut wrong = Vec::new();
    for body in ["{} trailing", "{}}", "[1, 2", "{\"email\": 5,"] {
        let login = app
            .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = login.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        if status != StatusCode::BAD_REQUEST {
            wrong.push(format!("{body:?} answered {status} {text}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_bad_request() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let valid = json!({"email": t.admin_email, "password": ADMIN_PASSWORD}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/csv",
    ] {
        let login = app
            .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
            .header(CONTENT_TYPE, content_type)
            .body(valid.clone());
        send_problem(login, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    let form = app
        .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("email={}&password=x", t.admin_email));
    send_problem(form, StatusCode::BAD_REQUEST, "bad_request").await;
    // The same body as JSON signs in: only the type was wrong.
    let login = app
        .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(valid);
    send(login, StatusCode::OK).await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_422_validation_failed_naming_it() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let login = |body: Value| {
        app.tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
            .json(&body)
    };
    let problem = send_invalid(
        login(json!({"email": 5, "password": ADMIN_PASSWORD})),
        "email",
    )
    .await;
    assert_eq!(error_fields(&problem), vec!["email"]);
    send_invalid(
        login(json!({"email": t.admin_email, "password": ["x"]})),
        "password",
    )
    .await;
    // Missing and unknown fields are named too.
    send_invalid(login(json!({"email": t.admin_email})), "password").await;
    send_invalid(
        login(json!({"email": t.admin_email, "password": ADMIN_PASSWORD, "remember": true})),
        "remember",
    )
    .await;
    let patch = app
        .authed(
            Method::PATCH,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/users/1",
        )
        .json(&json!({"active": "yes"}));
    send_invalid(patch, "active").await;
    let create = app.platform(Method::POST, "/platform/v1/tenants").json(&json!({
        "name": "Bravo", "subdomain": "bravo",
        "admin": {"email": "a@bravo.example", "first_name": "A", "last_name": "B", "password": 1234567890}
    }));
    send_invalid(create, "admin.password").await;
}

#[tokio::test]
async fn a_body_over_1_mib_is_413_payload_too_large() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    // A JSON string that makes the body one byte over the limit.
    let padding = "x".repeat(ONE_MIB - r#"{"email":"","password":"x"}"#.len() + 1);
    let body = format!(r#"{{"email":"{padding}","password":"x"}}"#);
    assert_eq!(body.len(), ONE_MIB + 1);
    let login = app
        .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
        .header(CONTENT_TYPE, "application/json")
        .header("x-request-id", "big-one")
        .body(body.clone());
    let response = login.send().await.unwrap();
    assert_eq!(response.headers().get("x-request-id").unwrap(), "big-one");
    crate::helpers::expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        .await;
    let create = app
        .platform(Method::POST, "/platform/v1/tenants")
        .header(CONTENT_TYPE, "application/json")
        .body(body.clone());
    send_problem(create, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let patch = app
        .authed(
            Method::PATCH,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/users/1",
        )
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    send_problem(patch, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Exactly 1 MiB is not too large (it is a wrong sign-in).
    let padding = "x".repeat(ONE_MIB - r#"{"email":"","password":"x"}"#.len());
    let body = format!(r#"{{"email":"{padding}","password":"x"}}"#);
    let response = app
        .tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_chunked_body_over_1_mib_without_content_length_is_413() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let padding = "x".repeat(ONE_MIB + 10);
    let json = format!(r#"{{"email":"{padding}","password":"x"}}"#);
    let body = crate::helpers::chunked(json.as_bytes());
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        app.host_of(&t.subdomain)
    );
    let response = app.raw(&head, &body).await;
    assert_eq!(
        response.status,
        413,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.json()["code"], "payload_too_large");
    assert!(
        response
            .header("x-request-id")
            .is_some_and(|v| !v.is_empty())
    );
}

#[tokio::test]
async fn lists_answer_data_and_a_null_next_cursor_on_the_last_page() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.invite(&t, "later@alpha.example", "viewer").await;
    let lists = [
        app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/users"),
        app.authed(
            Method::GET,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/invitations",
        ),
        app.platform(Method::GET, "/platform/v1/tenants"),
    ];
    for list in lists {
        let body = send(list, StatusCode::OK).await;
        let keys: BTreeSet<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.contains("data") && keys.contains("next_cursor"),
            "{body}"
        );
        assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["next_cursor"], Value::Null, "{body}");
    }
}

#[tokio::test]
async fn limit_out_of_range_or_not_a_number_is_422_naming_limit() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for path in [
        "/api/v1/users",
        "/api/v1/invitations",
        "/platform/v1/tenants",
    ] {
        let get = |query: &str| {
            let url = format!("{path}?{query}");
            if path.starts_with("/platform") {
                app.platform(Method::GET, &url)
            } else {
                app.authed(Method::GET, &t.subdomain, &t.admin_token, &url)
            }
        };
        for bad in [
            "limit=0",
            "limit=201",
            "limit=abc",
            "limit=-1",
            "limit=1.5",
            "limit=",
        ] {
            let problem = send_invalid(get(bad), "limit").await;
            assert_eq!(error_fields(&problem), vec!["limit"], "{path}?{bad}");
        }
        for good in ["limit=1", "limit=200"] {
            send(get(good), StatusCode::OK).await;
        }
        for bad in [
            "cursor=garbage",
            "cursor=!!!",
            "cursor=aWQ6LTE",
            "cursor=bm9wZQ",
        ] {
            let problem = send_invalid(get(bad), "cursor").await;
            assert_eq!(error_fields(&problem), vec!["cursor"], "{path}?{bad}");
        }
    }
}

#[tokio::test]
async fn paging_users_with_limit_1_visits_every_user_exactly_once() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let mut expected = vec![1];
    for (i, role) in ["manager", "sales_rep", "viewer", "sales_rep"]
        .iter()
        .enumerate()
    {
        let (id, _) = app
            .add_user(&t, &format!("user{i}@alpha.example"), role)
            .await;
        expected.push(id);
    }
    let pages = pages(&app, &t, "/api/v1/users", 1).await;
    assert_eq!(pages.len(), expected.len(), "one page per user");
    let mut seen = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(ids(page).len(), 1, "page {i}: {page}");
        let last = i + 1 == pages.len();
        assert_eq!(page["next_cursor"].is_null(), last, "page {i}: {page}");
        seen.extend(ids(page));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a user came twice: {seen:?}");
    expected.sort();
    assert_eq!(sorted, expected);
    // Bigger pages cover the same users.
    let pages = pages_of(&app, &t, 3).await;
    assert_eq!(pages, expected);
}

async fn pages_of(app: &TestApp, t: &TestTenant, limit: usize) -> Vec<i64> {
    let mut all: Vec<i64> = pages(app, t, "/api/v1/users", limit)
        .await
        .iter()
        .flat_map(ids)
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn pages_neither_overlap_nor_skip_when_users_are_added_between_pages() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let mut before = vec![1];
    for i in 0..3 {
        before.push(
            app.add_user(&t, &format!("u{i}@alpha.example"), "viewer")
                .await
                .0,
        );
    }
    let first = send(
        app.authed(
            Method::GET,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/users?limit=2",
        ),
        StatusCode::OK,
    )
    .await;
    let added = app.add_user(&t, "late@alpha.example", "viewer").await.0;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = send(
        app.authed(
            Method::GET,
            &t.subdomain,
            &t.admin_token,
            &format!("/api/v1/users?limit=50&cursor={cursor}"),
        ),
        StatusCode::OK,
    )
    .await;
    let (a, b) = (ids(&first), ids(&second));
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "pages overlap: {a:?} {b:?}"
    );
    let seen: BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    for id in before.iter().chain([&added]) {
        assert!(seen.contains(id), "user {id} skipped: {a:?} {b:?}");
    }
}

#[tokio::test]
async fn paging_invitations_and_tenants_with_limit_1_visits_each_once() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    app.create_tenant("charlie").await;
    let mut invited = Vec::new();
    for i in 0..3 {
        invited.push(
            app.invite(&t, &format!("i{i}@alpha.example"), "viewer")
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let mut seen: Vec<i64> = pages(&app, &t, "/api/v1/invitations", 1)
        .await
        .iter()
        .flat_map(ids)
        .collect();
    seen.sort();
    invited.sort();
    assert_eq!(seen, invited);
    let mut tenants = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/platform/v1/tenants?limit=1&cursor={c}"),
            None => "/platform/v1/tenants?limit=1".to_owned(),
        };
        let page = send(app.platform(Method::GET, &url), StatusCode::OK).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
        tenants.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["subdomain"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
        assert!(tenants.len() < 10);
    }
    assert_eq!(tenants, vec!["alpha", "bravo", "charlie"]);
}

#[tokio::test]
async fn include_deleted_is_403_forbidden_for_sales_reps_and_viewers_and_shows_deleted_users_to_admins()
 {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (_, rep) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let (_, viewer) = app.add_user(&t, "viewer@alpha.example", "viewer").await;
    let (_, manager) = app.add_user(&t, "manager@alpha.example", "manager").await;
    let (gone, _) = app.add_user(&t, "gone@alpha.example", "viewer").await;
    send(
        app.authed(
            Method::DELETE,
            &t.subdomain,
            &t.admin_token,
            &format!("/api/v1/users/{gone}"),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    for token in [&rep, &viewer] {
        let list = app.authed(
            Method::GET,
            &t.subdomain,
            token,
            "/api/v1/users?include_deleted=true",
        );
        send_problem(list, StatusCode::FORBIDDEN, "forbidden").await;
        let one = app.authed(
            Method::GET,
            &t.subdomain,
            token,
            &format!("/api/v1/users/{gone}?include_deleted=true"),
        );
        send_problem(one, StatusCode::FORBIDDEN, "forbidden").await;
        // Without the flag they may list.
        send(
            app.authed(Method::GET, &t.subdomain, token, "/api/v1/users"),
            StatusCode::OK,
        )
        .await;
    }
    let plain = send(
        app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/users"),
        StatusCode::OK,
    )
    .await;
    assert!(
        !ids(&plain).contains(&gone),
        "a deleted user is listed: {plain}"
    );
    let explicit_false = send(
        app.authed(
            Method::GET,
            &t.subdomain,
            &t.admin_token,
            "/api/v1/users?include_deleted=false",
        ),
        StatusCode::OK,
    )
    .await;
    assert!(!ids(&explicit_false).contains(&gone));
    for token in [&t.admin_token, &manager] {
        let with = send(
            app.authed(
                Method::GET,
                &t.subdomain,
                token,
                "/api/v1/users?include_deleted=true",
            ),
            StatusCode::OK,
        )
        .await;
        let row = with["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == gone)
            .expect("deleted user listed");
        assert!(row["deleted_at"].is_string(), "{row}");
        assert_eq!(row["active"], false, "{row}");
    }
}

#[tokio::test]
async fn include_deleted_that_is_not_a_boolean_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let list = app.authed(
        Method::GET,
        &t.subdomain,
        &t.admin_token,
        "/api/v1/users?include_deleted=maybe",
    );
    send_invalid(list, "include_deleted").await;
}

#[tokio::test]
async fn problem_documents_carry_every_member_and_the_problem_content_type() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let cases = [
        (
            app.tenant_request(Method::GET, "nope", "/api/v1/me"),
            404,
            "tenant_not_found",
        ),
        (
            app.tenant_request(Method::GET, &t.subdomain, "/api/v1/me"),
            401,
            "unauthorized",
        ),
        (
            app.authed(
                Method::GET,
                &t.subdomain,
                &t.admin_token,
                "/api/v1/users/999",
            ),
            404,
            "not_found",
        ),
        (
            app.authed(
                Method::GET,
                &t.subdomain,
                &t.admin_token,
                "/api/v1/users?limit=0",
            ),
            422,
            "validation_failed",
        ),
        (
            app.tenant_request(Method::POST, &t.subdomain, "/api/v1/auth/login")
                .header(CONTENT_TYPE, "application/json")
                .body("{"),
            400,
            "bad_request",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{code}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(
            body["type"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
        assert!(
            body["title"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors is not a list: {body}"));
        if code == "validation_failed" {
            assert!(!errors.is_empty(), "{body}");
            for e in errors {
                assert!(e["field"].is_string() && e["message"].is_string(), "{body}");
            }
        } else {
            assert!(errors.is_empty(), "{body}");
        }
    }
}
