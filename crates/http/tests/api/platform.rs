//! The platform API: the operator's view of every tenant.

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use atrium_http::ServerSettings;

use crate::helpers::{
    ADMIN_PASSWORD, PLATFORM_TOKEN, TestApp, error_fields, send, send_invalid, send_problem,
};

fn new_tenant(subdomain: &str) -> Value {
    json!({
        "name": "Acme Corporation",
        "subdomain": subdomain,
        "admin": {"email": "boss@acme.example", "first_name": "Bo", "last_name": "Ss", "password": ADMIN_PASSWORD}
    })
}

/// Every platform endpoint, with a body where it takes one.
fn every_platform_request(id: i64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/platform/v1/tenants".into(), None),
        (
            Method::POST,
            "/platform/v1/tenants".into(),
            Some(new_tenant("newco")),
        ),
        (Method::GET, format!("/platform/v1/tenants/{id}"), None),
        (
            Method::PATCH,
            format!("/platform/v1/tenants/{id}"),
            Some(json!({"status": "suspended"})),
        ),
        (Method::DELETE, format!("/platform/v1/tenants/{id}"), None),
        (Method::GET, "/platform/v1/stats".into(), None),
    ]
}

fn build(app: &TestApp, method: &Method, path: &str, body: &Option<Value>) -> RequestBuilder {
    let request = app.request(method.clone(), path);
    match body {
        Some(body) => request.json(body),
        None => request,
    }
}

#[tokio::test]
async fn platform_paths_without_the_platform_token_are_401_and_change_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    for (method, path, body) in every_platform_request(t.id) {
        for authorization in [
            None,
            Some("Bearer wrong-token".to_owned()),
            Some(format!("Bearer {PLATFORM_TOKEN}x")),
            Some(format!("Basic {PLATFORM_TOKEN}")),
            Some(format!("Bearer {}", t.admin_token)),
            Some("Bearer".to_owned()),
        ] {
            let mut request = build(&app, &method, &path, &body);
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            send_problem(request, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }
    // Nothing was created, suspended or deleted.
    let tenant = app.platform_tenant(t.id).await;
    assert_eq!(tenant["status"], "active");
    let list = send(
        app.platform(Method::GET, "/platform/v1/tenants"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    send(
        app.authed(Method::GET, &t.subdomain, &t.admin_token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn without_a_configured_platform_token_the_platform_api_is_404() {
    let app = TestApp::spawn_with(ServerSettings::default()).await;
    for (method, path, body) in every_platform_request(1) {
        for authorization in [
            None,
            Some(format!("Bearer {PLATFORM_TOKEN}")),
            Some("Bearer ".to_owned()),
        ] {
            let mut request = build(&app, &method, &path, &body);
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            send_problem(request, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    send(app.request(Method::GET, "/healthz"), StatusCode::OK).await;
    let tenants = app.sql_i64("SELECT count(*) FROM public.tenants").await;
    assert_eq!(tenants, 0, "a tenant was created without a platform token");
}

#[tokio::test]
async fn creating_a_tenant_is_201_with_the_subdomain_in_lower_case_and_tier_small_by_default() {
    let app = TestApp::spawn().await;
    let created = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("Acme")),
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_i64().expect("integer id");
    assert_eq!(created["subdomain"], "acme");
    assert_eq!(created["name"], "Acme Corporation");
    assert_eq!(created["tier"], "small");
    assert_eq!(created["status"], "active");
    assert_eq!(created["schema_name"], format!("tenant_{id}"));
    for stamp in ["created_at", "updated_at"] {
        let text = created[stamp]
            .as_str()
            .unwrap_or_else(|| panic!("{stamp} in {created}"));
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{stamp} {text}: {e}"));
    }
    let schemas = app
        .sql_i64(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_{id}'"
        ))
        .await;
    assert_eq!(schemas, 1);
    // The first admin can sign in at the lower-case host.
    let token = app.login("acme", "boss@acme.example", ADMIN_PASSWORD).await;
    let me = send(
        app.authed(Method::GET, "acme", &token, "/api/v1/me"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["first_name"], "Bo");
    // An explicit tier is kept.
    let mut body = new_tenant("bigco");
    body["tier"] = json!("large");
    let big = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&body),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(big["tier"], "large");
    assert_eq!(
        app.platform_tenant(big["id"].as_i64().unwrap()).await["tier"],
        "large"
    );
}

#[tokio::test]
async fn a_taken_subdomain_is_409_conflict_in_any_letter_case() {
    let app = TestApp::spawn().await;
    send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("acme")),
        StatusCode::CREATED,
    )
    .await;
    for taken in ["acme", "ACME", " Acme "] {
        let again = app
            .platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant(taken));
        send_problem(again, StatusCode::CONFLICT, "conflict").await;
    }
    let stats = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stats["tenant_count"], 1);
}

/// A change that spoils one field of a valid body.
type Mutation = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn invalid_tenant_fields_are_422_naming_each_field_and_create_nothing() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Mutation)> = vec![
        ("subdomain", Box::new(|b| b["subdomain"] = json!("ab"))),
        ("subdomain", Box::new(|b| b["subdomain"] = json!("a_b_c"))),
        ("subdomain", Box::new(|b| b["subdomain"] = json!("-acme"))),
        ("subdomain", Box::new(|b| b["subdomain"] = json!("acme.co"))),
        (
            "subdomain",
            Box::new(|b| b["subdomain"] = json!("x".repeat(64))),
        ),
        ("subdomain", Box::new(|b| b["subdomain"] = json!("www"))),
        ("subdomain", Box::new(|b| b["subdomain"] = json!("API"))),
        ("subdomain", Box::new(|b| b["subdomain"] = json!("admin"))),
        (
            "admin.email",
            Box::new(|b| b["admin"]["email"] = json!("not-an-email")),
        ),
        (
            "admin.email",
            Box::new(|b| b["admin"]["email"] = json!("a@b")),
        ),
        ("admin.email", Box::new(|b| b["admin"]["email"] = json!(""))),
        (
            "admin.password",
            Box::new(|b| b["admin"]["password"] = json!("short")),
        ),
        (
            "admin.password",
            Box::new(|b| b["admin"]["password"] = json!("123456789")),
        ),
        (
            "admin.password",
            Box::new(|b| b["admin"]["password"] = json!("p".repeat(73))),
        ),
        ("tier", Box::new(|b| b["tier"] = json!("huge"))),
        ("name", Box::new(|b| b["name"] = json!("   "))),
        ("color", Box::new(|b| b["color"] = json!("blue"))),
        ("admin.age", Box::new(|b| b["admin"]["age"] = json!(30))),
        ("name", Box::new(|b| b["name"] = json!(5))),
        ("tier", Box::new(|b| b["tier"] = json!(3))),
        (
            "admin",
            Box::new(|b| b["admin"] = json!("boss@acme.example")),
        ),
        (
            "admin",
            Box::new(|b| drop(b.as_object_mut().unwrap().remove("admin"))),
        ),
        (
            "subdomain",
            Box::new(|b| drop(b.as_object_mut().unwrap().remove("subdomain"))),
        ),
    ];
    for (field, mutate) in cases {
        let mut body = new_tenant("acme");
        mutate(&mut body);
        let problem = send_invalid(
            app.platform(Method::POST, "/platform/v1/tenants")
                .json(&body),
            field,
        )
        .await;
        assert_eq!(error_fields(&problem), vec![field], "{body}");
    }
    // Several bad fields are named together.
    let mut body = new_tenant("www");
    body["admin"]["email"] = json!("nope");
    body["admin"]["password"] = json!("short");
    let problem = send_invalid(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&body),
        "subdomain",
    )
    .await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, vec!["admin.email", "admin.password", "subdomain"]);
    // A password of exactly 10 and of exactly 72 bytes is fine.
    for (sub, password) in [("tenbytes", "p".repeat(10)), ("seventytwo", "p".repeat(72))] {
        let mut body = new_tenant(sub);
        body["admin"]["password"] = json!(password);
        send(
            app.platform(Method::POST, "/platform/v1/tenants")
                .json(&body),
            StatusCode::CREATED,
        )
        .await;
    }
    let stats = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stats["tenant_count"], 2, "only the two valid tenants exist");
}

#[tokio::test]
async fn the_tenant_list_shows_each_tenants_active_user_count() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let (rep, _) = app.add_user(&a, "rep@alpha.example", "sales_rep").await;
    let (gone, _) = app.add_user(&a, "gone@alpha.example", "viewer").await;
    app.add_user(&a, "stays@alpha.example", "viewer").await;
    let counts = |list: &Value| -> Vec<(String, i64)> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["subdomain"].as_str().unwrap().to_owned(),
                    t["user_count"].as_i64().expect("user_count"),
                )
            })
            .collect()
    };
    let list = send(
        app.platform(Method::GET, "/platform/v1/tenants"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        counts(&list),
        vec![("alpha".into(), 4), ("bravo".into(), 1)]
    );
    let first = &list["data"][0];
    for key in [
        "id",
        "name",
        "subdomain",
        "schema_name",
        "status",
        "tier",
        "created_at",
        "updated_at",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    // Deactivated and deleted users are not counted.
    send(
        app.authed(
            Method::PATCH,
            &a.subdomain,
            &a.admin_token,
            &format!("/api/v1/users/{rep}"),
        )
        .json(&json!({"active": false})),
        StatusCode::OK,
    )
    .await;
    send(
        app.authed(
            Method::DELETE,
            &a.subdomain,
            &a.admin_token,
            &format!("/api/v1/users/{gone}"),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    let list = send(
        app.platform(Method::GET, "/platform/v1/tenants"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        counts(&list),
        vec![("alpha".into(), 2), ("bravo".into(), 1)]
    );
}

#[tokio::test]
async fn one_tenant_shows_its_user_contact_and_deal_counts_and_schema_version() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let tenant = app.platform_tenant(t.id).await;
    assert_eq!(tenant["id"], t.id);
    assert_eq!(tenant["subdomain"], "alpha");
    assert_eq!(tenant["user_count"], 2, "{tenant}");
    assert_eq!(tenant["contact_count"], 0, "{tenant}");
    assert_eq!(tenant["deal_count"], 0, "{tenant}");
    let version = tenant["schema_version"]
        .as_i64()
        .unwrap_or_else(|| panic!("schema_version in {tenant}"));
    assert!(version >= 1, "{tenant}");
    let applied = app
        .sql_i64(&format!(
            "SELECT schema_version::bigint FROM public.tenants WHERE id = {}",
            t.id
        ))
        .await;
    assert_eq!(version, applied);
}
