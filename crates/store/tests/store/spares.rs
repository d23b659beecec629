//! The spare schema pool: provisioning renames a spare, `migrate` keeps
//! spares current, `check` covers them.

use std::time::Duration;

use atrium_store::TenantTx;
use atrium_store::fleet::check::check;
use atrium_store::fleet::migrate::{self, MigrateOptions, MigrationSets};
use atrium_store::fleet::spares;
use atrium_store::registry::directory::TenantDirectory;
use atrium_testkit::migrated_database;

use crate::helpers::{new_tenant, scalar_i64, with_extra_tenant_migration};

#[tokio::test]
async fn provisioning_takes_a_ready_spare_and_the_tenant_works_as_any_other() {
    let t = migrated_database().await;
    let sets = MigrationSets::embedded();
    assert_eq!(spares::refill(&t.admin, &sets, 2).await.unwrap(), 2);
    assert_eq!(
        spares::refill(&t.admin, &sets, 2).await.unwrap(),
        0,
        "already full"
    );
    let report = check(&t.admin).await.unwrap();
    assert!(report.drifted.is_empty());
    assert_eq!(
        (report.schemas_checked, report.spares_checked),
        (0, 2),
        "spares are counted apart from tenants"
    );

    let tenant = new_tenant(&t.db, "alpha").await;
    assert_eq!(spares::ready_count(&t.db).await.unwrap(), 1);
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'spare_1'"
        )
        .await,
        0,
        "spare_1 became the tenant's schema"
    );
    assert_eq!(tenant.schema_version, sets.latest_tenant_version());
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM tenant_1.pipeline_stages").await,
        6
    );
    // Through the tenant context, as a request would.
    let directory = TenantDirectory::start(t.db.clone()).await.unwrap();
    let context = directory.resolve("alpha").await.unwrap().unwrap();
    let tx = TenantTx::begin(&t.db, &context, Duration::from_secs(5))
        .await
        .unwrap();
    let rows = tx
        .query_raw_for_tests("SELECT email FROM users")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    tx.query_raw_for_tests(
        "INSERT INTO contacts (first_name, last_name, created_by) VALUES ('A', 'B', 1)",
    )
    .await
    .unwrap();
    assert!(
        tx.query_raw_for_tests("SELECT * FROM schema_migrations")
            .await
            .is_err(),
        "the migration history stays out of the tenant role's reach"
    );
    tx.rollback().await.unwrap();

    // The pool is empty after the second: the third takes the full path.
    new_tenant(&t.db, "bravo").await;
    new_tenant(&t.db, "charlie").await;
    assert_eq!(spares::ready_count(&t.db).await.unwrap(), 0);
    assert!(check(&t.admin).await.unwrap().drifted.is_empty());
}

#[tokio::test]
async fn concurrent_provisionings_take_different_spares() {
    let t = migrated_database().await;
    spares::refill(&t.admin, &MigrationSets::embedded(), 3)
        .await
        .unwrap();
    let made =
        futures::future::join_all(["one", "two", "three", "four"].map(|s| new_tenant(&t.db, s)))
            .await;
    assert_eq!(made.len(), 4);
    assert_eq!(spares::ready_count(&t.db).await.unwrap(), 0);
    assert!(check(&t.admin).await.unwrap().drifted.is_empty());
}

#[tokio::test]
async fn migrate_keeps_spares_at_the_newest_version_and_refill_drops_the_rest() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    spares::refill(&t.admin, &MigrationSets::embedded(), 2)
        .await
        .unwrap();
    let sets = with_extra_tenant_migration("ALTER TABLE contacts ADD COLUMN nickname TEXT;");
    let report = migrate::migrate_sets(&t.admin, sets, &MigrateOptions::default(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!((report.tenants_migrated, report.spares_migrated), (1, 2));
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM public.spare_schemas WHERE schema_version = {}",
                sets.latest_tenant_version()
            )
        )
        .await,
        2
    );
    assert!(check(&t.admin).await.unwrap().drifted.is_empty());
    // Asked for one spare of the older version's kind, the pool drops both
    // (they are newer than this program) and makes one it can use.
    spares::refill(&t.admin, &MigrationSets::embedded(), 1)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM public.spare_schemas").await,
        1
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'spare\\_%'"
        )
        .await,
        1
    );
}
