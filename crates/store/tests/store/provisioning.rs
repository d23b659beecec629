use atrium_store::StoreError;
use atrium_store::registry;
use atrium_store::registry::naming::tenant_role_name;
use atrium_testkit::migrated_database;

use crate::helpers::{FAKE_HASH, new_tenant, new_tenant_with_hash, scalar_i64, sql};

#[tokio::test]
async fn two_tenants_get_their_own_id_sequences_and_real_foreign_keys() {
    let t = migrated_database().await;
    let a = new_tenant(&t.db, "alpha").await;
    let b = new_tenant(&t.db, "bravo").await;
    assert_eq!(
        (a.schema_name.as_str(), b.schema_name.as_str()),
        ("tenant_1", "tenant_2")
    );
    for tenant in [&a, &b] {
        let s = &tenant.schema_name;
        let id = scalar_i64(
            &t.db,
            &format!("INSERT INTO {s}.companies (name, created_by) VALUES ('Initech', 1) RETURNING id::bigint"),
        )
        .await;
        assert_eq!(id, 1, "each schema's companies start at 1");
        let admin_id = scalar_i64(&t.db, &format!("SELECT min(id)::bigint FROM {s}.users")).await;
        assert_eq!(admin_id, 1);
    }
    // A foreign key points into the tenant's own schema: company 2 exists
    // nowhere, and tenant_1's contact cannot reference tenant_2's rows.
    let err =
        t.db.connection()
            .await
            .unwrap()
            .batch_execute(
                "INSERT INTO tenant_1.contacts (first_name, last_name, company_id, created_by)
             VALUES ('A', 'B', 2, 1)",
            )
            .await
            .unwrap_err();
    assert_eq!(
        err.as_db_error().unwrap().constraint(),
        Some("contacts_company_id_fkey")
    );
}

#[tokio::test]
async fn a_new_tenant_starts_with_the_default_pipeline_and_one_admin() {
    let t = migrated_database().await;
    let tenant = new_tenant(&t.db, "acme").await;
    let rows = t
        .db
        .connection()
        .await
        .unwrap()
        .query(
            "SELECT name, probability::int, kind FROM tenant_1.pipeline_stages ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    let stages: Vec<(String, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stages,
        atrium_store::fleet::provision::DEFAULT_STAGES
            .iter()
            .map(|(n, p, k)| (n.to_string(), *p, k.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(tenant.counts.users, 1);
    assert_eq!(
        tenant.schema_version,
        atrium_store::fleet::migrate::latest_tenant_version()
    );
}

#[tokio::test]
async fn a_failure_after_the_schema_was_made_leaves_nothing_behind() {
    let t = migrated_database().await;
    // users.password_hash is VARCHAR(60): the last step of provisioning,
    // after the schema, role and migrations, fails.
    let too_long = format!("{FAKE_HASH}xxxxxx");
    let err = new_tenant_with_hash(&t.db, "doomed", &too_long)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)));
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM public.tenants").await,
        0
    );
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM public.tenant_counters").await,
        0
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"
        )
        .await,
        0
    );
    let session = t.db.connection().await.unwrap();
    let prefix = registry::role_prefix(&session).await.unwrap();
    let role = tenant_role_name(&prefix, 1);
    let roles = session
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap();
    assert!(roles.is_empty(), "role {role} was left behind");
    // And the same subdomain provisions cleanly afterwards.
    new_tenant(&t.db, "doomed").await;
}

#[tokio::test]
async fn a_taken_subdomain_is_a_conflict_and_writes_nothing() {
    let t = migrated_database().await;
    new_tenant(&t.db, "acme").await;
    let err = new_tenant_with_hash(&t.db, "acme", FAKE_HASH)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        scalar_i64(&t.db, "SELECT count(*) FROM public.tenants").await,
        1
    );
    assert_eq!(
        scalar_i64(
            &t.db,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn two_databases_on_one_server_each_hold_a_tenant_1_without_a_role_clash() {
    let first = migrated_database().await;
    let second = migrated_database().await;
    let a = new_tenant(&first.db, "acme").await;
    let b = new_tenant(&second.db, "acme").await;
    assert_eq!((a.id, b.id), (1, 1));
    let prefix = |db: &atrium_store::Database| {
        let db = db.clone();
        async move {
            registry::role_prefix(&db.connection().await.unwrap())
                .await
                .unwrap()
        }
    };
    assert_ne!(prefix(&first.db).await, prefix(&second.db).await);
}

#[tokio::test]
async fn a_tenant_role_reaches_its_own_schema_only() {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    new_tenant(&t.db, "bravo").await;
    let session = t.db.connection().await.unwrap();
    let role = tenant_role_name(&registry::role_prefix(&session).await.unwrap(), 1);
    session
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('role', '{role}', true), set_config('search_path', 'tenant_1, extensions', true)"
        ))
        .await
        .unwrap();
    let own = session.query("SELECT id FROM users", &[]).await.unwrap();
    assert_eq!(own.len(), 1);
    let denied = session
        .query("SELECT id FROM tenant_2.users", &[])
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    session.batch_execute("ROLLBACK").await.unwrap();
    for forbidden in [
        "DROP TABLE tenant_1.contacts",
        "ALTER TABLE tenant_1.contacts ADD COLUMN x int",
        "SELECT count(*) FROM tenant_1.schema_migrations",
        "UPDATE public.tenants SET name = 'x'",
    ] {
        session
            .batch_execute(&format!("BEGIN; SET LOCAL role = '{role}'"))
            .await
            .unwrap();
        let err = session.batch_execute(forbidden).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{forbidden}: {err:?}"
        );
        session.batch_execute("ROLLBACK").await.unwrap();
    }
    sql(&t.db, "SELECT 1").await;
}
