use std::time::Duration;

use atrium_store::fleet::check::check;
use atrium_store::fleet::migrate::{
    self, MIGRATION_LOCK_KEY, MigrateOptions, MigrationError, MigrationFile, MigrationSets,
};
use atrium_testkit::migrated_database;

use crate::helpers::{
    new_tenant, nothing_in_flight, scalar_i64, someone_waits_for_an_advisory_lock, sql, wait_for,
    with_extra_tenant_migration,
};

fn options() -> MigrateOptions {
    MigrateOptions {
        jobs: 2,
        ..Default::default()
    }
}

#[tokio::test]
async fn one_broken_tenant_fails_alone_and_a_rerun_after_the_fix_completes() {
    let t = migrated_database().await;
    for sub in ["alpha", "bravo", "charlie"] {
        new_tenant(&t.db, sub).await;
    }
    // Someone added the column to bravo by hand: the next migration collides.
    sql(
        &t.db,
        "ALTER TABLE tenant_2.contacts ADD COLUMN linkedin_url TEXT",
    )
    .await;
    let sets =
        with_extra_tenant_migration("ALTER TABLE contacts ADD COLUMN linkedin_url VARCHAR(255);");
    let next = sets.latest_tenant_version();

    let report = migrate::migrate_sets(&t.admin, sets, &options(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.tenants_migrated, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].subdomain, "bravo");
    assert!(
        report.failures[0].error.contains("linkedin_url"),
        "{}",
        report.failures[0].error
    );
    let at_next = scalar_i64(
        &t.db,
        &format!("SELECT count(*) FROM public.tenants WHERE schema_version = {next}"),
    )
    .await;
    assert_eq!(at_next, 2);
    // The failed tenant is wholly at the old version: no half-applied file.
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM tenant_2.schema_migrations").await,
        (next - 1) as i64
    );

    sql(
        &t.db,
        "ALTER TABLE tenant_2.contacts DROP COLUMN linkedin_url",
    )
    .await;
    let rerun = migrate::migrate_sets(&t.admin, sets, &options(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!((rerun.tenants_migrated, rerun.failures.len()), (1, 0));
    assert_eq!(
        scalar_i64(
            &t.db,
            &format!("SELECT count(*) FROM public.tenants WHERE schema_version = {next}")
        )
        .await,
        3
    );
    // And the migrated schemas match the template again.
    assert!(check(&t.admin).await.unwrap().drifted.is_empty());
}

#[tokio::test]
async fn a_second_migrator_is_refused_while_one_holds_the_lock() {
    let t = migrated_database().await;
    let holder = t.db.dedicated_connection().await.unwrap();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();
    let err = migrate::migrate(&t.admin, &options(), &|_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MigrationError::Locked), "{err:?}");

    // A waiting migrator (what `serve` does) goes ahead once the lock is free.
    let db = t.admin.clone();
    let waiting = tokio::spawn(async move {
        let opts = MigrateOptions {
            wait_for_lock: true,
            ..Default::default()
        };
        migrate::migrate(&db, &opts, &|_, _| {}).await
    });
    assert!(
        wait_for(async || someone_waits_for_an_advisory_lock(&t.db).await).await,
        "the second migrator never waited for the lock"
    );
    assert!(
        !waiting.is_finished(),
        "the waiting migrator ran while the lock was held"
    );
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_edited_applied_migration_is_detected() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    let embedded = MigrationSets::embedded();
    let edited: Vec<MigrationFile> = embedded
        .tenant
        .iter()
        .map(|f| MigrationFile {
            sql: Box::leak(format!("{}\n-- edited\n", f.sql).into_boxed_str()),
            ..*f
        })
        .collect();
    let sets = MigrationSets {
        control: embedded.control,
        tenant: Vec::leak(edited),
    };
    let err = migrate::migrate_sets(&t.admin, sets, &options(), &|_, _| {})
        .await
        .unwrap_err();
    match err {
        MigrationError::Edited {
            schema, version, ..
        } => {
            assert_eq!((schema.as_str(), version), ("template", 1));
        }
        other => panic!("expected an edited-file error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_database_newer_than_the_program_is_refused() {
    let t = migrated_database().await;
    let sets = with_extra_tenant_migration("SELECT 1;");
    migrate::migrate_sets(&t.admin, sets, &options(), &|_, _| {})
        .await
        .unwrap();
    let err = migrate::migrate(&t.admin, &options(), &|_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MigrationError::Unknown { .. }), "{err:?}");
}

#[tokio::test]
async fn nothing_pending_costs_the_same_queries_whatever_the_tenant_count() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    let one = migrate::migrate(&t.admin, &options(), &|_, _| {})
        .await
        .unwrap();
    for i in 0..5 {
        new_tenant(&t.db, &format!("tenant-{i}")).await;
    }
    let six = migrate::migrate(&t.admin, &options(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(one.tenants_migrated + six.tenants_migrated, 0);
    assert_eq!(one.queries, six.queries);
}

#[tokio::test]
async fn a_migration_waiting_on_a_busy_table_retries_instead_of_blocking_it() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    // A long request holds a lock on contacts for a moment.
    let blocker = t.db.dedicated_connection().await.unwrap();
    blocker
        .batch_execute("BEGIN; LOCK TABLE tenant_1.contacts IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let sets = with_extra_tenant_migration("ALTER TABLE contacts ADD COLUMN twitter VARCHAR(50);");
    let opts = MigrateOptions {
        lock_timeout: Duration::from_millis(50),
        ..options()
    };
    let db = t.admin.clone();
    let run =
        tokio::spawn(async move { migrate::migrate_sets(&db, sets, &opts, &|_, _| {}).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // While it retries, the table is not queued behind the migration.
    let reader = t.db.dedicated_connection().await.unwrap();
    reader
        .batch_execute("SET statement_timeout = 1000; SELECT count(*) FROM tenant_1.contacts")
        .await
        .expect("reads are not blocked by a waiting migration");
    blocker.batch_execute("COMMIT").await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.tenants_migrated, report.failures.len()), (1, 0));
}

#[tokio::test]
async fn check_reports_a_column_added_by_hand() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    new_tenant(&t.db, "bravo").await;
    assert!(check(&t.admin).await.unwrap().drifted.is_empty());
    sql(
        &t.db,
        "ALTER TABLE tenant_2.contacts ADD COLUMN shoe_size INTEGER",
    )
    .await;
    sql(&t.db, "DROP INDEX tenant_2.idx_deals_owner").await;
    let report = check(&t.admin).await.unwrap();
    assert_eq!(report.schemas_checked, 2);
    assert_eq!(report.drifted.len(), 1);
    let drift = &report.drifted[0];
    assert_eq!(drift.subdomain.as_deref(), Some("bravo"));
    assert!(
        drift
            .extra
            .iter()
            .any(|i| i == "column contacts.shoe_size integer"),
        "{drift:?}"
    );
    assert!(
        drift.missing.iter().any(|i| i.contains("idx_deals_owner")),
        "{drift:?}"
    );
}

/// Drift that points at another schema's objects: stored by OID, the
/// same numbers a healthy schema stores for its own, printed with the
/// other schema's name. Each must still be reported.
#[tokio::test]
async fn check_reports_definitions_that_point_into_another_schema() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    new_tenant(&t.db, "bravo").await;
    new_tenant(&t.db, "charlie").await;
    sql(
        &t.db,
        "ALTER TABLE tenant_2.deals DROP CONSTRAINT deals_owner_id_fkey;
         ALTER TABLE tenant_2.deals ADD CONSTRAINT deals_owner_id_fkey
             FOREIGN KEY (owner_id) REFERENCES tenant_1.users (id);
         ALTER TABLE tenant_3.companies ALTER COLUMN id
             SET DEFAULT nextval('tenant_1.companies_id_seq'::regclass);",
    )
    .await;
    let report = check(&t.admin).await.unwrap();
    let drifted: Vec<_> = report
        .drifted
        .iter()
        .map(|d| d.subdomain.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(drifted, ["bravo", "charlie"], "{report:?}");
    assert!(
        report.drifted[0]
            .extra
            .iter()
            .any(|i| i.contains("REFERENCES tenant_1.users")),
        "{report:?}"
    );
    assert!(
        report.drifted[1]
            .extra
            .iter()
            .any(|i| i.contains("tenant_1.companies_id_seq")),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_migration_stopped_half_way_leaves_whole_versions_and_a_rerun_finishes() {
    let t = migrated_database().await;
    for n in 0..24 {
        new_tenant(&t.db, &format!("tenant-{n}")).await;
    }
    // Slow enough per tenant to stop the run in the middle.
    let sets = with_extra_tenant_migration(
        "SELECT pg_sleep(0.1); ALTER TABLE contacts ADD COLUMN nickname VARCHAR(100);",
    );
    let next = sets.latest_tenant_version();
    let run = tokio::spawn({
        let db = t.admin.clone();
        async move {
            let _ = migrate::migrate_sets(&db, sets, &options(), &|_, _| {}).await;
        }
    });
    // Once the first tenants are done, stop it.
    for _ in 0..500 {
        let versions = migrate::tenant_versions(&t.db).await.unwrap();
        if versions.iter().any(|v| v.schema_version == next) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // As if the process were killed: its connections drop mid-transaction.
    run.abort();
    let _ = run.await;
    // Unlike a killed process, an aborted task leaves a batch it had queued
    // to be sent by the connection's own task, so one tenant's transaction
    // can still start after the abort: wait until none has been running for
    // a while, or the rerun would race it for that tenant.
    for _ in 0..2 {
        assert!(wait_for(async || nothing_in_flight(&t.db).await).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(nothing_in_flight(&t.db).await);

    let versions = migrate::tenant_versions(&t.db).await.unwrap();
    let done = versions.iter().filter(|v| v.schema_version == next).count();
    assert!(
        done > 0 && done < versions.len(),
        "stopped half-way: {done} of {} done",
        versions.len()
    );
    for v in &versions {
        let has_column = scalar_i64(
            &t.db,
            &format!(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = '{}.contacts'::regclass AND attname = 'nickname'",
                v.schema_name
            ),
        )
        .await;
        let recorded = scalar_i64(
            &t.db,
            &format!(
                "SELECT max(version)::bigint FROM {}.schema_migrations",
                v.schema_name
            ),
        )
        .await;
        assert_eq!(
            (has_column == 1, recorded),
            (v.schema_version == next, i64::from(v.schema_version)),
            "{} is at a whole version",
            v.subdomain
        );
    }

    let rerun = migrate::migrate_sets(&t.admin, sets, &options(), &|_, _| {})
        .await
        .unwrap();
    assert!(rerun.failures.is_empty(), "{:?}", rerun.failures);
    assert!(
        migrate::tenant_versions(&t.db)
            .await
            .unwrap()
            .iter()
            .all(|v| v.schema_version == next)
    );
}

#[tokio::test]
async fn one_tenant_is_migrated_alone_and_moving_tenants_are_skipped() {
    let t = migrated_database().await;
    for sub in ["alpha", "bravo", "charlie"] {
        new_tenant(&t.db, sub).await;
    }
    let sets = with_extra_tenant_migration("ALTER TABLE contacts ADD COLUMN nickname TEXT;");
    let next = sets.latest_tenant_version();
    let version_of = async |id: i32| {
        scalar_i64(
            &t.db,
            &format!("SELECT schema_version::bigint FROM public.tenants WHERE id = {id}"),
        )
        .await
    };
    // `migrate --tenant bravo`: the tenant taken out of service for it.
    let only = MigrateOptions {
        only_tenants: Some(vec![2]),
        ..options()
    };
    let report = migrate::migrate_sets(&t.admin, sets, &only, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.tenants_migrated, 1);
    assert_eq!(version_of(2).await, next as i64);
    assert_eq!(version_of(1).await, (next - 1) as i64);
    // A tenant being moved is left alone, and said so.
    let moving = MigrateOptions {
        skip_tenants: vec![3],
        ..options()
    };
    let report = migrate::migrate_sets(&t.admin, sets, &moving, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (report.tenants_migrated, report.skipped_moving.clone()),
        (1, vec![3])
    );
    assert_eq!(version_of(1).await, next as i64);
    assert_eq!(version_of(3).await, (next - 1) as i64);
}

#[tokio::test]
async fn a_rehearsal_times_each_pending_migration_and_names_its_locks_on_a_copy() {
    use atrium_store::fleet::migrate::rehearse::rehearse;
    let t = migrated_database().await;
    let tenant = new_tenant(&t.db, "alpha").await;
    let s = &tenant.schema_name;
    sql(
        &t.db,
        &format!(
            "INSERT INTO {s}.companies (name, created_by) SELECT 'Co ' || g, 1 FROM generate_series(1, 50) g;
             INSERT INTO {s}.contacts (first_name, last_name, email, company_id, created_by)
             SELECT 'F' || g, 'L' || g, 'c' || g || '@example.com', 1 + g % 50, 1
               FROM generate_series(1, 3000) g;"
        ),
    )
    .await;
    let state = async || {
        (
            scalar_i64(&t.db, &format!("SELECT count(*) FROM {s}.contacts")).await,
            scalar_i64(&t.db, &format!("SELECT count(*) FROM {s}.audit_events")).await,
            scalar_i64(&t.db, &format!("SELECT count(*) FROM {s}.schema_migrations")).await,
            scalar_i64(
                &t.db,
                "SELECT coalesce(sum(contacts), 0)::bigint FROM public.tenant_counters",
            )
            .await,
            scalar_i64(
                &t.db,
                &format!("SELECT count(*) FROM information_schema.columns WHERE table_schema = '{s}' AND column_name = 'rating'"),
            )
            .await,
        )
    };
    let before = state().await;
    let sets = with_extra_tenant_migration(
        "ALTER TABLE contacts ADD COLUMN rating INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX idx_contacts_rating ON contacts (rating);",
    );
    let rehearsal = rehearse(&t.db, tenant.id, s, tenant.schema_version, sets)
        .await
        .unwrap()
        .expect("one migration is pending");
    assert_eq!(rehearsal.to_version, sets.latest_tenant_version());
    assert!(rehearsal.rows_copied >= 3050, "{rehearsal:?}");
    assert_eq!(rehearsal.migrations.len(), 1, "{rehearsal:?}");
    let locks = &rehearsal.migrations[0].locks;
    let on_contacts = locks
        .iter()
        .find(|l| l.relation == "contacts" && l.mode == "AccessExclusiveLock")
        .unwrap_or_else(|| panic!("{locks:?}"));
    assert_eq!(on_contacts.blocks, "reads and writes");
    assert!(
        !locks
            .iter()
            .any(|l| l.relation.starts_with("rehearsal_") || l.relation == "idx_contacts_rating"),
        "only relations that existed before, named as the tenant's: {locks:?}"
    );
    assert_eq!(state().await, before, "the tenant is untouched");
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rehearsal%'"
        )
        .await,
        0,
        "the copy is dropped"
    );

    // A migration that fails on the copy is reported, and the copy dropped.
    let broken = with_extra_tenant_migration("ALTER TABLE no_such_table ADD COLUMN x INTEGER;");
    let error = rehearse(&t.db, tenant.id, s, tenant.schema_version, broken)
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("failed on the copy"),
        "{error:#}"
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rehearsal%'"
        )
        .await,
        0
    );
    // Nothing pending: nothing to rehearse.
    let none = rehearse(
        &t.db,
        tenant.id,
        s,
        tenant.schema_version,
        atrium_store::fleet::migrate::MigrationSets::embedded(),
    )
    .await
    .unwrap();
    assert!(none.is_none());
}
