use std::time::{Duration, Instant};

use atrium_domain::TenantStatus;
use atrium_store::AdminDatabase;
use atrium_store::registry::directory::TenantDirectory;
use atrium_store::registry::{self, TenantChanges};
use atrium_store::{CONNECTION_CAP_WAIT, StoreError, TenantTx};
use atrium_testkit::migrated_database;

use crate::helpers::{new_tenant, wait_for};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_tenant_at_its_connection_limit_waits_then_is_busy_while_others_proceed() {
    let t = migrated_database().await;
    let db = t.db.resized(16).await.unwrap();
    new_tenant(&db, "noisy").await;
    new_tenant(&db, "quiet").await;
    let directory = TenantDirectory::start(db.clone()).await.unwrap();
    let noisy = directory.resolve("noisy").await.unwrap().unwrap();
    let quiet = directory.resolve("quiet").await.unwrap().unwrap();
    let limit = noisy.tier.connection_limit();
    let mut held = Vec::new();
    for _ in 0..limit {
        held.push(TenantTx::begin(&db, &noisy, TIMEOUT).await.unwrap());
    }
    let started = Instant::now();
    let refused = TenantTx::begin(&db, &noisy, TIMEOUT).await;
    assert!(
        matches!(refused, Err(StoreError::Busy)),
        "the next one is refused"
    );
    assert!(
        started.elapsed() >= CONNECTION_CAP_WAIT,
        "after waiting briefly"
    );
    let other = TenantTx::begin(&db, &quiet, TIMEOUT)
        .await
        .expect("another tenant is unaffected");
    other.commit().await.unwrap();
    // A slot freed is a slot available.
    held.pop().unwrap().commit().await.unwrap();
    TenantTx::begin(&db, &noisy, TIMEOUT)
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_change_made_elsewhere_reaches_the_cache_through_notify() {
    let t = migrated_database().await;
    let tenant = new_tenant(&t.db, "acme").await;
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    assert!(wait_for(async || directory.is_listening()).await);
    let cached = directory.resolve("acme").await.unwrap().unwrap();
    assert_eq!(cached.status, TenantStatus::Active);
    // Another process (another pool) suspends and renames the tenant.
    let other = t.db.resized(2).await.unwrap();
    let changes = TenantChanges {
        status: Some(TenantStatus::Suspended),
        ..Default::default()
    };
    registry::update(&AdminDatabase::new(other.clone()), tenant.id, &changes)
        .await
        .unwrap();
    assert!(
        wait_for(
            async || directory.resolve("acme").await.unwrap().unwrap().status
                == TenantStatus::Suspended
        )
        .await,
        "the suspension is seen"
    );
    let rename = TenantChanges {
        subdomain: Some(atrium_domain::Subdomain::parse("acme-corp").unwrap()),
        ..Default::default()
    };
    registry::update(&AdminDatabase::new(other.clone()), tenant.id, &rename)
        .await
        .unwrap();
    assert!(wait_for(async || directory.resolve("acme").await.unwrap().is_none()).await);
    assert!(directory.resolve("acme-corp").await.unwrap().is_some());
}

#[tokio::test]
async fn when_the_listener_connection_drops_the_cache_is_not_trusted_until_it_is_back() {
    let t = migrated_database().await;
    let tenant = new_tenant(&t.db, "acme").await;
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    assert!(wait_for(async || directory.is_listening()).await);
    directory.resolve("acme").await.unwrap();
    let session = t.db.connection().await.unwrap();
    let killed: i64 = session
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
            &[&atrium_store::registry::directory::LISTENER_APPLICATION],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the listener's session was found and ended");
    // Changed while nobody listens: no notification will ever arrive.
    registry::update(
        &t.admin,
        tenant.id,
        &TenantChanges {
            status: Some(TenantStatus::Suspended),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        wait_for(
            async || directory.resolve("acme").await.unwrap().unwrap().status
                == TenantStatus::Suspended
        )
        .await,
        "the stale entry was not trusted"
    );
    assert!(
        wait_for(async || directory.is_listening()).await,
        "the listener came back"
    );
}

#[tokio::test]
async fn a_listener_that_stops_answering_is_no_longer_trusted() {
    let t = migrated_database().await;
    new_tenant(&t.db, "acme").await;
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    assert!(wait_for(async || directory.is_listening()).await);
    let pid: i32 =
        t.db.connection()
            .await
            .unwrap()
            .query_one(
                "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
                &[&atrium_store::registry::directory::LISTENER_APPLICATION],
            )
            .await
            .unwrap()
            .get(0);
    // A stopped backend keeps its connection open but answers nothing:
    // what a half-open connection looks like from this side.
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let started = Instant::now();
    let noticed = async {
        while directory.is_listening() && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        !directory.is_listening()
    }
    .await;
    signal("-CONT");
    assert!(noticed, "the silent listener was still trusted after 20 s");
    assert!(
        wait_for(async || directory.is_listening()).await,
        "the listener came back"
    );
}

#[tokio::test]
async fn a_session_that_served_enough_tenants_is_retired() {
    let t = migrated_database().await;
    for name in ["alpha", "bravo", "charlie"] {
        new_tenant(&t.db, name).await;
    }
    let limits = atrium_store::ConnectionLimits {
        max_tenants: 2,
        max_age: Duration::from_secs(3600),
    };
    let db = t.db.with_session_limits(1, limits).await.unwrap();
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    let mut backends = Vec::new();
    for name in ["alpha", "alpha", "bravo", "charlie"] {
        let tenant = directory.resolve(name).await.unwrap().unwrap();
        let tx = TenantTx::begin(&db, &tenant, TIMEOUT).await.unwrap();
        let pid: i32 = tx
            .query_raw_for_tests("SELECT pg_backend_pid()")
            .await
            .unwrap()[0]
            .get(0);
        backends.push(pid);
        tx.commit().await.unwrap();
    }
    assert_eq!(
        backends[0], backends[1],
        "the same tenant again: same session"
    );
    assert_eq!(
        backends[1], backends[2],
        "a second tenant: still the same session"
    );
    assert_ne!(
        backends[2], backends[3],
        "after two tenants the session was retired"
    );
}

#[tokio::test]
async fn a_session_past_its_age_is_retired() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    let limits = atrium_store::ConnectionLimits {
        max_tenants: 100,
        max_age: Duration::from_millis(400),
    };
    let db = t.db.with_session_limits(1, limits).await.unwrap();
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    let alpha = directory.resolve("alpha").await.unwrap().unwrap();
    let backend = async || -> i32 {
        let tx = TenantTx::begin(&db, &alpha, TIMEOUT).await.unwrap();
        let pid = tx
            .query_raw_for_tests("SELECT pg_backend_pid()")
            .await
            .unwrap()[0]
            .get(0);
        tx.commit().await.unwrap();
        pid
    };
    let first = backend().await;
    // Past the age (at most `max_age`), the next borrower gets a new one.
    assert!(
        wait_for(async || backend().await != first).await,
        "an old connection is not reused"
    );
    assert_eq!(db.activity().connections_retired, 1);
}

#[tokio::test]
async fn each_tenant_keeps_to_its_lane_and_overflows_when_the_lane_is_busy() {
    let t = migrated_database().await;
    for name in ["alpha", "bravo"] {
        new_tenant(&t.db, name).await;
    }
    // Eight sessions: two shared, six single-session lanes.
    let db = t.db.resized(8).await.unwrap();
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    let alpha = directory.resolve("alpha").await.unwrap().unwrap();
    let bravo = directory.resolve("bravo").await.unwrap().unwrap();
    async fn backend(tx: &TenantTx) -> i32 {
        tx.query_raw_for_tests("SELECT pg_backend_pid()")
            .await
            .unwrap()[0]
            .get(0)
    }
    let mut seen = Vec::new();
    for tenant in [&alpha, &bravo, &alpha, &bravo, &alpha] {
        let tx = TenantTx::begin(&db, tenant, TIMEOUT).await.unwrap();
        seen.push(backend(&tx).await);
        tx.commit().await.unwrap();
    }
    assert_eq!(seen[0], seen[2], "alpha comes back to its backend");
    assert_eq!(seen[2], seen[4], "alpha comes back to its backend");
    assert_eq!(seen[1], seen[3], "bravo comes back to its backend");
    assert_ne!(seen[0], seen[1], "alpha and bravo have lanes of their own");

    let holding = TenantTx::begin(&db, &alpha, TIMEOUT).await.unwrap();
    assert_eq!(backend(&holding).await, seen[0]);
    let overflow = TenantTx::begin(&db, &alpha, TIMEOUT).await.unwrap();
    let other = backend(&overflow).await;
    assert_ne!(other, seen[0], "a busy lane does not make the tenant wait");
    overflow.commit().await.unwrap();
    holding.commit().await.unwrap();
    assert_eq!(db.status().max_size, 8, "lanes count towards the pool size");

    // What the pool reports to the operator (`/metrics`).
    use atrium_store::TenantConnectionSource::{Lane, OtherLane, Shared};
    let activity = db.activity();
    assert_eq!(activity.tenant_connections_from(Lane), 6);
    assert_eq!(activity.tenant_connections_from(Shared), 1, "the overflow");
    assert_eq!(activity.tenant_connections_from(OtherLane), 0);
    assert_eq!(
        activity.first_visits, 3,
        "alpha and bravo on their lanes, alpha on the shared session"
    );
    assert_eq!(
        activity.connections_opened, 3,
        "two lanes and the shared session the version check opened"
    );
    assert_eq!(activity.connections_retired, 0);
}

#[tokio::test]
async fn a_session_that_made_enough_schemas_is_retired() {
    let t = migrated_database().await;
    let db =
        t.db.named("schema-maker", 2, Default::default())
            .await
            .unwrap();
    let backends = async || -> Vec<i32> {
        t.db.connection()
            .await
            .unwrap()
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'schema-maker'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let made = atrium_store::CONNECTION_MAX_SCHEMAS_CREATED;
    for i in 1..made {
        new_tenant(&db, &format!("maker-{i}")).await;
    }
    let before = backends().await;
    assert_eq!(before.len(), 1, "one at a time: one session did it all");
    assert_eq!(db.activity().connections_retired, 0);
    // The last schema it may make; the registry read that follows the
    // commit already gets a fresh session.
    new_tenant(&db, "one-more").await;
    assert_eq!(db.activity().connections_retired, 1);
    // The retired backend may take a moment to leave pg_stat_activity.
    let after = backends().await;
    assert!(
        after.iter().any(|pid| !before.contains(pid)),
        "after {made} schemas the session was closed and replaced"
    );
}

#[tokio::test]
async fn the_process_that_changes_a_tenant_forgets_its_cached_entry_without_waiting_for_notify() {
    let t = migrated_database().await;
    let tenant = new_tenant(&t.db, "alpha").await;
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !directory.is_listening() {
        assert!(Instant::now() < deadline, "the listener never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(directory.resolve("alpha").await.unwrap().is_some());
    // A change whose notification has not arrived (here: none is sent).
    let session = t.db.connection().await.unwrap();
    session
        .batch_execute(
            "ALTER TABLE public.tenants DISABLE TRIGGER USER;
             UPDATE public.tenants SET subdomain = 'omega' WHERE subdomain = 'alpha';
             ALTER TABLE public.tenants ENABLE TRIGGER USER;",
        )
        .await
        .unwrap();
    assert!(
        directory.resolve("alpha").await.unwrap().is_some(),
        "still cached: only the notification or forget() drops it"
    );
    directory.forget(tenant.id);
    assert!(directory.resolve("alpha").await.unwrap().is_none());
    assert_eq!(
        directory.resolve("omega").await.unwrap().unwrap().id,
        tenant.id
    );
}
