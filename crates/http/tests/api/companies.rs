use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestTenant, send, send_invalid, send_problem};

const PATH: &str = "/api/v1/companies";

async fn create(app: &TestApp, t: &TestTenant, token: &str, body: Value) -> Value {
    send(
        app.authed(Method::POST, &t.subdomain, token, PATH)
            .json(&body),
        StatusCode::CREATED,
    )
    .await
}

fn names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_company_is_created_read_changed_deleted_and_restored() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = &t.admin_token;
    let response = app
        .authed(Method::POST, "alpha", token, PATH)
        .json(&json!({"name": "Initech", "domain": "initech.com", "annual_revenue": 12500, "employee_count": 40}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("etag").is_some());
    let company: Value = response.json().await.unwrap();
    assert_eq!(company["annual_revenue"], "12500.00");
    assert_eq!(company["revenue_currency"], "USD");
    assert_eq!(company["custom_fields"], json!({}));
    assert_eq!(company["created_by"], 1);
    assert!(company["deleted_at"].is_null());
    let id = company["id"].as_i64().unwrap();
    let one = format!("{PATH}/{id}");

    let changed = send(
        app.authed(Method::PATCH, "alpha", token, &one)
            .json(&json!({"industry": "Software", "annual_revenue": "99.9"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            changed["industry"].as_str(),
            changed["annual_revenue"].as_str(),
            changed["name"].as_str()
        ),
        (Some("Software"), Some("99.90"), Some("Initech"))
    );

    send(
        app.authed(Method::DELETE, "alpha", token, &one),
        StatusCode::NO_CONTENT,
    )
    .await;
    send_problem(
        app.authed(Method::GET, "alpha", token, &one),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let list = send(
        app.authed(Method::GET, "alpha", token, PATH),
        StatusCode::OK,
    )
    .await;
    assert!(
        list["data"].as_array().unwrap().is_empty(),
        "deleted rows are hidden"
    );
    let deleted = send(
        app.authed(
            Method::GET,
            "alpha",
            token,
            &format!("{one}?include_deleted=true"),
        ),
        StatusCode::OK,
    )
    .await;
    assert!(deleted["deleted_at"].is_string());
    let restored = send(
        app.authed(Method::POST, "alpha", token, &format!("{one}/restore")),
        StatusCode::OK,
    )
    .await;
    assert!(restored["deleted_at"].is_null());
    send(
        app.authed(Method::GET, "alpha", token, &one),
        StatusCode::OK,
    )
    .await;
    send_problem(
        app.authed(Method::POST, "alpha", token, &format!("{one}/restore")),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let history = send(
        app.authed(
            Method::GET,
            "alpha",
            token,
            &format!("/api/v1/audit?entity=company&entity_id={id}"),
        ),
        StatusCode::OK,
    )
    .await;
    let actions: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["restore", "delete", "update", "create"]);
    let update = &history["data"][2];
    assert_eq!(
        update["changes"]["industry"],
        json!({"from": null, "to": "Software"})
    );
    assert_eq!(
        update["changes"]["annual_revenue"],
        json!({"from": "12500.00", "to": "99.90"})
    );
    assert!(
        update["changes"].get("name").is_none(),
        "unchanged fields are not listed"
    );
    assert_eq!(update["user_id"], 1);
}

#[tokio::test]
async fn bad_company_input_is_refused_naming_the_field_and_text_is_stored_verbatim() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let post = |body: Value| {
        app.authed(Method::POST, "alpha", &t.admin_token, PATH)
            .json(&body)
    };
    send_invalid(post(json!({"domain": "x.com"})), "name").await;
    send_invalid(post(json!({"name": "   "})), "name").await;
    send_invalid(post(json!({"name": "x".repeat(256)})), "name").await;
    send_invalid(post(json!({"name": "A", "colour": "red"})), "colour").await;
    send_invalid(post(json!({"name": "A", "id": 5})), "id").await;
    send_invalid(
        post(json!({"name": "A", "employee_count": "3"})),
        "employee_count",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "employee_count": -1})),
        "employee_count",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "annual_revenue": "lots"})),
        "annual_revenue",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "annual_revenue": -5})),
        "annual_revenue",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "annual_revenue": 1e20})),
        "annual_revenue",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "revenue_currency": "EURO"})),
        "revenue_currency",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "parent_company_id": 999})),
        "parent_company_id",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "parent_company_id": "x"})),
        "parent_company_id",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "custom_fields": []})),
        "custom_fields",
    )
    .await;
    send_problem(
        post(json!(["not", "an", "object"])),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let tricky = "Robert'); DROP TABLE companies;-- 株式会社 Ünïcødé";
    let stored = send(
        post(json!({"name": tricky, "city": "Zürich"})),
        StatusCode::CREATED,
    )
    .await;
    let read = send(
        app.authed(
            Method::GET,
            "alpha",
            &t.admin_token,
            &format!("{PATH}/{}", stored["id"]),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["name"], tricky);
    assert_eq!(read["city"], "Zürich");
    // A deleted parent is no parent.
    let parent = send(post(json!({"name": "Parent"})), StatusCode::CREATED).await;
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &t.admin_token,
            &format!("{PATH}/{}", parent["id"]),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    send_invalid(
        post(json!({"name": "Child", "parent_company_id": parent["id"]})),
        "parent_company_id",
    )
    .await;
}

#[tokio::test]
async fn a_parent_that_would_make_a_cycle_is_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let a = create(&app, &t, &token, json!({"name": "A"})).await;
    let b = create(
        &app,
        &t,
        &token,
        json!({"name": "B", "parent_company_id": a["id"]}),
    )
    .await;
    let c = create(
        &app,
        &t,
        &token,
        json!({"name": "C", "parent_company_id": b["id"]}),
    )
    .await;
    let patch = |id: &Value, parent: &Value| {
        app.authed(Method::PATCH, "alpha", &token, &format!("{PATH}/{id}"))
            .json(&json!({"parent_company_id": parent}))
    };
    send_invalid(patch(&a["id"], &c["id"]), "parent_company_id").await;
    send_invalid(patch(&a["id"], &a["id"]), "parent_company_id").await;
    send(patch(&c["id"], &a["id"]), StatusCode::OK).await;
    send(patch(&c["id"], &Value::Null), StatusCode::OK).await;
}

#[tokio::test]
async fn a_stale_if_match_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let company = create(&app, &t, &t.admin_token, json!({"name": "Initech"})).await;
    let one = format!("{PATH}/{}", company["id"]);
    let first = app
        .authed(Method::GET, "alpha", &t.admin_token, &one)
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    send(
        app.authed(Method::PATCH, "alpha", &t.admin_token, &one)
            .header("if-match", &etag)
            .json(&json!({"city": "Austin"})),
        StatusCode::OK,
    )
    .await;
    send_problem(
        app.authed(Method::PATCH, "alpha", &t.admin_token, &one)
            .header("if-match", &etag)
            .json(&json!({"city": "Boston"})),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let now = send(
        app.authed(Method::GET, "alpha", &t.admin_token, &one),
        StatusCode::OK,
    )
    .await;
    assert_eq!(now["city"], "Austin");
}

#[tokio::test]
async fn roles_and_ownership_decide_who_may_change_a_company() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (_, rep) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    let (_, viewer) = app.add_user(&t, "viewer@alpha.example", "viewer").await;
    let (_, manager) = app.add_user(&t, "manager@alpha.example", "manager").await;
    let admins = create(&app, &t, &t.admin_token, json!({"name": "Admin's"})).await;
    let reps = create(&app, &t, &rep, json!({"name": "Rep's"})).await;
    send_problem(
        app.authed(Method::POST, "alpha", &viewer, PATH)
            .json(&json!({"name": "V"})),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    send(
        app.authed(Method::GET, "alpha", &viewer, PATH),
        StatusCode::OK,
    )
    .await;
    let patch = |token: &str, record: &Value| {
        app.authed(
            Method::PATCH,
            "alpha",
            token,
            &format!("{PATH}/{}", record["id"]),
        )
        .json(&json!({"city": "X"}))
    };
    send(patch(&rep, &reps), StatusCode::OK).await;
    send_problem(patch(&rep, &admins), StatusCode::FORBIDDEN, "forbidden").await;
    send_problem(patch(&viewer, &reps), StatusCode::FORBIDDEN, "forbidden").await;
    send(patch(&manager, &admins), StatusCode::OK).await;
    send_problem(
        app.authed(
            Method::DELETE,
            "alpha",
            &rep,
            &format!("{PATH}/{}", admins["id"]),
        ),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    send(
        app.authed(
            Method::DELETE,
            "alpha",
            &rep,
            &format!("{PATH}/{}", reps["id"]),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    send_problem(
        app.authed(
            Method::POST,
            "alpha",
            &rep,
            &format!("{PATH}/{}/restore", reps["id"]),
        ),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    send_problem(
        app.authed(
            Method::GET,
            "alpha",
            &rep,
            &format!("{PATH}?include_deleted=true"),
        ),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let all = send(
        app.authed(
            Method::GET,
            "alpha",
            &manager,
            &format!("{PATH}?include_deleted=true"),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn custom_fields_are_checked_merged_and_filterable() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    for def in [
        json!({"entity": "company", "key": "priority", "label": "Priority", "type": "select", "options": ["high", "low"]}),
        json!({"entity": "company", "key": "partner", "label": "Partner", "type": "boolean"}),
        json!({"entity": "company", "key": "tags", "label": "Tags", "type": "multiselect", "options": ["a", "b", "c"]}),
    ] {
        send(
            app.authed(Method::POST, "alpha", &token, "/api/v1/custom-fields")
                .json(&def),
            StatusCode::CREATED,
        )
        .await;
    }
    let post = |body: Value| app.authed(Method::POST, "alpha", &token, PATH).json(&body);
    send_invalid(
        post(json!({"name": "A", "custom_fields": {"priority": "urgent"}})),
        "custom_fields.priority",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "custom_fields": {"partner": "yes"}})),
        "custom_fields.partner",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "custom_fields": {"nope": 1}})),
        "custom_fields.nope",
    )
    .await;
    send_invalid(
        post(json!({"name": "A", "custom_fields": {"tags": ["a", "z"]}})),
        "custom_fields.tags",
    )
    .await;
    let a = send(post(json!({"name": "A", "custom_fields": {"priority": "high", "partner": true, "tags": ["a", "b"]}})), StatusCode::CREATED).await;
    send(post(json!({"name": "B", "custom_fields": {"priority": "low", "partner": false, "tags": ["c"]}})), StatusCode::CREATED).await;
    let filtered =
        |query: &str| app.authed(Method::GET, "alpha", &token, &format!("{PATH}?{query}"));
    assert_eq!(
        names(&send(filtered("cf.priority=high"), StatusCode::OK).await),
        ["A"]
    );
    assert_eq!(
        names(&send(filtered("cf.partner=false"), StatusCode::OK).await),
        ["B"]
    );
    assert_eq!(
        names(&send(filtered("cf.tags=b"), StatusCode::OK).await),
        ["A"]
    );
    assert_eq!(
        names(&send(filtered("cf.priority=high&cf.partner=true"), StatusCode::OK).await),
        ["A"]
    );
    send_invalid(filtered("cf.unknown=1"), "cf.unknown").await;
    send_invalid(filtered("cf.partner=maybe"), "cf.partner").await;

    let merged = send(
        app.authed(
            Method::PATCH,
            "alpha",
            &token,
            &format!("{PATH}/{}", a["id"]),
        )
        .json(&json!({"custom_fields": {"priority": "low", "partner": null}})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        merged["custom_fields"],
        json!({"priority": "low", "tags": ["a", "b"]})
    );

    // A required field must be given on create, not on later changes.
    send(
        app.authed(Method::POST, "alpha", &token, "/api/v1/custom-fields").json(&json!({"entity": "company", "key": "region", "label": "Region", "type": "text", "required": true})),
        StatusCode::CREATED,
    )
    .await;
    send_invalid(post(json!({"name": "C"})), "custom_fields.region").await;
    send(
        app.authed(
            Method::PATCH,
            "alpha",
            &token,
            &format!("{PATH}/{}", a["id"]),
        )
        .json(&json!({"city": "Oslo"})),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn lists_filter_sort_and_page_without_gaps_while_rows_are_added() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let parent = create(
        &app,
        &t,
        &token,
        json!({"name": "Umbrella", "domain": "umbrella.com", "industry": "Pharma"}),
    )
    .await;
    create(
        &app,
        &t,
        &token,
        json!({"name": "Umbra Labs", "domain": "labs.io", "parent_company_id": parent["id"]}),
    )
    .await;
    create(
        &app,
        &t,
        &token,
        json!({"name": "Acme", "domain": "ACME.com", "industry": "Pharma"}),
    )
    .await;
    create(
        &app,
        &t,
        &token,
        json!({"name": "100%_Juice", "domain": "juice.com"}),
    )
    .await;
    let get = |query: &str| app.authed(Method::GET, "alpha", &token, &format!("{PATH}?{query}"));
    let mut umb = names(&send(get("q=UMB&sort=name"), StatusCode::OK).await);
    umb.sort();
    assert_eq!(umb, ["Umbra Labs", "Umbrella"]);
    assert_eq!(
        names(&send(get("q=acme.c"), StatusCode::OK).await),
        ["Acme"],
        "prefix of the domain"
    );
    assert_eq!(
        names(&send(get("q=100%25_"), StatusCode::OK).await),
        ["100%_Juice"],
        "wildcards match literally"
    );
    assert!(names(&send(get("q=1%25"), StatusCode::OK).await).is_empty());
    assert_eq!(
        names(&send(get("industry=Pharma&sort=name"), StatusCode::OK).await),
        ["Acme", "Umbrella"]
    );
    assert_eq!(
        names(&send(get("domain=acme.com"), StatusCode::OK).await),
        ["Acme"]
    );
    assert_eq!(
        names(
            &send(
                get(&format!("parent_company_id={}", parent["id"])),
                StatusCode::OK
            )
            .await
        ),
        ["Umbra Labs"]
    );
    assert_eq!(
        names(&send(get("sort=-name"), StatusCode::OK).await),
        ["Umbrella", "Umbra Labs", "Acme", "100%_Juice"]
    );
    send_invalid(get("sort=size"), "sort").await;
    send_invalid(get("limit=0"), "limit").await;
    send_invalid(get("cursor=bogus"), "cursor").await;
    send_invalid(get("parent_company_id=abc"), "parent_company_id").await;

    // Page by name two at a time while new companies keep arriving.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("sort=name&limit=2&cursor={c}"),
            None => "sort=name&limit=2".to_owned(),
        };
        let page = send(get(&query), StatusCode::OK).await;
        seen.extend(names(&page));
        if added < 3 {
            create(&app, &t, &token, json!({"name": format!("Zeta {added}")})).await;
            create(
                &app,
                &t,
                &token,
                json!({"name": format!("0 Early {added}")}),
            )
            .await;
            added += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no row twice: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "in order");
    // Everything that existed when paging started, and what was added ahead
    // of the cursor before the last page was read.
    for name in [
        "100%_Juice",
        "Acme",
        "Umbra Labs",
        "Umbrella",
        "Zeta 0",
        "Zeta 1",
    ] {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} missing from {seen:?}"
        );
    }
}

#[tokio::test]
async fn another_tenants_company_is_not_there() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let company = create(&app, &a, &a.admin_token, json!({"name": "Secret"})).await;
    let one = format!("{PATH}/{}", company["id"]);
    send_problem(
        app.authed(Method::GET, "bravo", &b.admin_token, &one),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_problem(
        app.authed(Method::PATCH, "bravo", &b.admin_token, &one)
            .json(&json!({"name": "Mine"})),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    send_invalid(
        app.authed(Method::POST, "bravo", &b.admin_token, PATH)
            .json(&json!({"name": "Child", "parent_company_id": company["id"]})),
        "parent_company_id",
    )
    .await;
}
