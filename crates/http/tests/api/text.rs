//! Text PostgreSQL cannot store: U+0000 anywhere in a JSON body or a query
//! string is 422 naming the field, and nothing is written.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, error_fields, send_problem};

#[tokio::test]
async fn a_nul_character_in_any_json_text_or_query_is_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (user_id, _) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let authed = |method: Method, path: &str| app.authed(method, "alpha", &t.admin_token, path);
    let cases = [
        (
            authed(Method::POST, "/api/v1/contacts")
                .json(&json!({"first_name": "a\u{0}b", "last_name": "Lee"})),
            vec!["first_name"],
        ),
        (
            authed(Method::POST, "/api/v1/contacts").json(
                &json!({"first_name": "Ann", "last_name": "Lee", "custom_fields": {"note": "\u{0}"}}),
            ),
            vec!["custom_fields.note"],
        ),
        (
            authed(Method::PATCH, &format!("/api/v1/users/{user_id}"))
                .json(&json!({"first_name": "x\u{0}", "last_name": "y\u{0}"})),
            vec!["first_name", "last_name"],
        ),
        (
            authed(Method::POST, "/api/v1/companies").json(&json!({"name": "Acme", "tags": ["ok", "\u{0}"]})),
            vec!["tags.1"],
        ),
        (
            app.tenant_request(Method::POST, "alpha", "/api/v1/auth/login")
                .json(&json!({"email": "admin@alpha.example", "password": "\u{0}long-enough"})),
            vec!["password"],
        ),
        (
            app.platform(Method::POST, "/platform/v1/tenants").json(&json!({
                "name": "Bad\u{0}Name", "subdomain": "beta",
                "admin": {"email": "a@beta.example", "first_name": "A", "last_name": "B", "password": "long-enough-pw"}
            })),
            vec!["name"],
        ),
        (authed(Method::GET, "/api/v1/contacts?q=a%00b"), vec!["q"]),
        (authed(Method::GET, "/api/v1/contacts?cf.x%00=1"), vec!["cf.x\\u0000"]),
    ];
    for (request, fields) in cases {
        let problem = send_problem(
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error_fields(&problem), fields, "{problem}");
    }
    for (table, count) in [
        ("tenant_1.contacts", 0),
        ("tenant_1.companies", 0),
        ("public.tenants", 1),
    ] {
        assert_eq!(
            app.sql_i64(&format!("SELECT count(*) FROM {table}")).await,
            count,
            "{table}: nothing was written"
        );
    }
    let users = app
        .sql_i64("SELECT count(*) FROM tenant_1.users WHERE first_name LIKE '%x%'")
        .await;
    assert_eq!(users, 0);
}
