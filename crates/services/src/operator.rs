//! The operator's use cases over the fleet and the registry: what `atrium`
//! runs besides the tenant commands (`tenants.rs`). The command line calls
//! these, as the HTTP handlers call the rest of the services; it never
//! reaches into the store.

use atrium_store::fleet::migrate::MigrationSets;
use atrium_store::fleet::{
    check, index_health, migrate, moving, observe, roles, spares, tenant_metrics,
};
use atrium_store::registry::TenantEntry;
use atrium_store::{AdminDatabase, Database, Fleet, outbox, registry};

pub use atrium_store::fleet::check::CheckReport;
pub use atrium_store::fleet::index_health::IndexBloat;
pub use atrium_store::fleet::migrate::rehearse::Rehearsal;
pub use atrium_store::fleet::migrate::{
    MigrateOptions, MigrateReport, MigrationError, MigrationStatus, TenantVersion,
};
pub use atrium_store::fleet::observe::{ConnectionGroup, IndexUsage, TenantIndexes};
pub use atrium_store::fleet::roles::{APPLICATION as APPLICATION_ROLE, RolesReport};
pub use atrium_store::fleet::tenant_metrics::TenantLoad;
pub use atrium_store::outbox::QueuedEmail;
pub use atrium_store::registry::Totals;

/// Brings the registry, `template` and every tenant on every cluster to
/// this program's migrations; one tenant's or one cluster's failure is
/// reported and the rest go on.
pub async fn migrate(
    fleet: &Fleet,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateReport, MigrationError> {
    migrate::migrate_fleet(fleet, options, on_progress).await
}

/// Rehearses the pending migrations on a copy of `tenant` (or of the
/// largest tenant) on its cluster; `None` for the rehearsal when that
/// tenant has nothing pending. The tenant rehearsed comes back with it.
pub async fn rehearse_migrations(
    fleet: &Fleet,
    tenant: Option<TenantEntry>,
) -> Result<(TenantEntry, Option<migrate::rehearse::Rehearsal>), crate::ServiceError> {
    let tenant = match tenant {
        Some(tenant) => tenant,
        None => crate::capacity::largest_tenant(fleet)
            .await?
            .ok_or_else(|| crate::ServiceError::NotFound("a tenant to rehearse on".into()))?,
    };
    let cluster = crate::tenants::cluster_of(fleet, &tenant)?;
    let rehearsal = migrate::rehearse::rehearse(
        cluster.admin.database(),
        tenant.id,
        &tenant.schema_name,
        tenant.schema_version,
        MigrationSets::embedded(),
    )
    .await?;
    Ok((tenant, rehearsal))
}

pub async fn migration_status(db: &Database) -> anyhow::Result<MigrationStatus> {
    migrate::status(db).await
}

/// Where each data cluster's registry tables and `template` stand, or why
/// it could not be read.
#[derive(Debug, serde::Serialize)]
pub struct ClusterVersions {
    pub cluster: String,
    pub registry_version: Option<i32>,
    pub template_version: Option<i32>,
    pub error: Option<String>,
}

pub async fn cluster_versions(fleet: &Fleet) -> Vec<ClusterVersions> {
    let reads = fleet.clusters().iter().map(|cluster| async move {
        match migrate::status(cluster.admin.database()).await {
            Ok(status) => ClusterVersions {
                cluster: cluster.name.clone(),
                registry_version: Some(status.control_version),
                template_version: Some(status.template_version),
                error: None,
            },
            Err(e) => ClusterVersions {
                cluster: cluster.name.clone(),
                registry_version: None,
                template_version: None,
                error: Some(format!("{e:#}")),
            },
        }
    });
    futures::future::join_all(reads).await
}

pub async fn tenant_versions(db: &Database) -> anyhow::Result<Vec<TenantVersion>> {
    migrate::tenant_versions(db).await
}

/// Whether the registry or `template` is behind this program: a server
/// without the rights to migrate refuses to start then.
pub async fn migrations_pending(db: &Database) -> anyhow::Result<bool> {
    migrate::pending_control_or_template(db).await
}

/// Every tenant and spare schema compared with its cluster's `template`,
/// on every cluster at once. A cluster that cannot be checked is an
/// error naming it.
pub async fn check(fleet: &Fleet) -> anyhow::Result<CheckReport> {
    let names = subdomains(fleet).await?;
    let checks = fleet
        .clusters()
        .iter()
        .map(|cluster| async move { (cluster.name.as_str(), check::check(&cluster.admin).await) });
    let mut total = CheckReport {
        schemas_checked: 0,
        spares_checked: 0,
        drifted: Vec::new(),
    };
    for (cluster, report) in futures::future::join_all(checks).await {
        let report = report.map_err(|e| e.context(format!("checking cluster {cluster}")))?;
        total.schemas_checked += report.schemas_checked;
        total.spares_checked += report.spares_checked;
        total
            .drifted
            .extend(report.drifted.into_iter().map(|mut drift| {
                drift.cluster = cluster.to_owned();
                if drift.subdomain.is_some() {
                    drift.subdomain = names.get(&drift.schema_name).cloned();
                }
                drift
            }));
    }
    Ok(total)
}

/// The fleet's totals, from the counters each cluster keeps for its own
/// tenants (the home registry counts the tenants). A cluster that does
/// not answer is left out of the sums, with a warning in the log.
pub async fn totals(fleet: &Fleet) -> anyhow::Result<Totals> {
    let mut totals = registry::totals(&fleet.home().db).await?;
    for cluster in &fleet.clusters()[1..] {
        match registry::totals(cluster.admin.database()).await {
            Ok(more) => {
                totals.total_users += more.total_users;
                totals.total_companies += more.total_companies;
                totals.total_contacts += more.total_contacts;
                totals.total_deals += more.total_deals;
                totals.total_activities += more.total_activities;
            }
            Err(e) => tracing::warn!(
                cluster = %cluster.name,
                error = format!("{e:#}"),
                "leaving an unreachable cluster out of the totals"
            ),
        }
    }
    Ok(totals)
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

/// How long reaching a cluster may take before it counts as unreachable.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every cluster: the declared ones are recorded first (accepting new
/// tenants), then each recorded one is listed with its tenants, and the
/// ones this process knows are reached, all at once, for their version
/// and size.
pub async fn clusters(fleet: &Fleet) -> Result<Vec<ClusterView>, crate::ServiceError> {
    let home = &fleet.home().admin;
    let names: Vec<&str> = fleet.clusters().iter().map(|c| c.name.as_str()).collect();
    registry::clusters::record(home, &names).await?;
    let entries = registry::clusters::list(home.database()).await?;
    let views = entries.into_iter().map(|entry| async move {
        let (declared, reached) = match fleet.cluster(&entry.name) {
            Some(cluster) => (
                true,
                tokio::time::timeout(
                    REACH_TIMEOUT,
                    registry::clusters::version_and_size(cluster.admin.database()),
                )
                .await
                .ok()
                .and_then(Result::ok),
            ),
            None => (false, None),
        };
        ClusterView {
            declared,
            reachable: reached.is_some(),
            version: reached.as_ref().map(|(v, _)| v.clone()),
            size_bytes: reached.map(|(_, size)| size),
            entry,
        }
    });
    Ok(futures::future::join_all(views).await)
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

/// What a command read from every cluster, and the clusters it could not
/// read (by name, with the error), which the command reports and fails on
/// after showing the rest.
#[derive(Debug)]
pub struct FleetRead<T> {
    pub rows: Vec<T>,
    pub failed: Vec<(String, String)>,
}

/// Runs `read` on every cluster's operator pool at once.
async fn on_every_cluster<T, F, Fut>(fleet: &Fleet, read: F) -> FleetRead<(String, T)>
where
    F: Fn(Database) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<T>>>,
{
    let reads = fleet.clusters().iter().map(|cluster| {
        let read = read(cluster.admin.database().clone());
        async move { (cluster.name.clone(), read.await) }
    });
    let mut out = FleetRead {
        rows: Vec::new(),
        failed: Vec::new(),
    };
    for (cluster, result) in futures::future::join_all(reads).await {
        match result {
            Ok(rows) => out
                .rows
                .extend(rows.into_iter().map(|row| (cluster.clone(), row))),
            Err(e) => out.failed.push((cluster, format!("{e:#}"))),
        }
    }
    out
}

/// Subdomains by schema name, from the home registry: a data cluster's
/// own copy of a tenant row does not keep the subdomain.
async fn subdomains(fleet: &Fleet) -> anyhow::Result<std::collections::HashMap<String, String>> {
    Ok(registry::schema_subdomains(&fleet.home().db)
        .await?
        .into_iter()
        .collect())
}

/// Every tenant's index totals, on every cluster.
pub async fn indexes_by_tenant(fleet: &Fleet) -> anyhow::Result<FleetRead<TenantIndexes>> {
    let names = subdomains(fleet).await?;
    let read = on_every_cluster(fleet, async |db| observe::indexes_by_tenant(&db).await).await;
    Ok(FleetRead {
        rows: read
            .rows
            .into_iter()
            .filter_map(|(cluster, mut t)| {
                // A cluster's copy of a tenant that has since moved away.
                t.subdomain = names.get(&t.schema_name)?.clone();
                t.cluster = cluster;
                Some(t)
            })
            .collect(),
        failed: read.failed,
    })
}

/// Tenant statements running for at least `over_seconds`, on every
/// cluster, longest first.
pub async fn running_queries(
    fleet: &Fleet,
    over_seconds: f64,
) -> anyhow::Result<FleetRead<observe::RunningQuery>> {
    let names = subdomains(fleet).await?;
    let read = on_every_cluster(fleet, async |db| {
        observe::running_queries(&db, over_seconds).await
    })
    .await;
    let mut rows: Vec<observe::RunningQuery> = read
        .rows
        .into_iter()
        .map(|(cluster, mut q)| {
            q.tenant = names.get(&q.schema_name).cloned();
            q.cluster = cluster;
            q
        })
        .collect();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(FleetRead {
        rows,
        failed: read.failed,
    })
}

/// Cancels tenant statements: by backend `pid` on `cluster`, or all of
/// `tenant`'s on its cluster. The number cancelled.
pub async fn cancel_queries(
    fleet: &Fleet,
    cluster: &str,
    pid: Option<i32>,
    tenant: Option<&TenantEntry>,
) -> Result<u64, crate::ServiceError> {
    let on = match tenant {
        Some(tenant) => crate::tenants::cluster_of(fleet, tenant)?,
        None => fleet
            .cluster(cluster)
            .ok_or_else(|| crate::ServiceError::NotFound(format!("cluster {cluster}")))?,
    };
    Ok(observe::cancel_queries(
        on.admin.database(),
        pid,
        tenant.map(|t| t.schema_name.as_str()),
    )
    .await?)
}

/// The bloated tenant indexes of every cluster, most bloat first; or,
/// for `tenant`, the estimate of each of its B-tree indexes.
pub async fn index_bloat(
    fleet: &Fleet,
    tenant: Option<&TenantEntry>,
) -> anyhow::Result<FleetRead<IndexBloat>> {
    let names = subdomains(fleet).await?;
    let read = match tenant {
        Some(tenant) => {
            let cluster = crate::tenants::cluster_of(fleet, tenant)?;
            let rows =
                index_health::estimate(cluster.admin.database(), Some(&tenant.schema_name)).await?;
            FleetRead {
                rows: rows
                    .into_iter()
                    .map(|r| (cluster.name.clone(), r))
                    .collect(),
                failed: Vec::new(),
            }
        }
        None => on_every_cluster(fleet, async |db| index_health::bloated(&db).await).await,
    };
    let mut rows: Vec<IndexBloat> = read
        .rows
        .into_iter()
        .map(|(cluster, mut i)| {
            i.tenant = names.get(&i.schema_name).cloned();
            i.cluster = cluster;
            i
        })
        .collect();
    rows.sort_by_key(|i| std::cmp::Reverse(i.bloat_bytes));
    Ok(FleetRead {
        rows,
        failed: read.failed,
    })
}

/// One tenant's indexes, on its cluster.
pub async fn indexes_of(fleet: &Fleet, tenant: &TenantEntry) -> anyhow::Result<Vec<IndexUsage>> {
    let cluster = crate::tenants::cluster_of(fleet, tenant)?;
    observe::indexes_of(cluster.admin.database(), &tenant.schema_name).await
}

/// Open connections on every cluster, grouped by what they serve.
pub async fn connections(fleet: &Fleet) -> anyhow::Result<FleetRead<ConnectionGroup>> {
    let names = subdomains(fleet).await?;
    let read = on_every_cluster(fleet, async |db| observe::connections(&db).await).await;
    Ok(FleetRead {
        rows: read
            .rows
            .into_iter()
            .map(|(cluster, mut g)| {
                g.tenant = names.get(&g.application_name).cloned();
                g.cluster = cluster;
                g
            })
            .collect(),
        failed: read.failed,
    })
}

/// The key that seals queued emails: whether this process holds one, and
/// setting it from hex (`ATRIUM_SECRET_KEY`) or a file (the embedded
/// default keeps one in its data directory).
pub mod sealing {
    pub use atrium_store::outbox::{key_from_hex, key_in_file, seals, use_key};
}

pub use atrium_store::fleet::moving::{
    MoveError, MoveOptions, MoveProgress, MoveRecord, MoveReport, MoveState,
};

impl From<MoveError> for crate::ServiceError {
    fn from(e: MoveError) -> Self {
        match e {
            MoveError::Refused(why) => atrium_domain::Invalid::new("to", why).into(),
            MoveError::Busy(why) => Self::Conflict(why),
            MoveError::Failed(e) => Self::Other(e),
        }
    }
}

/// Refuses, before a move is started in the background, what the registry
/// can tell is wrong at once: an unknown target, the tenant's own cluster,
/// or a move of it already under way. (`move_tenant` itself takes over an
/// unfinished move instead: that is how one is resumed.)
pub async fn check_move(
    fleet: &Fleet,
    tenant: &TenantEntry,
    to: &str,
) -> Result<(), crate::ServiceError> {
    moving::clusters_of_move(fleet, tenant, to)?;
    if let Some(running) = moving::latest(&fleet.home().admin, tenant.id).await?
        && !matches!(running.state, MoveState::Done | MoveState::Failed)
    {
        return Err(crate::ServiceError::Conflict(format!(
            "a move of tenant {} to {} is already under way ({})",
            tenant.subdomain,
            running.target,
            running.state.as_str()
        )));
    }
    Ok(())
}

/// Moves a tenant to cluster `to` while it keeps serving (see
/// `atrium_store::fleet::moving`).
pub async fn move_tenant(
    fleet: &Fleet,
    tenant: &TenantEntry,
    to: &str,
    options: &MoveOptions,
    on_progress: &(dyn Fn(&MoveProgress) + Sync),
) -> Result<MoveReport, crate::ServiceError> {
    Ok(moving::move_tenant(fleet, tenant, to, options, on_progress).await?)
}

/// Stops an unfinished move of the tenant; whether there was one.
pub async fn abort_move(fleet: &Fleet, tenant: &TenantEntry) -> Result<bool, crate::ServiceError> {
    Ok(moving::abort(fleet, tenant).await?)
}

/// The tenant's latest move, if it was ever moved.
pub async fn latest_move(
    fleet: &Fleet,
    tenant_id: i32,
) -> Result<Option<MoveRecord>, crate::ServiceError> {
    Ok(moving::latest(&fleet.home().admin, tenant_id).await?)
}

/// Where each tenant of a drained cluster goes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrainStep {
    pub tenant: String,
    pub to: String,
}

/// Stops placing tenants on cluster `name`, then plans where each of its
/// tenants goes: the accepting cluster with the fewest tenants, counting
/// the ones already planned there.
pub async fn plan_drain(fleet: &Fleet, name: &str) -> Result<Vec<DrainStep>, crate::ServiceError> {
    set_cluster_accepting(&fleet.home().admin, name, false).await?;
    let mut counts: Vec<(i64, String)> = registry::clusters::list(fleet.home().admin.database())
        .await?
        .into_iter()
        .filter(|c| c.accepting && c.name != name && fleet.cluster(&c.name).is_some())
        .map(|c| (c.tenants, c.name))
        .collect();
    let tenants: Vec<TenantEntry> = crate::tenants::list_all_entries(fleet)
        .await?
        .into_iter()
        .filter(|t| t.cluster == name)
        .collect();
    if !tenants.is_empty() && counts.is_empty() {
        return Err(atrium_domain::Invalid::new(
            "cluster",
            format!("no other cluster takes new tenants, so {name}'s cannot go anywhere"),
        )
        .into());
    }
    let mut plan = Vec::new();
    for tenant in tenants {
        let fewest = counts.iter_mut().min().expect("checked above");
        fewest.0 += 1;
        plan.push(DrainStep {
            tenant: tenant.subdomain,
            to: fewest.1.clone(),
        });
    }
    Ok(plan)
}
