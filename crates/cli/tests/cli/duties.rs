//! The operator's duties beyond provisioning: index health, capacity,
//! rehearsed migrations.

use std::time::Duration;

use atrium_testkit::migrated_database;

use crate::helpers::{assert_fails, atrium, json, stderr, stdout};

const CREATE: &[&str] = &[
    "tenant",
    "create",
    "--name",
    "Acme Inc",
    "--subdomain",
    "acme",
    "--admin-email",
    "boss@acme.com",
    "--admin-password",
    "a-long-password",
];

async fn sql(db: &atrium_store::Database, statement: &str) {
    db.connection()
        .await
        .unwrap()
        .batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e} {:?}", e.as_db_error()));
}

async fn tenant_schema(db: &atrium_store::Database, subdomain: &str) -> String {
    db.connection()
        .await
        .unwrap()
        .query_one(
            "SELECT schema_name FROM public.tenants WHERE subdomain = $1",
            &[&subdomain],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bloated_index_is_found_and_rebuilt_while_writes_go_on() {
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    let schema = tenant_schema(&t.db, "acme").await;
    // 150,000 contacts, then nine in ten deleted: the survivors keep every
    // leaf page of the primary key a tenth full.
    sql(
        &t.db,
        &format!(
            "INSERT INTO {schema}.contacts (first_name, last_name, email, created_by)
             SELECT 'F' || g, 'L' || g, 'c' || g || '@example.com', (SELECT min(id) FROM {schema}.users)
               FROM generate_series(1, 150000) g;
             DELETE FROM {schema}.contacts WHERE id % 10 <> 0;"
        ),
    )
    .await;
    sql(&t.db, &format!("VACUUM ANALYZE {schema}.contacts")).await;
    // What an interrupted concurrent rebuild leaves: an invalid index.
    let interrupted = t
        .db
        .connection()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY contacts_pkey_ccnew ON {schema}.contacts (created_by)"
        ))
        .await;
    assert!(interrupted.is_err(), "duplicates make the build fail");

    let bloated = json(&atrium(url, &["indexes", "--bloated", "--json"]));
    let pkey = bloated
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["index"] == "contacts_pkey")
        .unwrap_or_else(|| panic!("contacts_pkey not found bloated: {bloated}"));
    assert_eq!(
        (pkey["tenant"].as_str(), pkey["cluster"].as_str()),
        (Some("acme"), Some("default")),
        "{pkey}"
    );
    assert!(pkey["bloat_ratio"].as_f64().unwrap() > 0.6, "{pkey}");
    // One tenant's estimate lists every B-tree index, bloated or not.
    let all = json(&atrium(url, &["indexes", "acme", "--bloated", "--json"]));
    assert!(all.as_array().unwrap().len() > bloated.as_array().unwrap().len());
    let table = stdout(&atrium(url, &["indexes", "--bloated"]));
    assert!(
        table.contains("BLOAT") && table.contains("contacts_pkey"),
        "{table}"
    );

    // A writer keeps adding contacts while the indexes are rebuilt.
    let writer_db = t.db.clone();
    let writer_schema = schema.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_writing = stop.clone();
    let writer = tokio::spawn(async move {
        let session = writer_db.connection().await.unwrap();
        let mut written = 0u32;
        while !stop_writing.load(std::sync::atomic::Ordering::Relaxed) {
            session
                .execute(
                    &format!(
                        "INSERT INTO {writer_schema}.contacts (first_name, last_name, created_by)
                         VALUES ('During', 'Rebuild', (SELECT min(id) FROM {writer_schema}.users))"
                    ),
                    &[],
                )
                .await
                .expect("a write during the rebuild");
            written += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        written
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let maintained = tokio::task::spawn_blocking({
        let url = url.clone();
        move || atrium(&url, &["maintain", "--reindex", "--json"])
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(
        maintained.status.success(),
        "{} {}",
        stderr(&maintained),
        stdout(&maintained)
    );
    let report: serde_json::Value = serde_json::from_slice(&maintained.stdout).unwrap();
    assert_eq!(report["reindex_ran"], true, "{report}");
    let rebuilt = report["reindexed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["index"] == "contacts_pkey")
        .unwrap_or_else(|| panic!("contacts_pkey not rebuilt: {report}"));
    assert!(
        rebuilt["bytes_after"].as_i64().unwrap() * 2 < rebuilt["bytes_before"].as_i64().unwrap(),
        "{rebuilt}"
    );
    assert!(written > 0, "the writer wrote during the rebuild");
    let bloated = json(&atrium(url, &["indexes", "--bloated", "--json"]));
    assert!(
        !bloated
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["index"] == "contacts_pkey"),
        "{bloated}"
    );
    let leftovers: i64 =
        t.db.connection()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname ~ '_ccnew'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(leftovers, 0, "the interrupted rebuild's index was dropped");
    let check = atrium(url, &["check"]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert_fails(
        &atrium(url, &["indexes", "nobody", "--bloated"]),
        1,
        "not found",
    );
}
