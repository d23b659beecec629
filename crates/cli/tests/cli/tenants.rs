use atrium_testkit::{empty_database, migrated_database};

use crate::helpers::{assert_fails, atrium, command, json, stderr, stdout};

const CREATE: &[&str] = &[
    "tenant",
    "create",
    "--name",
    "Acme Inc",
    "--subdomain",
    "Acme",
    "--admin-email",
    "boss@acme.com",
    "--admin-password",
    "a-long-password",
];

#[tokio::test]
async fn the_tenant_lifecycle_from_create_to_delete() {
    let t = migrated_database().await;
    let url = &t.url;
    let mut create = CREATE.to_vec();
    create.push("--json");
    let created = json(&atrium(url, &create));
    assert_eq!(
        created["tenant"]["subdomain"], "acme",
        "stored in lower case"
    );
    assert_eq!(created["tenant"]["schema_name"], "tenant_1");
    assert_eq!(created["tenant"]["tier"], "small");
    assert_eq!(created["tenant"]["status"], "active");
    assert!(
        created["admin_password"].is_null(),
        "a given password is not echoed"
    );

    let list = json(&atrium(url, &["tenant", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["user_count"], 1);

    assert!(atrium(url, &["tenant", "suspend", "acme"]).status.success());
    let shown = json(&atrium(url, &["tenant", "show", "acme", "--json"]));
    assert_eq!(shown["status"], "suspended");
    assert!(atrium(url, &["tenant", "resume", "acme"]).status.success());

    let renamed = atrium(url, &["tenant", "rename", "acme", "acme-corp"]);
    assert!(renamed.status.success(), "{}", stderr(&renamed));
    let shown = json(&atrium(url, &["tenant", "show", "acme-corp", "--json"]));
    assert_eq!(
        (shown["status"].as_str(), shown["schema_name"].as_str()),
        (Some("active"), Some("tenant_1"))
    );

    let text = stdout(&atrium(url, &["tenant", "list"]));
    assert!(
        text.contains("acme-corp") && text.contains("tenant_1"),
        "{text}"
    );

    assert!(
        atrium(url, &["tenant", "delete", "acme-corp", "--yes"])
            .status
            .success()
    );
    assert_fails(
        &atrium(url, &["tenant", "show", "acme-corp"]),
        1,
        "not found",
    );
    let exists: i64 =
        t.db.connection()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_1'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(exists, 0, "the schema is dropped");
}

#[tokio::test]
async fn a_generated_admin_password_is_printed_once_and_works() {
    let t = migrated_database().await;
    let out = atrium(
        &t.url,
        &[
            "tenant",
            "create",
            "--name",
            "Beta",
            "--subdomain",
            "beta",
            "--admin-email",
            "a@beta.io",
            "--json",
        ],
    );
    let created = json(&out);
    let password = created["admin_password"]
        .as_str()
        .expect("a generated password")
        .to_owned();
    assert!(password.len() >= 16);
    let hash: String =
        t.db.connection()
            .await
            .unwrap()
            .query_one("SELECT password_hash FROM tenant_1.users", &[])
            .await
            .unwrap()
            .get(0);
    assert!(
        atrium_services::passwords::verify(&password, &hash)
            .await
            .unwrap()
    );
    assert!(!hash.contains(&password), "stored hashed");
}

#[tokio::test]
async fn bad_input_gets_one_clear_line_the_right_exit_code_and_writes_nothing() {
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    let with = |flag: &str, value: &str| {
        let mut args: Vec<String> = CREATE.iter().map(|s| s.to_string()).collect();
        match args.iter().position(|a| a == flag) {
            Some(at) => args[at + 1] = value.to_owned(),
            None => args.extend([flag.to_owned(), value.to_owned()]),
        }
        args
    };
    let run = |args: Vec<String>| atrium(url, &args.iter().map(String::as_str).collect::<Vec<_>>());

    assert_fails(&run(with("--subdomain", "ab")), 2, "at least 3 characters");
    assert_fails(&run(with("--subdomain", "under_score")), 2, "letters a-z");
    assert_fails(&run(with("--subdomain", "dash-")), 2, "hyphen");
    assert_fails(&run(with("--subdomain", "www")), 2, "reserved");
    assert_fails(&run(with("--subdomain", &"x".repeat(64))), 2, "at most 63");
    assert_fails(
        &run(with("--admin-email", "not-an-email")),
        2,
        "admin.email",
    );
    assert_fails(
        &run(with("--admin-password", "short")),
        2,
        "at least 10 bytes",
    );
    assert_fails(&run(with("--name", "  ")), 2, "name: is required");
    assert_fails(&run(with("--subdomain", "ACME")), 1, "already taken");
    assert_fails(&run(with("--tier", "huge")), 2, "invalid value 'huge'");

    assert_fails(
        &atrium(url, &["tenant", "show", "nope"]),
        1,
        "tenant 'nope' not found",
    );
    assert_fails(&atrium(url, &["tenant", "suspend", "nope"]), 1, "not found");
    assert_fails(
        &atrium(url, &["tenant", "rename", "nope", "other"]),
        1,
        "not found",
    );
    assert_fails(
        &atrium(url, &["tenant", "rename", "acme", "a"]),
        2,
        "at least 3",
    );
    assert_fails(
        &atrium(url, &["tenant", "delete", "nope", "--yes"]),
        1,
        "not found",
    );
    assert_fails(&atrium(url, &["tenant", "delete", "acme"]), 2, "--yes");
    assert_fails(
        &atrium(url, &["tenant", "frobnicate"]),
        2,
        "unrecognized subcommand",
    );
    assert_fails(
        &atrium(url, &["tenant", "create", "--name", "x"]),
        2,
        "required",
    );
    // Clap's detail survives the one line: the missing argument is named,
    // and a near miss gets its suggestion.
    assert_fails(
        &atrium(url, &["tenant", "export", "acme"]),
        2,
        "not provided: --out <OUT>",
    );
    assert_fails(
        &atrium(url, &["tenant", "suspnd", "acme"]),
        2,
        "; tip: a similar subcommand exists: 'suspend'",
    );

    // Nothing was written by any of the refused commands.
    let list = json(&atrium(url, &["tenant", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["subdomain"], "acme");
    assert_eq!(list[0]["status"], "active");
}

#[tokio::test]
async fn migrate_builds_a_fresh_database_and_reports_versions() {
    let database = empty_database().await;
    let url = database.url.clone();
    // Without the registry, other commands say what to run.
    assert_fails(&atrium(&url, &["tenant", "list"]), 1, "atrium migrate");
    let out = atrium(&url, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(atrium(&url, CREATE).status.success());
    let status = json(&atrium(&url, &["migrate", "status", "--json"]));
    let latest = status["latest_version"].as_i64().unwrap();
    assert!(latest >= 1);
    assert_eq!(
        status["tenants"][0]["schema_version"].as_i64(),
        Some(latest)
    );
    let text = stdout(&atrium(&url, &["migrate", "status"]));
    assert!(text.contains("TENANTS"), "{text}");
    // A second run has nothing to do and succeeds.
    let again = atrium(&url, &["migrate", "--jobs", "2"]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("0 migrated"), "{}", stderr(&again));
    assert_eq!(
        atrium(&url, &["migrate", "--jobs", "0"]).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn stats_and_check_read_the_registry() {
    let t = migrated_database().await;
    assert!(atrium(&t.url, CREATE).status.success());
    let stats = json(&atrium(&t.url, &["stats", "--json"]));
    assert_eq!(
        (
            stats["tenant_count"].as_i64(),
            stats["total_users"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(stats["total_contacts"], 0);

    let clean = atrium(&t.url, &["check"]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    t.db.connection()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE tenant_1.deals ADD COLUMN mood TEXT")
        .await
        .unwrap();
    let drift = atrium(&t.url, &["check", "--json"]);
    assert_eq!(drift.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&drift.stdout).unwrap();
    assert_eq!(report["drifted"][0]["schema_name"], "tenant_1");
    assert!(
        report["drifted"][0]["extra"][0]
            .as_str()
            .unwrap()
            .contains("deals.mood")
    );
}

#[tokio::test]
async fn maintain_reports_what_it_did() {
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    let report = json(&atrium(url, &["maintain", "--vacuum", "--json"]));
    assert_eq!(report["tenants"], 1);
    assert!(report["vacuumed"].is_array());
    let text = stdout(&atrium(url, &["maintain", "--retention-days", "7"]));
    assert!(text.contains("retention 7 days"), "{text}");
    assert_fails(
        &atrium(url, &["maintain", "--retention-days", "0"]),
        2,
        "retention-days",
    );
}

#[tokio::test]
async fn top_indexes_and_connections_answer_by_tenant() {
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    assert_eq!(
        json(&atrium(url, &["top", "--json"])),
        serde_json::json!([])
    );
    let indexes = json(&atrium(url, &["indexes", "--json"]));
    assert_eq!(indexes[0]["subdomain"], "acme");
    let one = json(&atrium(url, &["indexes", "acme", "--json"]));
    assert!(
        one.as_array()
            .unwrap()
            .iter()
            .any(|i| i["index"] == "contacts_pkey")
    );
    assert!(json(&atrium(url, &["connections", "--json"])).is_array());
    assert!(stdout(&atrium(url, &["indexes"])).contains("UNUSED"));
    assert_fails(&atrium(url, &["indexes", "nobody"]), 1, "not found");
    assert_fails(&atrium(url, &["top", "--limit", "0"]), 2, "limit");
}

#[tokio::test]
async fn clusters_are_listed_and_take_new_tenants_or_not() {
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    let listed = json(&atrium(url, &["cluster", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let home = &listed[0];
    assert_eq!(
        (
            home["name"].as_str(),
            home["accepting"].as_bool(),
            home["reachable"].as_bool()
        ),
        (Some("default"), Some(true), Some(true))
    );
    assert_eq!(home["tenants"], 1);
    assert!(!home["version"].as_str().unwrap().is_empty());
    assert!(home["size_bytes"].as_i64().unwrap() > 0);

    let refused = atrium(url, &["cluster", "refuse", "default"]);
    assert!(refused.status.success(), "{}", stderr(&refused));
    let listed = json(&atrium(url, &["cluster", "list", "--json"]));
    assert_eq!(listed[0]["accepting"], false);
    assert!(
        atrium(url, &["cluster", "accept", "default"])
            .status
            .success()
    );
    let table = stdout(&atrium(url, &["cluster", "list"]));
    assert!(
        table.contains("default") && table.contains("yes"),
        "{table}"
    );

    assert_fails(
        &atrium(url, &["cluster", "refuse", "nowhere"]),
        1,
        "cluster nowhere not found",
    );

    // Declared in the environment and in atrium.toml: recorded, reached.
    let other = empty_database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("atrium.toml"),
        "[clusters.asia]\ndatabase_url = \"postgresql://postgres@127.0.0.1:1/nowhere\"\n",
    )
    .unwrap();
    let declared = |extra: &[(&str, &str)]| {
        let mut cmd = command(dir.path());
        cmd.env("ATRIUM_DATABASE_URL", url)
            .env("ATRIUM_CLUSTER_EU_DATABASE_URL", &other.url);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(["cluster", "list", "--json"]).output().unwrap()
    };
    let listed = json(&declared(&[]));
    let by_name = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {listed}"))
    };
    assert_eq!(by_name("eu")["reachable"], true);
    assert_eq!(
        by_name("eu")["accepting"],
        true,
        "a new cluster takes tenants"
    );
    assert_eq!(by_name("eu")["tenants"], 0);
    assert_eq!(by_name("asia")["reachable"], false, "nothing listens there");
    // Recorded, it stays listed where it is not declared.
    let listed = json(&atrium(url, &["cluster", "list", "--json"]));
    let eu = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "eu")
        .unwrap();
    assert_eq!(
        (eu["declared"].as_bool(), eu["reachable"].as_bool()),
        (Some(false), Some(false))
    );

    assert_fails(
        &declared(&[("ATRIUM_CLUSTER_DEFAULT_DATABASE_URL", "postgresql://x/y")]),
        1,
        "is the home database",
    );
}

#[tokio::test]
async fn maintenance_is_turned_on_with_a_message_and_off_again() {
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    let on = atrium(
        url,
        &[
            "tenant",
            "maintenance",
            "acme",
            "on",
            "--message",
            "Back at noon",
        ],
    );
    assert!(on.status.success(), "{}", stderr(&on));
    let shown = json(&atrium(url, &["tenant", "show", "acme", "--json"]));
    assert_eq!(shown["status"], "maintenance");
    assert_eq!(shown["maintenance_message"], "Back at noon");
    assert!(
        shown["maintenance_by"]
            .as_str()
            .unwrap()
            .starts_with("atrium command line"),
        "{shown}"
    );
    let table = stdout(&atrium(url, &["tenant", "show", "acme"]));
    assert!(table.contains("Back at noon"), "{table}");
    assert_fails(
        &atrium(
            url,
            &["tenant", "maintenance", "acme", "off", "--message", "x"],
        ),
        2,
        "maintenance_message",
    );
    let sideways = atrium(url, &["tenant", "maintenance", "acme", "sideways"]);
    assert_eq!(sideways.status.code(), Some(2), "{}", stderr(&sideways));
    let off = atrium(url, &["tenant", "maintenance", "acme", "off"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let shown = json(&atrium(url, &["tenant", "show", "acme", "--json"]));
    assert_eq!(shown["status"], "active");
    assert!(shown["maintenance_message"].is_null(), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_tenant_statements_are_listed_and_cancelled() {
    use atrium_store::TenantTx;
    use atrium_store::registry::directory::TenantDirectory;
    let t = migrated_database().await;
    let url = &t.url;
    assert!(atrium(url, CREATE).status.success());
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    let acme = directory.resolve("acme").await.unwrap().unwrap();
    let acme_id = acme.id;
    // As a request would: its id beside the statement.
    let sleep = |request_id: &'static str| {
        let (db, acme) = (t.db.clone(), acme.clone());
        tokio::spawn(atrium_store::connection::db_time::measured(
            request_id,
            std::time::Duration::from_secs(1),
            async move {
                let tx = TenantTx::begin(&db, &acme, std::time::Duration::from_secs(60))
                    .await
                    .unwrap();
                tx.query_raw_for_tests("SELECT pg_sleep(30)").await
            },
        ))
    };
    let sleeping = sleep("req-sleepy-1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let listed = json(&atrium(url, &["queries", "--over", "0.5", "--json"]));
        if !listed.as_array().unwrap().is_empty() {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no long statement listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let query = &listed[0];
    assert_eq!(
        (query["tenant"].as_str(), query["cluster"].as_str()),
        (Some("acme"), Some("default")),
        "{listed}"
    );
    assert!(
        query["query"].as_str().unwrap().contains("pg_sleep"),
        "{listed}"
    );
    assert!(query["seconds"].as_f64().unwrap() >= 0.5, "{listed}");
    assert_eq!(query["request_id"], "req-sleepy-1", "{listed}");
    let table = stdout(&atrium(url, &["queries"]));
    assert!(
        table.contains("acme") && table.contains("PID") && table.contains("req-sleepy-1"),
        "{table}"
    );
    // Sessions of one tenant are one line of `connections`, whatever
    // request each serves.
    let groups = json(&atrium(url, &["connections", "--json"]));
    let acme_groups: Vec<_> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["tenant"] == "acme")
        .collect();
    assert_eq!(acme_groups.len(), 1, "{groups}");
    assert_eq!(
        acme_groups[0]["application_name"],
        format!("tenant_{}", acme_id),
        "{groups}"
    );

    let shorter = json(&atrium(url, &["queries", "--over", "600", "--json"]));
    assert_eq!(
        shorter,
        serde_json::json!([]),
        "--over leaves shorter ones out"
    );

    assert_fails(
        &atrium(url, &["queries", "cancel", "999999"]),
        1,
        "nothing was cancelled",
    );
    let pid = query["pid"].as_i64().unwrap().to_string();
    let cancelled = json(&atrium(url, &["queries", "cancel", &pid, "--json"]));
    assert_eq!(cancelled, serde_json::json!({"cancelled": 1}));
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), sleeping)
        .await
        .expect("the statement was cancelled by its PID")
        .unwrap()
        .0;
    assert!(ended.is_err(), "pg_sleep ran to its end");

    let sleeping = sleep("req-sleepy-2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !json(&atrium(url, &["queries", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .any(|q| {
            q["request_id"] == "req-sleepy-2" && q["query"].as_str().unwrap().contains("pg_sleep")
        })
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the second statement never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cancelled = atrium(url, &["queries", "cancel", "--tenant", "acme"]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    assert!(
        stderr(&cancelled).contains("cancelled 1"),
        "{}",
        stderr(&cancelled)
    );
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), sleeping)
        .await
        .expect("the statement was cancelled by its tenant")
        .unwrap()
        .0;
    assert!(ended.is_err(), "pg_sleep ran to its end");
    let negative = atrium(url, &["queries", "--over", "-1"]);
    assert_eq!(negative.status.code(), Some(2));
}
