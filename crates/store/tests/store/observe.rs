//! `atrium top`, `indexes` and `connections` read what servers publish and
//! what PostgreSQL knows, by tenant.

use atrium_domain::latency::Histogram;
use atrium_store::TenantTx;
use atrium_store::fleet::observe;
use atrium_store::fleet::tenant_metrics::{Published, busiest, publish, withdraw};
use atrium_testkit::migrated_database;

use crate::helpers::{new_tenant, sql};

fn load(tenant_id: i32, requests: u64, latency_ms: f64) -> Published {
    let mut latency = Histogram::default();
    for _ in 0..requests {
        latency.record(latency_ms);
    }
    Published {
        tenant_id,
        requests,
        errors: requests / 10,
        db_time_ms: requests as f64 * 0.5,
        latency: latency.to_counts(),
        slow_statements: requests / 20,
    }
}

#[tokio::test]
async fn top_merges_every_live_server_and_orders_by_load() {
    let t = migrated_database().await;
    let a = new_tenant(&t.db, "alpha").await;
    let b = new_tenant(&t.db, "bravo").await;
    let c = new_tenant(&t.db, "charlie").await;
    publish(&t.db, "one", &[load(a.id, 30, 2.0), load(b.id, 50, 40.0)])
        .await
        .unwrap();
    publish(&t.db, "two", &[load(a.id, 40, 2.0)]).await.unwrap();
    // A server that stopped long ago without withdrawing.
    publish(&t.db, "dead", &[load(c.id, 1000, 1.0)])
        .await
        .unwrap();
    sql(
        &t.db,
        "UPDATE public.tenant_metrics SET reported_at = now() - interval '10 minutes' WHERE server_id = 'dead'",
    )
    .await;

    let top = busiest(&t.db, 10).await.unwrap();
    let order: Vec<(&str, u64, usize)> = top
        .iter()
        .map(|l| (l.subdomain.as_str(), l.requests, l.servers))
        .collect();
    assert_eq!(order, vec![("alpha", 70, 2), ("bravo", 50, 1)]);
    assert!(top[0].p99_ms < top[1].p50_ms, "{top:?}");
    assert_eq!(top[0].errors, 7);
    assert_eq!(top[0].slow_statements, 1 + 2, "each server's count, summed");
    assert_eq!(busiest(&t.db, 1).await.unwrap().len(), 1);

    // A server publishes its whole view: a tenant it no longer saw drops out.
    publish(&t.db, "one", &[load(a.id, 5, 2.0)]).await.unwrap();
    withdraw(&t.db, "two").await.unwrap();
    let top = busiest(&t.db, 10).await.unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!((top[0].subdomain.as_str(), top[0].requests), ("alpha", 5));
}

#[tokio::test]
async fn indexes_and_connections_are_grouped_by_tenant() {
    let t = migrated_database().await;
    let a = new_tenant(&t.db, "alpha").await;
    new_tenant(&t.db, "bravo").await;
    let by_tenant = observe::indexes_by_tenant(&t.db).await.unwrap();
    assert_eq!(by_tenant.len(), 2);
    assert!(by_tenant.iter().all(|i| i.indexes > 10 && i.bytes > 0));
    let alpha = observe::indexes_of(&t.db, &a.schema_name).await.unwrap();
    let pkey = alpha.iter().find(|i| i.index == "contacts_pkey").unwrap();
    assert!(pkey.enforces && !pkey.unused);
    let never_used = alpha
        .iter()
        .find(|i| i.index == "idx_deals_expected_close")
        .unwrap();
    assert!(never_used.unused, "{never_used:?}");

    // A tenant transaction names its tenant in application_name.
    let directory = atrium_store::registry::directory::TenantDirectory::start(t.db.clone())
        .await
        .unwrap();
    let tenant = directory.resolve("alpha").await.unwrap().unwrap();
    let tx = TenantTx::begin(&t.db, &tenant, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    tx.query_raw_for_tests("SELECT 1").await.unwrap();
    let groups = observe::connections(&t.db).await.unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g.tenant.as_deref() == Some("alpha") && g.connections >= 1),
        "{groups:?}"
    );
    tx.rollback().await.unwrap();
}
