use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{RawResponse, TestApp, chunked, send, send_problem};

const IMPORT: &str = "/api/v1/contacts/import";
const EXPORT: &str = "/api/v1/contacts/export";

async fn import(app: &TestApp, sub: &str, token: &str, csv: &str, query: &str) -> Value {
    send(
        app.authed(Method::POST, sub, token, &format!("{IMPORT}{query}"))
            .header("content-type", "text/csv")
            .body(csv.to_owned()),
        StatusCode::OK,
    )
    .await
}

async fn export(app: &TestApp, sub: &str, token: &str) -> String {
    let response = app
        .authed(Method::GET, sub, token, EXPORT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    response.text().await.unwrap()
}

async fn define_priority(app: &TestApp, sub: &str, token: &str) {
    for def in [
        json!({"entity": "contact", "key": "priority", "label": "Priority", "type": "select", "options": ["high", "low"]}),
        json!({"entity": "contact", "key": "score", "label": "Score", "type": "number"}),
    ] {
        send(
            app.authed(Method::POST, sub, token, "/api/v1/custom-fields")
                .json(&def),
            StatusCode::CREATED,
        )
        .await;
    }
}

#[tokio::test]
async fn an_import_creates_updates_and_reports_failed_rows_by_line() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    define_priority(&app, "alpha", &token).await;
    let csv = "first_name,last_name,email,company,cf.priority,cf.score\n\
               Ann,Lee,ann@x.com,Initech,high,3\n\
               Bob,,bob@x.com,Initech,low,1\n\
               Cy,Young,not-an-email,,,\n\
               Dee,Dow,dee@x.com,Globex,urgent,\n\
               Ann,Leigh,ANN@X.COM,,,\n";
    let dry = import(&app, "alpha", &token, csv, "?dry_run=true").await;
    assert_eq!(
        (
            dry["created"].as_u64(),
            dry["updated"].as_u64(),
            dry["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(3))
    );
    let none = send(
        app.authed(Method::GET, "alpha", &token, "/api/v1/contacts"),
        StatusCode::OK,
    )
    .await;
    assert!(
        none["data"].as_array().unwrap().is_empty(),
        "a dry run writes nothing"
    );

    let report = import(&app, "alpha", &token, csv, "").await;
    assert_eq!(
        (
            report["created"].as_u64(),
            report["updated"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(3))
    );
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(errors.contains(&(3, "last_name".into())), "{errors:?}");
    assert!(errors.contains(&(4, "email".into())), "{errors:?}");
    assert!(
        errors.contains(&(5, "custom_fields.priority".into())),
        "{errors:?}"
    );
    let contacts = send(
        app.authed(
            Method::GET,
            "alpha",
            &token,
            "/api/v1/contacts?sort=last_name",
        ),
        StatusCode::OK,
    )
    .await;
    let data = contacts["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        1,
        "the second Ann row updated the first: {data:?}"
    );
    assert_eq!(
        (
            data[0]["last_name"].as_str(),
            data[0]["custom_fields"]["score"].as_i64()
        ),
        (Some("Leigh"), Some(3))
    );
    let companies = send(
        app.authed(Method::GET, "alpha", &token, "/api/v1/companies"),
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = companies["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Initech"],
        "Globex's row failed, so Globex was not kept"
    );
}

#[tokio::test]
async fn an_export_imports_into_another_tenant_as_the_same_rows() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    for t in [&a, &b] {
        define_priority(&app, &t.subdomain, &t.admin_token).await;
    }
    let source = "first_name,last_name,email,phone,company,cf.priority,cf.score\n\
                  Ann,Lee,ann@x.com,+1 555,Initech,high,3\n\
                  \"O'Brien, Jr.\",Müller,,,\"Acme, Inc.\",,\n\
                  Zoë,\"Say \"\"hi\"\"\",z@y.org,,Initech,low,2.5\n\
                  \"=HYPERLINK(\"\"http://x\"\")\",@evil,e@x.com,-1,,,-4\n";
    import(&app, "alpha", &a.admin_token, source, "").await;
    let exported = export(&app, "alpha", &a.admin_token).await;
    // Cells a spreadsheet would run as formulas are written as text.
    assert!(
        exported.contains("\"'=HYPERLINK(\"\"http://x\"\")\",'@evil,e@x.com,'-1,"),
        "{exported}"
    );
    assert!(exported.contains(",'+1 555,"), "{exported}");
    assert!(
        exported.starts_with(
            "id,first_name,last_name,email,phone,company_id,company,cf.priority,cf.score\n"
        ),
        "{exported}"
    );
    let report = import(&app, "bravo", &b.admin_token, &exported, "").await;
    assert_eq!(
        (report["created"].as_u64(), report["failed"].as_u64()),
        (Some(4), Some(0)),
        "{report}"
    );
    let strip = |csv: &str| -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(|r| {
                let r = r.unwrap();
                // Ids differ between tenants; everything else must not.
                r.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 0 && *i != 5)
                    .map(|(_, v)| v.to_owned())
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    };
    let again = export(&app, "bravo", &b.admin_token).await;
    assert_eq!(strip(&exported), strip(&again));
    // And the values themselves came back as they were.
    let found = send(
        app.authed(
            Method::GET,
            "bravo",
            &b.admin_token,
            "/api/v1/contacts?email=e@x.com",
        ),
        StatusCode::OK,
    )
    .await;
    let contact = &found["data"][0];
    assert_eq!(contact["first_name"], "=HYPERLINK(\"http://x\")");
    assert_eq!(contact["last_name"], "@evil");
    assert_eq!(contact["phone"], "-1");
    assert_eq!(contact["custom_fields"]["score"], -4);
}

#[tokio::test]
async fn bad_imports_and_roles_are_refused() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    send_problem(
        app.authed(Method::POST, "alpha", &token, IMPORT)
            .header("content-type", "application/json")
            .body("{}"),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    send_problem(
        app.authed(Method::POST, "alpha", &token, IMPORT)
            .header("content-type", "text/csv")
            .body("first_name,shoe_size\nA,9\n"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let (_, viewer) = app.add_user(&t, "v@alpha.example", "viewer").await;
    send_problem(
        app.authed(Method::POST, "alpha", &viewer, IMPORT)
            .header("content-type", "text/csv")
            .body("first_name,last_name\nA,B\n"),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let (_, rep) = app.add_user(&t, "rep@alpha.example", "sales_rep").await;
    send_problem(
        app.authed(Method::GET, "alpha", &rep, EXPORT),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // A sales rep's import may not update someone else's contact.
    import(
        &app,
        "alpha",
        &token,
        "first_name,last_name,email\nAnn,Lee,ann@x.com\n",
        "",
    )
    .await;
    let report = import(
        &app,
        "alpha",
        &rep,
        "first_name,last_name,email\nAnn,Changed,ann@x.com\nNew,Person,new@x.com\n",
        "",
    )
    .await;
    assert_eq!(
        (report["created"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        report["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("forbidden")
    );
}

/// A chunked import: the body goes to a temporary file (no
/// `Content-Length`, past the 1 MiB limit of other routes), is read a row
/// at a time, and line numbers count every line of the file.
async fn chunked_import(app: &TestApp, sub: &str, token: &str, csv: &[u8]) -> RawResponse {
    let head = format!(
        "POST {IMPORT} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked",
        app.host_of(sub)
    );
    app.raw(&head, &chunked(csv)).await
}

#[tokio::test]
async fn a_chunked_import_over_1_mib_is_read_row_by_row() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let blank_lines = 2 * 1024 * 1024;
    let mut csv = b"first_name,last_name,email\nAnn,Lee,ann@x.com\n".to_vec();
    csv.extend(std::iter::repeat_n(b'\n', blank_lines));
    csv.extend_from_slice(b"Bob,Roe,bob@x.com\nCy,,cy@x.com\n");
    let response = chunked_import(&app, "alpha", &t.admin_token, &csv).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let report = response.json();
    assert_eq!(report["created"], 2);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["errors"][0]["row"], blank_lines as u64 + 4);
    assert_eq!(report["errors"][0]["field"], "last_name");
}

#[tokio::test]
async fn an_import_over_20_mib_is_413_and_imports_nothing() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let row = b"Ann,Lee,ann@x.com\n";
    let mut csv = b"first_name,last_name,email\n".to_vec();
    while csv.len() <= 20 * 1024 * 1024 {
        csv.extend_from_slice(row);
    }
    let response = chunked_import(&app, "alpha", &t.admin_token, &csv).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["code"], "payload_too_large");
    let page = send(
        app.authed(Method::GET, "alpha", &t.admin_token, "/api/v1/contacts"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["data"], json!([]));
}

/// More rows than one transaction holds (1,000): a dry run rolls every batch
/// back yet counts a repeated email as the update the real import makes,
/// and the real import keeps every batch.
#[tokio::test]
async fn an_import_of_several_batches_counts_alike_dry_and_real() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let mut csv = String::from("first_name,last_name,email,company\n");
    for n in 0..2_400 {
        // Row 2,200 repeats the email of row 1, in a later batch.
        let email = if n == 2_199 { 0 } else { n };
        csv.push_str(&format!("Ann,Lee{n},ann{email}@x.com,Company {}\n", n % 7));
    }
    let dry = import(&app, "alpha", &token, &csv, "?dry_run=true").await;
    assert_eq!(
        (&dry["created"], &dry["updated"], &dry["failed"]),
        (&json!(2_399), &json!(1), &json!(0)),
        "{dry}"
    );
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM tenant_1.contacts").await,
        0
    );
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM tenant_1.companies").await,
        0
    );
    let real = import(&app, "alpha", &token, &csv, "").await;
    assert_eq!(real, dry);
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM tenant_1.contacts").await,
        2_399
    );
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM tenant_1.companies").await,
        7
    );
    assert_eq!(
        app.sql_i64("SELECT contacts FROM public.tenant_counters WHERE tenant_id = 1")
            .await,
        2_399
    );
}

#[tokio::test]
async fn an_import_lists_the_first_1000_row_errors_and_counts_them_all() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    // Rows of the wrong width fail without reaching the database.
    let mut csv = String::from("first_name,last_name\nAnn,Lee\n");
    for _ in 0..1_500 {
        csv.push_str("x\n");
    }
    let report = import(&app, "alpha", &t.admin_token, &csv, "").await;
    assert_eq!(report["created"], 1);
    assert_eq!(report["failed"], 1_500);
    assert_eq!(report["error_count"], 1_500);
    assert_eq!(report["errors"].as_array().unwrap().len(), 1_000);
    assert_eq!(report["errors"][0]["row"], 3);
}

#[tokio::test]
async fn an_import_of_more_than_100000_rows_is_413_before_any_row_is_written() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let mut csv = String::from("first_name,last_name\n");
    for i in 0..100_001 {
        csv.push_str(&format!("A{i},B\n"));
    }
    send_problem(
        app.authed(Method::POST, "alpha", &t.admin_token, IMPORT)
            .header("content-type", "text/csv")
            .body(csv),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM tenant_1.contacts").await,
        0
    );
}

#[tokio::test]
async fn an_anonymous_or_forbidden_import_is_refused_before_the_file_is_read() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let (_, viewer) = app.add_user(&t, "v@alpha.example", "viewer").await;
    let csv = "first_name,last_name\nAnn,Lee\n".repeat(1_000);
    send_problem(
        app.tenant_request(Method::POST, "alpha", IMPORT)
            .header("content-type", "text/csv")
            .body(csv.clone()),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    send_problem(
        app.authed(Method::POST, "alpha", &viewer, IMPORT)
            .header("content-type", "text/csv")
            .body(csv),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_nul_character_in_a_csv_cell_fails_its_row_naming_the_column() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let csv = "first_name,last_name,email\nAnn,Lee,ann@x.com\nB\u{0}b,Ray,bob@x.com\n";
    let report = import(&app, "alpha", &t.admin_token, csv, "").await;
    assert_eq!(
        (report["created"].as_i64(), report["failed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(report["errors"][0]["row"], 3);
    assert_eq!(report["errors"][0]["field"], "first_name");
}

#[tokio::test]
async fn a_file_of_refused_rows_imports_again_once_fixed() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    // What the browser's "Download the refused rows" gives, fixed.
    let csv = "first_name,last_name,email,import_problem\n\
               Cy,Young,cy@x.com,line 4: email: is not an email address\n";
    let done = import(&app, "alpha", &t.admin_token, csv, "").await;
    assert_eq!(
        (done["created"].as_u64(), done["failed"].as_u64()),
        (Some(1), Some(0))
    );
}

/// The audit history of one record, oldest first: each event's action and
/// changes.
async fn history(app: &TestApp, token: &str, entity: &str, id: i64) -> Vec<(String, Value)> {
    let page = send(
        app.authed(
            Method::GET,
            "alpha",
            token,
            &format!("/api/v1/audit?entity={entity}&entity_id={id}"),
        ),
        StatusCode::OK,
    )
    .await;
    let mut events: Vec<(String, Value)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["changes"].clone(),
            )
        })
        .collect();
    events.reverse();
    events
}

#[tokio::test]
async fn a_batch_of_new_and_known_contacts_is_linked_and_audited_as_one_request_would_be() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let pat = send(
        app.authed(Method::POST, "alpha", &token, "/api/v1/contacts")
            .json(&json!({"first_name": "Pat", "last_name": "Known", "email": "pat@x.com"})),
        StatusCode::CREATED,
    )
    .await;
    // New contacts (written together), a known one (updated on its own),
    // a refused row between them, and a second row for a new email.
    let csv = "first_name,last_name,email,phone,company\n\
               Ann,Lee,ann@x.com,,Acme\n\
               Pat,Known,PAT@X.COM,+1 555 0100,\n\
               Cy,Young,not-an-email,,Ghost Co\n\
               Bo,Diddley,,,acme\n\
               Ann,Lee,Ann@X.com,+1 555 0199,Acme\n";
    let report = import(&app, "alpha", &token, csv, "").await;
    assert_eq!(
        (
            report["created"].as_u64(),
            report["updated"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(2), Some(2), Some(1)),
        "{report}"
    );
    assert_eq!(report["errors"][0]["row"], 4, "{report}");

    let contacts = send(
        app.authed(
            Method::GET,
            "alpha",
            &token,
            "/api/v1/contacts?sort=last_name",
        ),
        StatusCode::OK,
    )
    .await;
    let data = contacts["data"].as_array().unwrap();
    let names: Vec<&str> = data
        .iter()
        .map(|c| c["first_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Bo", "Pat", "Ann"], "by last name");
    let (bo, ann) = (&data[0], &data[2]);
    let companies = send(
        app.authed(Method::GET, "alpha", &token, "/api/v1/companies"),
        StatusCode::OK,
    )
    .await;
    let companies = companies["data"].as_array().unwrap();
    assert_eq!(companies.len(), 1, "Acme once, no Ghost Co: {companies:?}");
    let acme = companies[0]["id"].as_i64().unwrap();
    assert_eq!(ann["company_id"].as_i64(), Some(acme));
    assert_eq!(bo["company_id"].as_i64(), Some(acme));
    assert_eq!(ann["phone"], "+1 555 0199", "the later Ann row updated");

    let ann = history(&app, &token, "contact", ann["id"].as_i64().unwrap()).await;
    let actions: Vec<&str> = ann.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["create", "update"]);
    // The bulk path's create event, written by SQL, is the one a single
    // create writes from Rust: every field that is not null, from null.
    assert_eq!(
        ann[0].1,
        json!({
            "first_name": {"from": null, "to": "Ann"},
            "last_name": {"from": null, "to": "Lee"},
            "email": {"from": null, "to": "ann@x.com"},
            "company_id": {"from": null, "to": acme},
            "custom_fields": {"from": null, "to": {}},
        })
    );
    assert_eq!(
        ann[1].1,
        json!({"phone": {"from": null, "to": "+1 555 0199"}, "email": {"from": "ann@x.com", "to": "Ann@X.com"}})
    );
    let pat_events = history(&app, &token, "contact", pat["id"].as_i64().unwrap()).await;
    assert_eq!(pat_events.len(), 2);
    assert_eq!(
        pat_events[0].1,
        json!({
            "first_name": {"from": null, "to": "Pat"},
            "last_name": {"from": null, "to": "Known"},
            "email": {"from": null, "to": "pat@x.com"},
            "custom_fields": {"from": null, "to": {}},
        }),
        "a contact created alone"
    );
    assert_eq!(
        pat_events[1].1["phone"],
        json!({"from": null, "to": "+1 555 0100"})
    );
    let acme_events = history(&app, &token, "company", acme).await;
    assert_eq!(acme_events.len(), 1, "{acme_events:?}");
    assert_eq!(acme_events[0].0, "create");
    // The import made Acme with its batch's other new companies; its event
    // is the one a company made alone gets.
    let solo = send(
        app.authed(Method::POST, "alpha", &token, "/api/v1/companies")
            .json(&json!({"name": "Solo"})),
        StatusCode::CREATED,
    )
    .await;
    let solo_events = history(&app, &token, "company", solo["id"].as_i64().unwrap()).await;
    let mut expected = solo_events[0].1.clone();
    expected["name"]["to"] = json!("Acme");
    assert_eq!(acme_events[0].1, expected);
}

/// A company the batch cannot make (its name is too long) sends the whole
/// batch down the row-by-row path: that row is refused, the others import
/// with their companies made once each.
#[tokio::test]
async fn a_company_that_cannot_be_made_refuses_its_row_alone() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let token = t.admin_token.clone();
    let csv = format!(
        "first_name,last_name,company\nAnn,Lee,Acme\nBo,Li,{}\nCy,Ko,Beta\nDi,Wu,acme\n",
        "x".repeat(300)
    );
    let report = import(&app, "alpha", &token, &csv, "").await;
    assert_eq!(
        (&report["created"], &report["failed"]),
        (&json!(3), &json!(1)),
        "{report}"
    );
    assert_eq!(report["errors"][0]["row"], 3, "{report}");
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM tenant_1.companies").await,
        2
    );
    assert_eq!(
        app.sql_i64(
            "SELECT count(*) FROM tenant_1.audit_events WHERE entity = 'company' AND action = 'create'"
        )
        .await,
        2
    );
    assert_eq!(
        app.sql_i64(
            "SELECT count(DISTINCT company_id) FROM tenant_1.contacts WHERE company_id IS NOT NULL"
        )
        .await,
        2
    );
}

/// An import of a batch or more vacuums and analyzes the tables it wrote
/// in the background: the new rows leave the GIN indexes' pending lists
/// (which every search would otherwise read whole) without waiting for
/// the scheduled maintenance. A smaller import leaves that to it.
#[tokio::test]
async fn a_large_import_is_followed_by_a_vacuum_of_its_tables() {
    let app = TestApp::spawn().await;
    let t = app.create_tenant("alpha").await;
    let vacuumed = "SELECT count(*) FROM pg_stat_user_tables
                    WHERE schemaname = 'tenant_1' AND relname = 'contacts'
                      AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL";
    let small = "first_name,last_name\nAnn,Lee\n";
    import(&app, "alpha", &t.admin_token, small, "").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.sql_i64(vacuumed).await, 0, "a one-row import waits");

    let mut csv = String::from("first_name,last_name,email\n");
    for n in 0..1_000 {
        csv.push_str(&format!("Ann,Lee{n},ann{n}@x.com\n"));
    }
    let report = import(&app, "alpha", &t.admin_token, &csv, "").await;
    assert_eq!(report["created"], 1_000, "{report}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.sql_i64(vacuumed).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the imported tables were not vacuumed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
