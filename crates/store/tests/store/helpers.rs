use atrium_domain::{Email, Subdomain, Tier};
use atrium_store::AdminDatabase;
use atrium_store::Database;
use atrium_store::fleet::migrate::{MigrationFile, MigrationSets};
use atrium_store::fleet::provision::{FirstAdmin, NewTenant, provision};
use atrium_store::registry::TenantEntry;

/// A bcrypt-shaped hash: tests of the store need no real hashing.
pub const FAKE_HASH: &str = "$2b$10$abcdefghijklmnopqrstuuQ7ZCsHVm4mQmQmQmQmQmQmQmQmQmQm0";

pub async fn new_tenant(db: &Database, subdomain: &str) -> TenantEntry {
    new_tenant_with_hash(db, subdomain, FAKE_HASH)
        .await
        .expect("provisioning")
}

pub async fn new_tenant_with_hash(
    db: &Database,
    subdomain: &str,
    password_hash: &str,
) -> Result<TenantEntry, atrium_store::StoreError> {
    let subdomain = Subdomain::parse(subdomain).unwrap();
    let email = Email::parse(&format!("admin@{subdomain}.example")).unwrap();
    let admin = AdminDatabase::new(db.clone());
    provision(
        &admin,
        atrium_store::Fleet::single(db.clone(), admin.clone()).home(),
        &NewTenant {
            name: "Test Org",
            subdomain: &subdomain,
            tier: Tier::Small,
            admin: FirstAdmin {
                email: &email,
                first_name: "Ada",
                last_name: "Admin",
                password_hash,
            },
        },
    )
    .await
    .map(|(tenant, _)| tenant)
}

/// Runs SQL as the test's superuser session (for setting up and checking
/// what the application itself may not do).
pub async fn sql(db: &Database, statements: &str) {
    db.connection()
        .await
        .unwrap()
        .batch_execute(statements)
        .await
        .unwrap_or_else(|e| panic!("{statements}: {e:?}"));
}

pub async fn scalar_i64(db: &Database, query: &str) -> i64 {
    db.connection()
        .await
        .unwrap()
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e:?}"))
        .get(0)
}

/// The embedded sets plus one more tenant migration.
pub fn with_extra_tenant_migration(sql: &'static str) -> MigrationSets {
    let embedded = MigrationSets::embedded();
    let mut tenant: Vec<MigrationFile> = embedded
        .tenant
        .iter()
        .map(|f| MigrationFile { ..*f })
        .collect();
    tenant.push(MigrationFile {
        version: embedded.latest_tenant_version() + 1,
        name: "extra",
        sql,
    });
    MigrationSets {
        control: embedded.control,
        tenant: Vec::leak(tenant),
    }
}

/// Polls `check` until it holds, for up to 5 seconds; whether it did.
pub async fn wait_for(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// Whether some session of this database waits for an advisory lock.
pub async fn someone_waits_for_an_advisory_lock(db: &Database) -> bool {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
    )
    .await
        > 0
}

/// Whether no other session of this database is inside a transaction:
/// work that was cut off has been rolled back (or committed) by now.
pub async fn nothing_in_flight(db: &Database) -> bool {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND xact_start IS NOT NULL",
    )
    .await
        == 0
}
