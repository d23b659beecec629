//! The operator's use cases over the fleet and the registry: what `atrium`
//! runs besides the tenant commands (`tenants.rs`). The command line calls
//! these, as the HTTP handlers call the rest of the services; it never
//! reaches into the store.

use atrium_store::fleet::migrate::MigrationSets;
use atrium_store::fleet::{check, migrate, observe, roles, spares, tenant_metrics};
use atrium_store::{AdminDatabase, Database, outbox, registry};

pub use atrium_store::fleet::check::CheckReport;
pub use atrium_store::fleet::migrate::{
    MigrateOptions, MigrateReport, MigrationError, MigrationStatus, TenantVersion,
};
pub use atrium_store::fleet::observe::{ConnectionGroup, IndexUsage, TenantIndexes};
pub use atrium_store::fleet::roles::{APPLICATION as APPLICATION_ROLE, RolesReport};
pub use atrium_store::fleet::tenant_metrics::TenantLoad;
pub use atrium_store::outbox::QueuedEmail;
pub use atrium_store::registry::Totals;

/// Brings the registry, `template` and every tenant to this program's
/// migrations; one tenant's failure is reported and the rest go on.
pub async fn migrate(
    admin: &AdminDatabase,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateReport, MigrationError> {
    migrate::migrate(admin, options, on_progress).await
}

pub async fn migration_status(db: &Database) -> anyhow::Result<MigrationStatus> {
    migrate::status(db).await
}

pub async fn tenant_versions(db: &Database) -> anyhow::Result<Vec<TenantVersion>> {
    migrate::tenant_versions(db).await
}

/// Whether the registry or `template` is behind this program: a server
/// without the rights to migrate refuses to start then.
pub async fn migrations_pending(db: &Database) -> anyhow::Result<bool> {
    migrate::pending_control_or_template(db).await
}

/// Every tenant and spare schema compared with `template`.
pub async fn check(admin: &AdminDatabase) -> anyhow::Result<CheckReport> {
    check::check(admin).await
}

/// The fleet's totals, from the registry's counters.
pub async fn totals(db: &Database) -> anyhow::Result<Totals> {
    registry::totals(db).await
}

/// The newest emails, queued or sent.
pub async fn outbox(db: &Database, limit: i64) -> anyhow::Result<Vec<QueuedEmail>> {
    outbox::list(db, limit).await
}

/// Creates (or brings up to date) the database roles of a production
/// install.
pub async fn ensure_roles(admin: &AdminDatabase) -> anyhow::Result<RolesReport> {
    roles::ensure(admin).await
}

/// What the application's login may do beyond what it needs; `serve`
/// refuses such a login unless told otherwise.
pub async fn excess_privileges(db: &Database) -> anyhow::Result<Vec<String>> {
    roles::excess_privileges(db).await
}

/// Makes spare schemas until `size` are ready; how many it made.
pub async fn refill_spares(admin: &AdminDatabase, size: usize) -> anyhow::Result<usize> {
    spares::refill(admin, &MigrationSets::embedded(), size).await
}

/// Keeps the spare pool full, as `serve` does: checks every ten seconds,
/// and one server at a time does the work.
pub async fn keep_spares(admin: AdminDatabase, size: usize) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        ticks.tick().await;
        match refill_spares(&admin, size).await {
            Ok(0) => {}
            Ok(made) => tracing::info!(made, "spare tenant schemas made"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "refilling spare schemas"),
        }
    }
}

/// The tenants with the most traffic over the last hour, across servers.
pub async fn busiest_tenants(db: &Database, limit: usize) -> anyhow::Result<Vec<TenantLoad>> {
    tenant_metrics::busiest(db, limit).await
}

pub async fn indexes_by_tenant(db: &Database) -> anyhow::Result<Vec<TenantIndexes>> {
    observe::indexes_by_tenant(db).await
}

pub async fn indexes_of(db: &Database, schema_name: &str) -> anyhow::Result<Vec<IndexUsage>> {
    observe::indexes_of(db, schema_name).await
}

pub async fn connections(db: &Database) -> anyhow::Result<Vec<ConnectionGroup>> {
    observe::connections(db).await
}

/// The key that seals queued emails: whether this process holds one, and
/// setting it from hex (`ATRIUM_SECRET_KEY`) or a file (the embedded
/// default keeps one in its data directory).
pub mod sealing {
    pub use atrium_store::outbox::{key_from_hex, key_in_file, seals, use_key};
}
