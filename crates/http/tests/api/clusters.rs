//! Tenants on several PostgreSQL servers: placement, serving side by side,
//! and a cluster that goes down stopping only its own tenants.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use atrium_http::ServerSettings;
use atrium_testkit::{DataCluster, migrated_database, migrated_fleet};

use crate::helpers::*;

fn new_tenant(subdomain: &str, cluster: Option<&str>) -> Value {
    let mut body = json!({
        "name": format!("{subdomain} Inc"),
        "subdomain": subdomain,
        "tier": "large",
        "admin": {"email": format!("admin@{subdomain}.example"), "first_name": "Ada",
                  "last_name": "Admin", "password": ADMIN_PASSWORD},
    });
    if let Some(cluster) = cluster {
        body["cluster"] = json!(cluster);
    }
    body
}

async fn scalar(db: &atrium_store::Database, sql: &str) -> i64 {
    db.connection()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn tenants_on_two_clusters_are_served_side_by_side_and_a_down_cluster_stops_only_its_own() {
    let eu = DataCluster::start("eu").await;
    let home = migrated_database().await;
    let fleet = migrated_fleet(&home, &[&eu]).await;
    let eu_db = fleet.cluster("eu").unwrap().db.clone();
    let app = TestApp::spawn_fleet(
        home,
        fleet,
        ServerSettings {
            platform_token: Some(PLATFORM_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;

    // Placement: asked for, then the accepting cluster with the fewest
    // tenants, ties by name.
    let alpha = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("alpha", Some("default"))),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(alpha["cluster"], "default");
    let beta = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("beta", None)),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(beta["cluster"], "eu", "eu had fewer tenants");
    let gamma = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("gamma", None)),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(gamma["cluster"], "default", "a tie goes to the first name");

    // Bad placements are refused, and nothing is made.
    for (cluster, says) in [
        ("nowhere", "no cluster is called"),
        ("Bad Name", "no cluster is called"),
    ] {
        let problem = send_problem(
            app.platform(Method::POST, "/platform/v1/tenants")
                .json(&new_tenant("delta", Some(cluster))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{problem}"
        );
        assert_eq!(error_fields(&problem), ["cluster"]);
    }
    let refused = app.sql_execute("UPDATE public.clusters SET accepting = false WHERE name = 'eu'");
    assert_eq!(refused.await, 1);
    let problem = send_problem(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("delta", Some("eu"))),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("takes no new tenants"),
        "{problem}"
    );
    assert_eq!(
        app.sql_i64("SELECT count(*) FROM public.tenants WHERE subdomain = 'delta'")
            .await,
        0
    );

    // Each tenant works, and its rows are on its own cluster only.
    let alpha_token = app
        .login("alpha", "admin@alpha.example", ADMIN_PASSWORD)
        .await;
    let beta_token = app
        .login("beta", "admin@beta.example", ADMIN_PASSWORD)
        .await;
    for (subdomain, token) in [("alpha", &alpha_token), ("beta", &beta_token)] {
        send(
            app.authed(Method::POST, subdomain, token, "/api/v1/contacts")
                .json(&json!({"first_name": "Only", "last_name": subdomain})),
            StatusCode::CREATED,
        )
        .await;
    }
    let (alpha_schema, beta_schema) = (
        alpha["schema_name"].as_str().unwrap(),
        beta["schema_name"].as_str().unwrap(),
    );
    assert_eq!(
        app.sql_i64(&format!("SELECT count(*) FROM {alpha_schema}.contacts"))
            .await,
        1
    );
    assert_eq!(
        app.sql_i64(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{beta_schema}'"
        ))
        .await,
        0,
        "beta has no schema on the home database"
    );
    assert_eq!(
        scalar(
            &eu_db,
            &format!("SELECT count(*) FROM {beta_schema}.contacts WHERE last_name = 'beta'")
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &eu_db,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{alpha_schema}'")
        )
        .await,
        0,
        "alpha has no schema on eu"
    );

    // The platform sees every cluster and each tenant's counts.
    let shown = send(
        app.platform(Method::GET, &format!("/platform/v1/tenants/{}", beta["id"])),
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["cluster"], "eu");
    assert_eq!(shown["contact_count"], 1);
    let clusters = send(
        app.platform(Method::GET, "/platform/v1/clusters"),
        StatusCode::OK,
    )
    .await;
    let clusters = clusters.as_array().unwrap();
    let eu_view = clusters.iter().find(|c| c["name"] == "eu").unwrap();
    assert_eq!(eu_view["tenant_count"], 1);
    assert_eq!(eu_view["accepting"], false);
    assert_eq!(eu_view["reachable"], true);
    assert!(eu_view["size_bytes"].as_i64().unwrap() > 0);
    let stats = send(
        app.platform(Method::GET, "/platform/v1/stats"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stats["total_contacts"], 2, "counted on both clusters");

    // eu goes down: its tenant answers 503, the other keeps working.
    eu.server.stop().unwrap();
    send_problem(
        app.authed(Method::GET, "beta", &beta_token, "/api/v1/contacts"),
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    send(
        app.authed(Method::GET, "alpha", &alpha_token, "/api/v1/contacts"),
        StatusCode::OK,
    )
    .await;
    let ready = send(app.request(Method::GET, "/readyz"), StatusCode::OK).await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["clusters_down"], json!(["eu"]));

    // Back up: served again without restarting the server.
    eu.server.start_again().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = app
            .authed(Method::GET, "beta", &beta_token, "/api/v1/contacts")
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "recovering");
        assert!(
            std::time::Instant::now() < deadline,
            "eu's tenant never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ready = send(app.request(Method::GET, "/readyz"), StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");

    // Deleting a tenant removes it from its cluster.
    send(
        app.platform(
            Method::DELETE,
            &format!("/platform/v1/tenants/{}", beta["id"]),
        ),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        scalar(
            &eu_db,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{beta_schema}'")
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&eu_db, "SELECT count(*) FROM public.tenants").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_through_pgbouncer_in_transaction_mode() {
    let eu = DataCluster::start("eu").await;
    // Two server sessions for a pool of sixteen: clients share them, one
    // transaction at a time.
    let port = eu.server.start_pgbouncer(2).unwrap();
    let database = eu
        .url
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let pooled = format!("postgresql://postgres@127.0.0.1:{port}/{database}?pooler=transaction");
    let home = migrated_database().await;
    let direct = eu.databases();
    let through_pooler = atrium_store::ClusterDatabases {
        db: atrium_store::Database::connect_lazily(&pooled, 16, Default::default()).unwrap(),
        ..direct
    };
    let fleet = atrium_store::Fleet::new(home.db.clone(), home.admin.clone(), vec![through_pooler]);
    let report =
        atrium_store::fleet::migrate::migrate_fleet(&fleet, &Default::default(), &|_, _| {})
            .await
            .unwrap();
    assert!(report.cluster_failures.is_empty(), "{report:?}");
    let app = TestApp::spawn_fleet(
        home,
        fleet,
        ServerSettings {
            platform_token: Some(PLATFORM_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    let created = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&new_tenant("pooled", Some("eu"))),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["cluster"], "eu");
    let token = app
        .login("pooled", "admin@pooled.example", ADMIN_PASSWORD)
        .await;
    // Requests four at a time over two server sessions, each a
    // transaction of several statements. (Time spent waiting for PgBouncer
    // counts as the tenant's database time, so a flood would meet the
    // tenant's budget instead.)
    use futures::StreamExt;
    let work = (0..40).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            let contact = send(
                app.authed(Method::POST, "pooled", token, "/api/v1/contacts")
                    .json(&json!({"first_name": "P", "last_name": format!("n{i}"), "email": format!("p{i}@x.example")})),
                StatusCode::CREATED,
            )
            .await;
            send(
                app.authed(
                    Method::PATCH,
                    "pooled",
                    token,
                    &format!("/api/v1/contacts/{}", contact["id"]),
                )
                .json(&json!({"phone": "+44 20 7946 0000"})),
                StatusCode::OK,
            )
            .await;
            send(
                app.authed(Method::GET, "pooled", token, "/api/v1/contacts?q=p&limit=5"),
                StatusCode::OK,
            )
            .await;
        }
    });
    futures::stream::iter(work)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    let listed = send(
        app.authed(Method::GET, "pooled", &token, "/api/v1/contacts?limit=100"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 40);

    // PgBouncer carried the tenant's transactions, over its two sessions.
    let (admin, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=pgbouncer"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let stats = admin.simple_query("SHOW STATS").await.unwrap();
    let transactions: i64 = stats
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row)
                if row.get("database") == Some(database) =>
            {
                row.get("total_xact_count")
                    .and_then(|n| n.parse::<i64>().ok())
            }
            _ => None,
        })
        .sum();
    assert!(
        transactions >= 120,
        "PgBouncer saw {transactions} transactions"
    );
    let servers = scalar(
        eu.databases().admin.database(),
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name <> 'atrium'
            AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(servers <= 2, "{servers} server sessions behind PgBouncer");
}
