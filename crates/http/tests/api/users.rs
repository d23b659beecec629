//! A tenant's users as admins manage them, and the roles that may.

use reqwest::header::{ETAG, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::assert_user_object;
use crate::helpers::{
    ADMIN_PASSWORD, TestApp, TestTenant, error_fields, send, send_invalid, send_problem,
};

fn user_path(id: i64) -> String {
    format!("/api/v1/users/{id}")
}

async fn get_user(app: &TestApp, t: &TestTenant, id: i64) -> Value {
    send(
        app.authed(Method::GET, &t.subdomain, &t.admin_token, &user_path(id)),
        StatusCode::OK,
    )
    .await
}

async fn patch_as_admin(app: &TestApp, t: &TestTenant, id: i64, body: Value) -> Value {
    send(
        app.authed(Method::PATCH, &t.subdomain, &t.admin_token, &user_path(id))
            .json(&body),
        StatusCode::OK,
    )
    .await
}

async fn me_status(app: &TestApp, t: &TestTenant, token: &str) -> StatusCode {
    app.authed(Method::GET, &t.subdomain, token, "/api/v1/me")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn every_role_can_list_and_read_users() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let mut tokens = vec![t.admin_token.clone()];
    let mut ids = vec![1];
    for role in ["manager", "sales_rep", "viewer"] {
        let (id, token) = app
            .add_user(&t, &format!("{role}@alpha.example"), role)
            .await;
        tokens.push(token);
        ids.push(id);
    }
    for token in &tokens {
        let list = send(
            app.authed(Method::GET, "alpha", token, "/api/v1/users"),
            StatusCode::OK,
        )
        .await;
        let listed: Vec<i64> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, ids);
        let one = send(
            app.authed(Method::GET, "alpha", token, &user_path(ids[2])),
            StatusCode::OK,
        )
        .await;
        assert_user_object(&one);
        assert_eq!(one["role"], "sales_rep");
    }
    send_problem(
        app.tenant_request(Method::GET, "alpha", "/api/v1/users"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn getting_one_user_carries_an_etag_and_unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let response = app
        .authed(Method::GET, "alpha", &t.admin_token, &user_path(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response
        .headers()
        .get(ETAG)
        .expect("ETag")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(etag.starts_with('"') || etag.starts_with("W/\""), "{etag}");
    // The ETag changes when the user does.
    patch_as_admin(&app, &t, 1, json!({"first_name": "Adele"})).await;
    let response = app
        .authed(Method::GET, "alpha", &t.admin_token, &user_path(1))
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()[ETAG].to_str().unwrap(), etag);
    for id in ["999", "0", "abc", "-3", "99999999999"] {
        let path = format!("/api/v1/users/{id}");
        send_problem(
            app.authed(Method::GET, "alpha", &t.admin_token, &path),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn an_admin_can_change_a_user_but_managers_sales_reps_and_viewers_get_403() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (target, _) = app.add_user(&t, "target@alpha.example", "viewer").await;
    let mut others = Vec::new();
    for role in ["manager", "sales_rep", "viewer"] {
        others.push(
            app.add_user(&t, &format!("{role}@alpha.example"), role)
                .await,
        );
    }
    let before = get_user(&app, &t, target).await;
    for (own_id, token) in &others {
        for (id, body) in [
            (target, json!({"first_name": "Mallory"})),
            (target, json!({"role": "admin"})),
            (*own_id, json!({"role": "admin"})),
            (*own_id, json!({"permissions": {"users.manage": true}})),
        ] {
            let patch = app
                .authed(Method::PATCH, "alpha", token, &user_path(id))
                .json(&body);
            send_problem(patch, StatusCode::FORBIDDEN, "forbidden").await;
        }
        let delete = app.authed(Method::DELETE, "alpha", token, &user_path(target));
        send_problem(delete, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_eq!(
        get_user(&app, &t, target).await,
        before,
        "a refused change changed the user"
    );
    for (own_id, _) in &others {
        assert_ne!(get_user(&app, &t, *own_id).await["role"], "admin");
    }
    let patched = patch_as_admin(
        &app,
        &t,
        target,
        json!({"first_name": "  Vera ", "last_name": "Viewer", "role": "manager", "permissions": {"contacts.export": false}}),
    )
    .await;
    assert_user_object(&patched);
    assert_eq!(patched["first_name"], "Vera");
    assert_eq!(patched["last_name"], "Viewer");
    assert_eq!(patched["role"], "manager");
    assert_eq!(patched["permissions"], json!({"contacts.export": false}));
    assert_eq!(get_user(&app, &t, target).await, patched);
}

#[tokio::test]
async fn a_patch_with_a_stale_if_match_is_412_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (id, _) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let read = app
        .authed(Method::GET, "alpha", &t.admin_token, &user_path(id))
        .send()
        .await
        .unwrap();
    let old_etag = read.headers()[ETAG].to_str().unwrap().to_owned();
    let changed = app
        .authed(Method::PATCH, "alpha", &t.admin_token, &user_path(id))
        .header(IF_MATCH, &old_etag)
        .json(&json!({"first_name": "First"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let new_etag = changed
        .headers()
        .get(ETAG)
        .expect("a PATCH answer carries its ETag")
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_etag, old_etag);
    for stale in [old_etag.as_str(), "\"nonsense\""] {
        let patch = app
            .authed(Method::PATCH, "alpha", &t.admin_token, &user_path(id))
            .header(IF_MATCH, stale)
            .json(&json!({"first_name": "Second", "role": "viewer"}));
        send_problem(
            patch,
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
        )
        .await;
    }
    let now = get_user(&app, &t, id).await;
    assert_eq!(
        (&now["first_name"], &now["role"]),
        (&json!("First"), &json!("sales_rep"))
    );
    // The current ETag is accepted.
    let read = app
        .authed(Method::GET, "alpha", &t.admin_token, &user_path(id))
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()[ETAG].to_str().unwrap(), new_etag);
    let patched = send(
        app.authed(Method::PATCH, "alpha", &t.admin_token, &user_path(id))
            .header(IF_MATCH, &new_etag)
            .json(&json!({"first_name": "Second"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["first_name"], "Second");
}

#[tokio::test]
async fn an_invalid_role_or_unknown_permission_is_422_naming_it() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (id, _) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let patch = |body: Value| {
        app.authed(Method::PATCH, "alpha", &t.admin_token, &user_path(id))
            .json(&body)
    };
    for role in ["owner", "Admin ", "", "superuser"] {
        let problem = send_invalid(patch(json!({"role": role})), "role").await;
        assert_eq!(error_fields(&problem), vec!["role"]);
    }
    send_invalid(patch(json!({"role": 1})), "role").await;
    let problem = send_invalid(
        patch(json!({"permissions": {"users.fly": true}})),
        "permissions.users.fly",
    )
    .await;
    assert_eq!(error_fields(&problem), vec!["permissions.users.fly"]);
    send_invalid(
        patch(json!({"permissions": {"contacts.export": "yes"}})),
        "permissions.contacts.export",
    )
    .await;
    send_invalid(
        patch(json!({"permissions": ["users.manage"]})),
        "permissions",
    )
    .await;
    send_invalid(patch(json!({"first_name": ""})), "first_name").await;
    send_invalid(patch(json!({"email": "new@alpha.example"})), "email").await;
    let user = get_user(&app, &t, id).await;
    assert_eq!(
        (&user["role"], &user["permissions"]),
        (&json!("sales_rep"), &json!({}))
    );
}

#[tokio::test]
async fn a_users_manage_override_lets_a_sales_rep_manage_users_and_false_denies_an_admin() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (rep, rep_token) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let (target, _) = app.add_user(&t, "target@alpha.example", "viewer").await;
    let (second_admin, second_admin_token) =
        app.add_user(&t, "admin2@alpha.example", "admin").await;
    let rename = |token: &str| {
        app.authed(Method::PATCH, "alpha", token, &user_path(target))
            .json(&json!({"first_name": "Renamed"}))
    };
    send_problem(rename(&rep_token), StatusCode::FORBIDDEN, "forbidden").await;
    let granted = patch_as_admin(
        &app,
        &t,
        rep,
        json!({"permissions": {"users.manage": true}}),
    )
    .await;
    assert_eq!(granted["permissions"], json!({"users.manage": true}));
    assert_eq!(granted["role"], "sales_rep");
    let renamed = send(rename(&rep_token), StatusCode::OK).await;
    assert_eq!(renamed["first_name"], "Renamed");
    // The override reaches invitations too.
    send(
        app.authed(Method::POST, "alpha", &rep_token, "/api/v1/invitations")
            .json(&json!({"email": "x@alpha.example", "role": "viewer"})),
        StatusCode::CREATED,
    )
    .await;
    // An explicit false denies an admin.
    patch_as_admin(
        &app,
        &t,
        second_admin,
        json!({"permissions": {"users.manage": false}}),
    )
    .await;
    send_problem(
        rename(&second_admin_token),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // An empty object restores the role's answer.
    patch_as_admin(&app, &t, rep, json!({"permissions": {}})).await;
    send_problem(rename(&rep_token), StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn demoting_deactivating_or_deleting_the_last_active_admin_is_409() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (manager, manager_token) = app.add_user(&t, "manager@alpha.example", "manager").await;
    let last_admin_changes = [
        json!({"role": "manager"}),
        json!({"active": false}),
        json!({"role": "viewer", "active": true}),
    ];
    for body in &last_admin_changes {
        let patch = app
            .authed(Method::PATCH, "alpha", &t.admin_token, &user_path(1))
            .json(body);
        send_problem(patch, StatusCode::CONFLICT, "conflict").await;
    }
    send_problem(
        app.authed(Method::DELETE, "alpha", &t.admin_token, &user_path(1)),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let admin = get_user(&app, &t, 1).await;
    assert_eq!(
        (&admin["role"], &admin["active"], &admin["deleted_at"]),
        (&json!("admin"), &json!(true), &Value::Null)
    );
    assert_eq!(me_status(&app, &t, &t.admin_token).await, StatusCode::OK);
    // An inactive second admin does not count.
    patch_as_admin(&app, &t, manager, json!({"role": "admin", "active": false})).await;
    let patch = app
        .authed(Method::PATCH, "alpha", &t.admin_token, &user_path(1))
        .json(&json!({"role": "manager"}));
    send_problem(patch, StatusCode::CONFLICT, "conflict").await;
    // With another active admin, the first may step down.
    patch_as_admin(&app, &t, manager, json!({"active": true})).await;
    // (Deactivation ended the old session.)
    assert_eq!(
        me_status(&app, &t, &manager_token).await,
        StatusCode::UNAUTHORIZED
    );
    let manager_token = app
        .login("alpha", "manager@alpha.example", ADMIN_PASSWORD)
        .await;
    let demoted = patch_as_admin(&app, &t, 1, json!({"role": "manager"})).await;
    assert_eq!(demoted["role"], "manager");
    // Now the other one is the last.
    let patch = app
        .authed(Method::PATCH, "alpha", &manager_token, &user_path(manager))
        .json(&json!({"active": false}));
    send_problem(patch, StatusCode::CONFLICT, "conflict").await;
    send_problem(
        app.authed(Method::DELETE, "alpha", &manager_token, &user_path(manager)),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (id, token) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let second = app
        .login("alpha", "rep@alpha.example", ADMIN_PASSWORD)
        .await;
    assert_eq!(me_status(&app, &t, &token).await, StatusCode::OK);
    let patched = patch_as_admin(&app, &t, id, json!({"active": false})).await;
    assert_eq!(patched["active"], false);
    for session in [&token, &second] {
        send_problem(
            app.authed(Method::GET, "alpha", session, "/api/v1/me"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    assert_eq!(
        me_status(&app, &t, &t.admin_token).await,
        StatusCode::OK,
        "the admin's session ended too"
    );
    // Reactivated, the old sessions stay ended.
    patch_as_admin(&app, &t, id, json!({"active": true})).await;
    assert_eq!(me_status(&app, &t, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deleting_a_user_is_204_ends_their_sessions_and_hides_them_unless_an_admin_asks_for_deleted()
 {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (id, token) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let deleted = send(
        app.authed(Method::DELETE, "alpha", &t.admin_token, &user_path(id)),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(deleted, Value::Null);
    send_problem(
        app.authed(Method::GET, "alpha", &t.admin_token, &user_path(id)),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(me_status(&app, &t, &token).await, StatusCode::UNAUTHORIZED);
    let shown = send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            &format!("/api/v1/users/{id}?include_deleted=true"),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["id"], id);
    assert_eq!(shown["active"], false);
    assert!(shown["deleted_at"].is_string(), "{shown}");
    // Deleting again, or changing a deleted user, finds nothing.
    send_problem(
        app.authed(Method::DELETE, "alpha", &t.admin_token, &user_path(id)),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let patch = app
        .authed(Method::PATCH, "alpha", &t.admin_token, &user_path(id))
        .json(&json!({"first_name": "Ghost"}));
    send_problem(patch, StatusCode::NOT_FOUND, "not_found").await;
    send_problem(
        app.authed(Method::DELETE, "alpha", &t.admin_token, &user_path(999)),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn two_admins_deactivating_each_other_at_once_leave_one_active_admin() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let t = app.create_tenant("alpha").await;
    let (second, second_token) = app.add_user(&t, "admin2@alpha.example", "admin").await;
    let moves = [(t.admin_token.clone(), second), (second_token, 1)];
    let mut tasks = Vec::new();
    for (token, target) in moves {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let response = app
                .authed(Method::PATCH, "alpha", &token, &user_path(target))
                .json(&json!({"active": false}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{answers:?}");
    // The loser either saw the conflict or lost its session with its account.
    for (status, body) in &answers {
        assert!(
            [
                StatusCode::OK,
                StatusCode::CONFLICT,
                StatusCode::UNAUTHORIZED
            ]
            .contains(status),
            "{status} {body}"
        );
    }
    let active_admins = app
        .sql_i64(&format!(
            "SELECT count(*) FROM tenant_{}.users WHERE role = 'admin' AND active AND deleted_at IS NULL",
            t.id
        ))
        .await;
    assert_eq!(active_admins, 1);
}
