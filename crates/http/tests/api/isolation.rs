use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use atrium_store::registry::directory::TenantDirectory;
use atrium_store::{TenantTx, registry};

use crate::helpers::{TestApp, expect_json, expect_problem};

#[tokio::test]
async fn every_id_of_one_tenant_is_not_found_through_another() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let (a_user, _) = app.add_user(&a, "rep@alpha.example", "sales_rep").await;
    let a_invitation = expect_json(
        app.authed(
            Method::POST,
            &a.subdomain,
            &a.admin_token,
            "/api/v1/invitations",
        )
        .json(&serde_json::json!({"email": "later@alpha.example", "role": "viewer"}))
        .send()
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    // Tenant B has a user 1 (its admin) but no user with A's rep's id.
    let path = format!("/api/v1/users/{a_user}");
    let response = app
        .authed(Method::GET, &b.subdomain, &b.admin_token, &path)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .authed(Method::PATCH, &b.subdomain, &b.admin_token, &path)
        .json(&serde_json::json!({"first_name": "Mallory"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let path = format!("/api/v1/invitations/{}", a_invitation["id"]);
    let response = app
        .authed(Method::DELETE, &b.subdomain, &b.admin_token, &path)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    // A's invitation token means nothing in B.
    let lookup = format!(
        "/api/v1/invitations/lookup?token={}",
        a_invitation["token"].as_str().unwrap()
    );
    let response = app
        .tenant_request(Method::GET, &b.subdomain, &lookup)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .tenant_request(Method::GET, &a.subdomain, &lookup)
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await;
    // B's user list holds only B's admin.
    let list = expect_json(
        app.authed(Method::GET, &b.subdomain, &b.admin_token, "/api/v1/users")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let emails: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec![b.admin_email.as_str()]);
}

#[tokio::test]
async fn a_token_of_one_tenant_is_unauthorized_in_another() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let response = app
        .authed(Method::GET, &b.subdomain, &a.admin_token, "/api/v1/me")
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = app
        .authed(Method::GET, &a.subdomain, &a.admin_token, "/api/v1/me")
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await;
}

#[tokio::test]
async fn interleaved_clients_of_many_tenants_never_see_another_tenants_rows() {
    let app = Arc::new(TestApp::spawn().await);
    let mut tenants = Vec::new();
    for name in ["alpha", "bravo", "charlie", "delta"] {
        tenants.push(app.create_tenant(name).await);
    }
    let tenants = Arc::new(tenants);
    let mut clients = Vec::new();
    for client in 0..8 {
        let (app, tenants) = (app.clone(), tenants.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..40 {
                let t = &tenants[(client + i) % tenants.len()];
                let (path, expected) = if i % 2 == 0 {
                    ("/api/v1/me", t.admin_email.clone())
                } else {
                    ("/api/v1/users", t.admin_email.clone())
                };
                let body: Value = app
                    .authed(Method::GET, &t.subdomain, &t.admin_token, path)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let seen: Vec<String> = match body.get("data") {
                    Some(list) => list
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|u| u["email"].as_str().unwrap().to_owned())
                        .collect(),
                    None => vec![body["email"].as_str().unwrap().to_owned()],
                };
                assert_eq!(
                    seen,
                    vec![expected],
                    "tenant {} saw another tenant's rows",
                    t.subdomain
                );
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
}

#[tokio::test]
async fn inside_a_tenant_transaction_postgres_refuses_another_tenants_schema() {
    let app = TestApp::spawn().await;
    app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let directory = TenantDirectory::start(app.db.clone()).await.unwrap();
    let alpha = directory.resolve("alpha").await.unwrap().unwrap();
    let tx = TenantTx::begin(&app.db, &alpha, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let own = tx
        .query_raw_for_tests("SELECT email FROM users")
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    let err = tx
        .query_raw_for_tests("SELECT email FROM tenant_2.users")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
    drop(tx);
    // The registry is out of reach too, except through row-level security.
    let tx = TenantTx::begin(&app.db, &alpha, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let err = tx
        .query_raw_for_tests("SELECT name FROM public.tenants")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    drop(tx);
    let _ = registry::totals(&app.db).await.unwrap();
}

#[tokio::test]
async fn one_pooled_connection_serves_tenants_a_b_a_with_the_same_cached_statement() {
    // A pool of one session: every transaction below runs on it.
    let app = TestApp::spawn().await;
    app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let url = app.database_url.clone();
    let db = atrium_store::Database::connect(&url, 1).await.unwrap();
    let directory = TenantDirectory::start(db.clone()).await.unwrap();
    let mut seen = Vec::new();
    for name in ["alpha", "bravo", "alpha", "bravo"] {
        let tenant = directory.resolve(name).await.unwrap().unwrap();
        let tx = TenantTx::begin(&db, &tenant, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let rows = atrium_store::users::list(&tx, 0, 10, false).await.unwrap();
        seen.push(rows.iter().map(|u| u.email.clone()).collect::<Vec<_>>());
        let backend: i32 = tx
            .query_raw_for_tests("SELECT pg_backend_pid()")
            .await
            .unwrap()[0]
            .get(0);
        seen.push(vec![backend.to_string()]);
        tx.commit().await.unwrap();
    }
    assert_eq!(seen[0], vec!["admin@alpha.example"]);
    assert_eq!(seen[2], vec!["admin@bravo.example"]);
    assert_eq!(seen[4], vec!["admin@alpha.example"]);
    assert_eq!(seen[6], vec!["admin@bravo.example"]);
    assert!(
        seen[1] == seen[3] && seen[3] == seen[5],
        "one backend served every transaction"
    );
}
