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

/// A data cluster as `atrium cluster list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterView {
    #[serde(flatten)]
    pub entry: registry::clusters::ClusterEntry,
    /// Whether this process knows where it is: the home database
    /// (`default`), or declared in its settings.
    pub declared: bool,
    /// Whether this process reached it.
    pub reachable: bool,
    /// PostgreSQL's `server_version`, when reached.
    pub version: Option<String>,
    /// The database's size in bytes, when reached.
    pub size_bytes: Option<i64>,
}

/// Where a declared cluster is (a URL with its secret: never stored).
pub struct ClusterAddress {
    pub name: String,
    pub url: String,
}

/// How long reaching a cluster may take before it counts as unreachable.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A cluster's version and size, if it answers in time.
async fn reach(db: &Database) -> Option<(String, i64)> {
    registry::clusters::version_and_size(db).await.ok()
}

async fn reach_url(url: &str) -> Option<(String, i64)> {
    tokio::time::timeout(REACH_TIMEOUT, async {
        let db = Database::connect(url, 1).await.ok()?;
        reach(&db).await
    })
    .await
    .ok()
    .flatten()
}

/// Every cluster: the declared ones are recorded first (accepting new
/// tenants), then each recorded one is listed with its tenants, and the
/// ones this process knows are reached for their version and size.
pub async fn clusters(
    admin: &AdminDatabase,
    declared: &[ClusterAddress],
) -> Result<Vec<ClusterView>, crate::ServiceError> {
    let names: Vec<&str> = declared.iter().map(|c| c.name.as_str()).collect();
    registry::clusters::record(admin, &names).await?;
    let mut views = Vec::new();
    for entry in registry::clusters::list(admin.database()).await? {
        let (declared, reached) = if entry.name == "default" {
            (true, reach(admin.database()).await)
        } else {
            match declared.iter().find(|c| c.name == entry.name) {
                Some(address) => (true, reach_url(&address.url).await),
                None => (false, None),
            }
        };
        views.push(ClusterView {
            declared,
            reachable: reached.is_some(),
            version: reached.as_ref().map(|(v, _)| v.clone()),
            size_bytes: reached.map(|(_, size)| size),
            entry,
        });
    }
    Ok(views)
}

/// Lets new tenants be placed on a recorded cluster, or stops it.
pub async fn set_cluster_accepting(
    admin: &AdminDatabase,
    name: &str,
    accepting: bool,
) -> Result<(), crate::ServiceError> {
    registry::clusters::set_accepting(admin, name, accepting)
        .await
        .map_err(|e| match e {
            atrium_store::StoreError::NotFound => {
                crate::ServiceError::NotFound(format!("cluster {name}"))
            }
            other => other.into(),
        })
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
