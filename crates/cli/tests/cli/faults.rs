//! Work killed half-way leaves nothing half-done.

use std::time::Duration;

use atrium_store::Database;
use atrium_testkit::migrated_database;

use crate::helpers::{atrium, command};

/// Registry rows, schemas and tenant roles must match one to one.
/// Sessions of this database, other than this one, inside a transaction.
async fn in_flight(db: &Database) -> i64 {
    db.connection()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND xact_start IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn assert_whole(db: &Database) -> i64 {
    let session = db.connection().await.unwrap();
    let row = session
        .query_one(
            "SELECT
               (SELECT count(*) FROM public.tenants),
               (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'),
               (SELECT count(*) FROM pg_roles
                 WHERE rolname LIKE (SELECT role_prefix FROM public.installation) || '\\_tenant\\_%'),
               (SELECT count(*) FROM public.tenants t
                 WHERE NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = t.schema_name)),
               (SELECT count(*) FROM public.tenant_counters)",
            &[],
        )
        .await
        .unwrap();
    let (rows, schemas, roles, missing, counters): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!((schemas, roles, missing, counters), (rows, rows, 0, rows));
    rows
}

#[tokio::test]
async fn a_provisioning_killed_at_any_moment_leaves_a_whole_tenant_or_nothing() {
    let t = migrated_database().await;
    let mut created = 0;
    for (attempt, delay_ms) in [5u64, 40, 80, 120, 160, 200, 260, 330].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let subdomain = format!("killed-{attempt}");
        let mut child = command(dir.path())
            .env("ATRIUM_DATABASE_URL", &t.url)
            .args([
                "tenant",
                "create",
                "--name",
                "Killed",
                "--subdomain",
                &subdomain,
                "--admin-email",
                "a@killed.example",
                "--admin-password",
                "a-long-password",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
        let _ = child.kill();
        let finished = child.wait().unwrap().success();
        // The server notices the dropped connection and rolls back.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while in_flight(&t.db).await > 0 {
            assert!(std::time::Instant::now() < deadline, "never rolled back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rows = assert_whole(&t.db).await;
        created += i64::from(finished);
        assert!(rows >= created, "a tenant the command reported is there");
    }
    // A rerun for a name a killed run may have taken either creates it or
    // says it is taken; never a half-made tenant.
    let again = atrium(
        &t.url,
        &[
            "tenant",
            "create",
            "--name",
            "Again",
            "--subdomain",
            "killed-0",
            "--admin-email",
            "a@killed.example",
            "--admin-password",
            "a-long-password",
        ],
    );
    assert!(matches!(again.status.code(), Some(0 | 1)));
    assert_whole(&t.db).await;
}
