use tokio_postgres::error::SqlState;

use atrium_store::fleet::roles;
use atrium_store::registry::naming::tenant_role_name;
use atrium_store::{Database, registry};
use atrium_testkit::migrated_database;

use crate::helpers::new_tenant;

async fn refused(db: &Database, sql: &str) {
    let session = db.connection().await.unwrap();
    let err = session.batch_execute(sql).await.expect_err(sql);
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {err:?}"
    );
}

async fn allowed(db: &Database, sql: &str) {
    let session = db.connection().await.unwrap();
    session
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

#[tokio::test]
async fn the_application_login_reaches_tenant_data_only_through_tenant_roles_and_readonly_writes_nothing()
 {
    let t = migrated_database().await;
    new_tenant(&t.db, "alpha").await;
    let report = roles::ensure(&t.admin).await.unwrap();
    assert_eq!(report.tenant_roles_granted, 1);
    // A tenant made after `db roles` is granted at provisioning.
    new_tenant(&t.db, "bravo").await;
    let prefix = registry::role_prefix(&t.db.connection().await.unwrap())
        .await
        .unwrap();

    let app = t.db.as_user(roles::APPLICATION, 2).await.unwrap();
    assert_eq!(
        roles::excess_privileges(&app).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(
        !roles::excess_privileges(&t.db).await.unwrap().is_empty(),
        "the test login is a superuser"
    );
    refused(&app, "CREATE TABLE public.sneaky (id int)").await;
    refused(&app, "CREATE TABLE tenant_1.sneaky (id int)").await;
    refused(&app, "ALTER TABLE tenant_1.users ADD COLUMN x int").await;
    refused(&app, "DROP TABLE tenant_2.contacts").await;
    refused(&app, "SELECT count(*) FROM tenant_1.users").await;
    refused(&app, "UPDATE public.tenants SET name = 'x'").await;
    allowed(&app, "SELECT count(*) FROM public.tenants").await;
    for (id, schema) in [(1, "tenant_1"), (2, "tenant_2")] {
        let role = tenant_role_name(&prefix, id);
        allowed(
            &app,
            &format!(
                "BEGIN; SET LOCAL ROLE \"{role}\"; SELECT count(*) FROM {schema}.users; ROLLBACK"
            ),
        )
        .await;
    }
    // As tenant 1's role, tenant 2 stays out of reach.
    let role = tenant_role_name(&prefix, 1);
    let session = app.connection().await.unwrap();
    session
        .batch_execute(&format!("BEGIN; SET LOCAL ROLE \"{role}\""))
        .await
        .unwrap();
    let err = session
        .batch_execute("SELECT count(*) FROM tenant_2.users")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    session.batch_execute("ROLLBACK").await.unwrap();
    // What the tenant roles do not stop: SQL that switches role itself.
    // The application login is a member of every tenant role, so injected
    // SQL could call set_config('role', ...) and reach another tenant.
    // They guard against mistakes (a missing filter, a wrong search_path),
    // not against injection; parameterised SQL is what stops that.
    let other = tenant_role_name(&prefix, 2);
    session
        .batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE \"{role}\"; SELECT set_config('role', '{other}', true)"
        ))
        .await
        .unwrap();
    session
        .batch_execute("SELECT count(*) FROM tenant_2.users")
        .await
        .expect("a role switch inside the transaction reaches the other tenant");
    session.batch_execute("ROLLBACK").await.unwrap();

    let readonly = t.db.as_user(roles::READONLY, 2).await.unwrap();
    allowed(
        &readonly,
        "SELECT count(*) FROM tenant_1.users, tenant_2.deals, public.tenants",
    )
    .await;
    refused(
        &readonly,
        "INSERT INTO tenant_1.companies (name, created_by) VALUES ('x', 1)",
    )
    .await;
    refused(&readonly, "UPDATE public.tenants SET name = 'x'").await;
    refused(&readonly, "CREATE TABLE public.sneaky (id int)").await;

    // Running it again changes nothing and fails nothing.
    let again = roles::ensure(&t.admin).await.unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.tenant_roles_granted, 2);
}
