//! Moving a tenant between clusters while it works: nothing committed is
//! lost or doubled, writers only wait, and a move stopped anywhere before
//! the flip leaves the tenant where it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use atrium_http::ServerSettings;
use atrium_services::operator::{self, MoveOptions, MoveState};
use atrium_store::Fleet;
use atrium_testkit::{DataCluster, migrated_database, migrated_fleet};

use crate::helpers::*;

fn settings() -> ServerSettings {
    ServerSettings {
        platform_token: Some(PLATFORM_TOKEN.into()),
        ..Default::default()
    }
}

/// Three clusters (the home one and two of their own, which replicate),
/// a server over them, and tenant `acme` on `eu`.
async fn fleet_with_tenant_on_eu() -> (TestApp, Fleet, TestTenant, Vec<DataCluster>) {
    let (eu, us) = tokio::join!(DataCluster::start("eu"), DataCluster::start("us"));
    let home = migrated_database().await;
    let fleet = migrated_fleet(&home, &[&eu, &us]).await;
    let app = TestApp::spawn_fleet(home, fleet.clone(), settings()).await;
    let created = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&json!({
                "name": "Acme", "subdomain": "acme", "tier": "large", "cluster": "eu",
                "admin": {"email": "admin@acme.example", "first_name": "Ada",
                          "last_name": "Admin", "password": ADMIN_PASSWORD},
            })),
        StatusCode::CREATED,
    )
    .await;
    let token = app
        .login("acme", "admin@acme.example", ADMIN_PASSWORD)
        .await;
    let tenant = TestTenant {
        id: created["id"].as_i64().unwrap(),
        subdomain: "acme".into(),
        admin_email: "admin@acme.example".into(),
        admin_token: token,
    };
    (app, fleet, tenant, vec![eu, us])
}

/// What a writer believes it committed: each contact's last name, and
/// whether it deleted it.
#[derive(Default)]
struct Written {
    contacts: BTreeMap<i64, (String, bool)>,
    deals: Vec<i64>,
    activities: Vec<i64>,
    errors: Vec<String>,
    requests: usize,
}

/// Creates, renames and deletes contacts and creates deals and activities
/// as fast as it can until `stop`, checking every answer.
async fn write_until(app: &TestApp, token: &str, stop: &AtomicBool) -> Written {
    let mut written = Written::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (method, path, body) = match n % 6 {
            1 | 2 => (
                Method::POST,
                "/api/v1/contacts".to_owned(),
                json!({"first_name": "W", "last_name": format!("n{n}")}),
            ),
            3 => match written.contacts.iter().rev().find(|(_, (_, gone))| !gone) {
                Some((id, _)) => (
                    Method::PATCH,
                    format!("/api/v1/contacts/{id}"),
                    json!({"last_name": format!("renamed{n}")}),
                ),
                None => continue,
            },
            4 => match written.contacts.iter().find(|(_, (_, gone))| !gone) {
                Some((id, _)) => (
                    Method::DELETE,
                    format!("/api/v1/contacts/{id}"),
                    Value::Null,
                ),
                None => continue,
            },
            5 => (
                Method::POST,
                "/api/v1/deals".to_owned(),
                json!({"title": format!("deal {n}"), "stage": "lead", "value": "100"}),
            ),
            _ => (
                Method::POST,
                "/api/v1/activities".to_owned(),
                json!({"kind": "call", "subject": format!("call {n}")}),
            ),
        };
        let mut request = app.authed(method.clone(), "acme", token, &path);
        if !body.is_null() {
            request = request.json(&body);
        }
        written.requests += 1;
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                written.errors.push(format!("{method} {path}: {e}"));
                continue;
            }
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            written
                .errors
                .push(format!("{method} {path}: {status} {answer}"));
            continue;
        }
        let id = answer["id"].as_i64();
        match (method, n % 6) {
            (Method::POST, 1 | 2) => {
                written
                    .contacts
                    .insert(id.unwrap(), (format!("n{n}"), false));
            }
            (Method::PATCH, _) => {
                written.contacts.get_mut(&id.unwrap()).unwrap().0 = format!("renamed{n}");
            }
            (Method::DELETE, _) => {
                let deleted: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
                written.contacts.get_mut(&deleted).unwrap().1 = true;
            }
            (Method::POST, 5) => written.deals.push(id.unwrap()),
            _ => written.activities.push(id.unwrap()),
        }
    }
    written
}

async fn rows(db: &atrium_store::Database, sql: &str) -> Vec<tokio_postgres::Row> {
    db.connection()
        .await
        .unwrap()
        .query(sql, &[])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_under_a_concurrent_writer_with_every_write_kept_once_and_no_error() {
    let (app, fleet, t, _clusters) = fleet_with_tenant_on_eu().await;
    let app = Arc::new(app);
    // A second server process' worth: its own directory, same clusters.
    let other = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fleet = fleet.clone();
        tokio::spawn(atrium_http::serve_fleet(
            listener,
            fleet,
            settings(),
            std::future::pending(),
        ));
        addr
    };
    let read_on_other = |path: &str| {
        reqwest::Client::new()
            .get(format!("http://{other}{path}"))
            .header("host", format!("acme.localhost:{}", other.port()))
            .header("authorization", format!("Bearer {}", t.admin_token))
    };
    send(read_on_other("/api/v1/contacts"), StatusCode::OK).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, token, app) = (stop.clone(), t.admin_token.clone(), app.clone());
        tokio::spawn(async move { write_until(&app, &token, &stop).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tenant = atrium_services::tenants::find(&fleet, "acme")
        .await
        .unwrap();
    let states = std::sync::Mutex::new(Vec::new());
    let report = operator::move_tenant(&fleet, &tenant, "us", &MoveOptions::default(), &|p| {
        states.lock().unwrap().push(p.state)
    })
    .await
    .unwrap();
    // Writes go on against the target for a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();

    assert!(
        written.errors.is_empty(),
        "the writer saw errors: {:?}",
        written.errors
    );
    assert!(
        written.requests > 20,
        "the writer wrote ({})",
        written.requests
    );
    assert!(report.verified, "{report:?}");
    assert!(report.longest_pause_ms <= 2000, "{report:?}");
    let states = states.into_inner().unwrap();
    for state in [
        MoveState::Preparing,
        MoveState::Copying,
        MoveState::CuttingOver,
    ] {
        assert!(states.contains(&state), "{state:?} reported: {states:?}");
    }
    let moved = atrium_services::tenants::find(&fleet, "acme")
        .await
        .unwrap();
    assert_eq!(moved.cluster, "us");
    let record = send(
        app.platform(Method::GET, &format!("/platform/v1/tenants/{}/move", t.id)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(record["result"]["verified"], true, "{record}");

    // Every committed write is on the target, once, as last written.
    let us = fleet.cluster("us").unwrap().admin.database().clone();
    let schema = &moved.schema_name;
    let on_target: BTreeMap<i64, (String, bool)> = rows(
        &us,
        &format!("SELECT id::bigint, last_name, deleted_at IS NOT NULL FROM {schema}.contacts"),
    )
    .await
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect();
    for (id, expected) in &written.contacts {
        assert_eq!(on_target.get(id), Some(expected), "contact {id}");
    }
    assert_eq!(
        on_target.len(),
        written.contacts.len(),
        "no contact twice or unasked"
    );
    let deals =
        rows(&us, &format!("SELECT count(*) FROM {schema}.deals")).await[0].get::<_, i64>(0);
    assert_eq!(deals as usize, written.deals.len());
    let activities =
        rows(&us, &format!("SELECT count(*) FROM {schema}.activities")).await[0].get::<_, i64>(0);
    assert_eq!(activities as usize, written.activities.len());
    // The audit history is whole: a create for every contact made, a
    // delete for every one deleted.
    let audited = rows(
        &us,
        &format!(
            "SELECT count(*) FILTER (WHERE action = 'create'),
                    count(*) FILTER (WHERE action = 'delete')
               FROM {schema}.audit_events WHERE entity = 'contact'"
        ),
    )
    .await;
    let deleted = written.contacts.values().filter(|(_, gone)| *gone).count() as i64;
    assert_eq!(
        (audited[0].get::<_, i64>(0), audited[0].get::<_, i64>(1)),
        (written.contacts.len() as i64, deleted)
    );
    // Ids go on from the source's sequences: a new contact never meets an
    // old id.
    let fresh = send(
        app.authed(Method::POST, "acme", &t.admin_token, "/api/v1/contacts")
            .json(&json!({"first_name": "After", "last_name": "Move"})),
        StatusCode::CREATED,
    )
    .await;
    let newest = written.contacts.keys().max().copied().unwrap_or(0);
    assert!(fresh["id"].as_i64().unwrap() > newest, "{fresh}");

    // The other server follows the flip: it reads the new contact.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let found = send(
            read_on_other(&format!("/api/v1/contacts/{}", fresh["id"])),
            StatusCode::OK,
        )
        .await;
        if found["last_name"] == "Move" || std::time::Instant::now() >= deadline {
            assert_eq!(found["last_name"], "Move");
            break;
        }
    }

    // The source is left renamed, unserved, and nothing replicates.
    let eu = fleet.cluster("eu").unwrap().admin.database().clone();
    let kept = report.source_kept_as.clone().unwrap();
    assert_eq!(
        rows(
            &eu,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname IN ('{schema}', '{kept}')")
        )
        .await[0]
            .get::<_, i64>(0),
        1
    );
    assert_eq!(
        rows(&eu, "SELECT count(*) FROM pg_replication_slots").await[0].get::<_, i64>(0),
        0
    );
    assert_eq!(
        rows(&us, "SELECT count(*) FROM pg_subscription").await[0].get::<_, i64>(0),
        0
    );
}

/// A write through the API answers 201: the tenant is served.
async fn serves(app: &TestApp, t: &TestTenant, what: &str) {
    send(
        app.authed(Method::POST, "acme", &t.admin_token, "/api/v1/contacts")
            .json(&json!({"first_name": "Still", "last_name": what})),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_killed_at_any_step_leaves_the_tenant_on_its_source_and_a_rerun_completes_it() {
    let (app, fleet, t, _clusters) = fleet_with_tenant_on_eu().await;
    serves(&app, &t, "before").await;
    for (kill_at, stalls) in [
        (MoveState::Preparing, vec![]),
        (MoveState::Copying, vec![]),
        (MoveState::CatchingUp, vec![]),
        // Held in the pause long enough to be killed there.
        (MoveState::CuttingOver, vec![Duration::from_secs(30)]),
    ] {
        let tenant = atrium_services::tenants::find(&fleet, "acme")
            .await
            .unwrap();
        let (seen, mut reached) = tokio::sync::watch::channel(false);
        let moving = {
            let fleet = fleet.clone();
            let options = MoveOptions {
                max_pause: Duration::from_secs(60),
                pause_stalls: stalls,
                ..Default::default()
            };
            tokio::spawn(async move {
                operator::move_tenant(&fleet, &tenant, "us", &options, &|p| {
                    if p.state == kill_at {
                        let _ = seen.send(true);
                    }
                })
                .await
            })
        };
        reached.wait_for(|r| *r).await.unwrap();
        if kill_at == MoveState::CuttingOver {
            // Inside the pause: writes wait now.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        moving.abort();
        let _ = moving.await;
        let tenant = atrium_services::tenants::find(&fleet, "acme")
            .await
            .unwrap();
        assert_eq!(tenant.cluster, "eu", "killed at {kill_at:?}");
        // Writes resume on the source at once (the pause ended with the
        // mover's sessions).
        tokio::time::timeout(Duration::from_secs(5), serves(&app, &t, "between"))
            .await
            .unwrap_or_else(|_| panic!("writes did not resume after a kill at {kill_at:?}"));
    }
    let tenant = atrium_services::tenants::find(&fleet, "acme")
        .await
        .unwrap();
    let report = operator::move_tenant(&fleet, &tenant, "us", &MoveOptions::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.verified, "{report:?}");
    let tenant = atrium_services::tenants::find(&fleet, "acme")
        .await
        .unwrap();
    assert_eq!(tenant.cluster, "us");
    serves(&app, &t, "after").await;
    let us = fleet.cluster("us").unwrap().admin.database().clone();
    let names: Vec<String> = rows(
        &us,
        &format!(
            "SELECT last_name FROM {}.contacts ORDER BY id",
            tenant.schema_name
        ),
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(
        names,
        [
            "before", "between", "between", "between", "between", "after"
        ]
    );
    // Nothing of the killed runs is left behind.
    let eu = fleet.cluster("eu").unwrap().admin.database().clone();
    assert_eq!(
        rows(&eu, "SELECT count(*) FROM pg_replication_slots").await[0].get::<_, i64>(0),
        0
    );
    assert_eq!(
        rows(&eu, "SELECT count(*) FROM pg_publication").await[0].get::<_, i64>(0),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_longer_than_max_pause_backs_off_and_writes_resume() {
    let (app, fleet, t, _clusters) = fleet_with_tenant_on_eu().await;
    let tenant = atrium_services::tenants::find(&fleet, "acme")
        .await
        .unwrap();
    // Every attempt would hold writes past --max-pause: it gives up.
    let options = MoveOptions {
        max_pause: Duration::from_millis(300),
        attempts: 2,
        pause_stalls: vec![Duration::from_millis(400); 2],
        ..Default::default()
    };
    let failed = operator::move_tenant(&fleet, &tenant, "us", &options, &|_| {})
        .await
        .unwrap_err();
    assert!(
        failed
            .to_string()
            .contains("gave up after 2 cut-over attempts"),
        "{failed}"
    );
    let tenant = atrium_services::tenants::find(&fleet, "acme")
        .await
        .unwrap();
    assert_eq!(tenant.cluster, "eu");
    serves(&app, &t, "served").await;
    let record = send(
        app.platform(Method::GET, &format!("/platform/v1/tenants/{}/move", t.id)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(record["state"], "failed", "{record}");

    // Once only: the second attempt goes through.
    let options = MoveOptions {
        pause_stalls: vec![Duration::from_millis(2500)],
        ..Default::default()
    };
    let report = operator::move_tenant(&fleet, &tenant, "us", &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.cut_over_attempts, 2, "{report:?}");
    // The longest pause is the stalled attempt's, which gave up.
    assert!(report.longest_pause_ms >= 2500, "{report:?}");
    assert_eq!(
        atrium_services::tenants::find(&fleet, "acme")
            .await
            .unwrap()
            .cluster,
        "us"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_started_over_the_platform_api_runs_in_the_server_and_reports_its_state() {
    let (app, fleet, t, _clusters) = fleet_with_tenant_on_eu().await;
    let path = format!("/platform/v1/tenants/{}/move", t.id);
    send_problem(
        app.platform(Method::GET, &path),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for (body, field) in [
        (json!({"to": "eu"}), "to"),
        (json!({"to": "mars"}), "to"),
        (json!({"to": "us", "max_pause_ms": 10}), "max_pause_ms"),
    ] {
        send_invalid(app.platform(Method::POST, &path).json(&body), field).await;
    }
    let started = send(
        app.platform(Method::POST, &path).json(&json!({"to": "us"})),
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        (started["from"].as_str(), started["to"].as_str()),
        (Some("eu"), Some("us"))
    );
    assert!(
        [
            "preparing",
            "copying",
            "catching_up",
            "cutting_over",
            "done"
        ]
        .contains(&started["state"].as_str().unwrap()),
        "{started}"
    );
    // While it runs, another is refused.
    if started["state"] != "done" {
        let again = app
            .platform(Method::POST, &path)
            .json(&json!({"to": "us"}))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(
                again.status(),
                StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
            ),
            "{}",
            again.status()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let state = send(app.platform(Method::GET, &path), StatusCode::OK).await;
        if state["state"] == "done" || state["state"] == "failed" {
            break state;
        }
        assert!(std::time::Instant::now() < deadline, "{state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["result"]["verified"], true, "{done}");
    let tenant = send(
        app.platform(Method::GET, &format!("/platform/v1/tenants/{}", t.id)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(tenant["cluster"], "us");
    serves(&app, &t, "after").await;

    // A data cluster keeps its own spare schemas, and its new tenants
    // take them.
    let us = fleet.cluster("us").unwrap();
    assert_eq!(operator::refill_spares(&us.admin, 1).await.unwrap(), 1);
    let created = send(
        app.platform(Method::POST, "/platform/v1/tenants")
            .json(&json!({
                "name": "Spare", "subdomain": "spare", "cluster": "us",
                "admin": {"email": "a@spare.example", "first_name": "A",
                          "last_name": "B", "password": ADMIN_PASSWORD},
            })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["cluster"], "us");
    let left = rows(
        us.admin.database(),
        "SELECT count(*) FROM public.spare_schemas",
    )
    .await;
    assert_eq!(left[0].get::<_, i64>(0), 0, "the new tenant took the spare");
    app.login("spare", "a@spare.example", ADMIN_PASSWORD).await;
}
