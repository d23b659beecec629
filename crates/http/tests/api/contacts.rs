use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, send, send_invalid};

const PATH: &str = "/api/v1/contacts";

fn full_names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["first_name"].as_str().unwrap(),
                c["last_name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn contacts_are_found_by_words_prefixes_email_and_typos_best_first() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let company = send(
        app.authed(Method::POST, "alpha", &token, "/api/v1/companies")
            .json(&json!({"name": "Initech"})),
        StatusCode::CREATED,
    )
    .await;
    for (first, last, email) in [
        ("John", "Smith", "john@x.com"),
        ("Joanna", "Doe", "jd@y.org"),
        ("Bob", "Jones", "bob@x.com"),
        ("Johnny", "Smithers", "js@z.net"),
    ] {
        send(
            app.authed(Method::POST, "alpha", &token, PATH)
                .json(&json!({"first_name": first, "last_name": last, "email": email, "company_id": company["id"]})),
            StatusCode::CREATED,
        )
        .await;
    }
    let search = |q: &str| {
        app.authed(Method::GET, "alpha", &token, PATH)
            .query(&[("q", q)])
    };
    let found = full_names(&send(search("john smith"), StatusCode::OK).await);
    assert_eq!(
        found.first().map(String::as_str),
        Some("John Smith"),
        "{found:?}"
    );
    let found = full_names(&send(search("jo"), StatusCode::OK).await);
    for name in ["John Smith", "Joanna Doe", "Johnny Smithers"] {
        assert!(found.iter().any(|f| f == name), "{name} not in {found:?}");
    }
    assert!(!found.iter().any(|f| f == "Bob Jones") || found.len() == 4);
    let found = full_names(&send(search("jhon smith"), StatusCode::OK).await);
    assert_eq!(
        found.first().map(String::as_str),
        Some("John Smith"),
        "a typo still finds him: {found:?}"
    );
    // One misspelt word, letters swapped or one wrong, finds the name,
    // the best match first.
    for (typo, best) in [
        ("jhon", "John Smith"),
        ("smiht", "John Smith"),
        ("johnn", "John Smith"),
        ("joana", "Joanna Doe"),
    ] {
        let found = full_names(&send(search(typo), StatusCode::OK).await);
        assert_eq!(
            found.first().map(String::as_str),
            Some(best),
            "{typo}: {found:?}"
        );
        assert!(!found.iter().any(|f| f == "Bob Jones"), "{typo}: {found:?}");
    }
    let found = full_names(&send(search("john@x.com"), StatusCode::OK).await);
    assert_eq!(found.first().map(String::as_str), Some("John Smith"));
    let exact = send(
        app.authed(
            Method::GET,
            "alpha",
            &token,
            &format!("{PATH}?email=JOHN@X.COM"),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(full_names(&exact), ["John Smith"]);
    let at = send(
        app.authed(
            Method::GET,
            "alpha",
            &token,
            &format!("{PATH}?company_id={}&sort=last_name", company["id"]),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        full_names(&at),
        ["Joanna Doe", "Bob Jones", "John Smith", "Johnny Smithers"]
    );
    // Search results page by relevance without repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = search("jo").query(&[("limit", "1")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page = send(request, StatusCode::OK).await;
        seen.extend(full_names(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let all = full_names(&send(search("jo"), StatusCode::OK).await);
    assert_eq!(seen, all, "paging by one gives the same order");
    send_invalid(
        app.authed(
            Method::GET,
            "alpha",
            &token,
            &format!("{PATH}?company_id=x"),
        ),
        "company_id",
    )
    .await;
}

#[tokio::test]
async fn bad_contact_input_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let post = |body: Value| {
        app.authed(Method::POST, "alpha", &t.admin_token, PATH)
            .json(&body)
    };
    send_invalid(post(json!({"last_name": "Smith"})), "first_name").await;
    send_invalid(post(json!({"first_name": "John"})), "last_name").await;
    send_invalid(
        post(json!({"first_name": "J", "last_name": "S", "email": "not-an-email"})),
        "email",
    )
    .await;
    send_invalid(
        post(json!({"first_name": "J", "last_name": "S", "phone": "1".repeat(21)})),
        "phone",
    )
    .await;
    send_invalid(
        post(json!({"first_name": "J", "last_name": "S", "company_id": 42})),
        "company_id",
    )
    .await;
    send_invalid(
        post(json!({"first_name": "J", "last_name": "S", "nickname": "Jo"})),
        "nickname",
    )
    .await;
}

#[tokio::test]
async fn each_way_of_searching_runs_on_an_index() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let schema = format!("tenant_{}", t.id);
    let session = app.db.connection().await.unwrap();
    session
        .batch_execute(&format!(
            "INSERT INTO {schema}.contacts (first_name, last_name, email, created_by)
               SELECT 'First' || g, 'Last' || g, 'person' || g || '@example.com', 1
               FROM generate_series(1, 5000) g;"
        ))
        .await
        .unwrap();
    session
        .batch_execute(&format!("VACUUM ANALYZE {schema}.contacts"))
        .await
        .unwrap();
    session
        .batch_execute(&format!("SET search_path = {schema}, extensions"))
        .await
        .unwrap();
    for (predicate, index) in [
        (
            "search_vector @@ to_tsquery('simple', '''first12'':*')",
            "idx_contacts_search",
        ),
        (
            // Word similarity with the query's swapped-letter variants, as
            // the contact search sends it.
            "lower(first_name || ' ' || last_name) %> ANY(string_to_array(E'frist12\\nfirst12', E'\\n'))",
            "idx_contacts_name_trgm",
        ),
        (
            "search_vector @@ to_tsquery('simple', '''person12@example.com'':*')",
            "idx_contacts_search",
        ),
        (
            "lower(email) = lower('Person12@example.com')",
            "idx_contacts_email",
        ),
    ] {
        let plan: String = session
            .query(
                &format!(
                    "EXPLAIN SELECT id FROM contacts WHERE deleted_at IS NULL AND {predicate}"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            plan.contains(index),
            "{predicate} should use {index}:\n{plan}"
        );
    }
}
