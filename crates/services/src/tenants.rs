//! The tenant lifecycle, as the operator sees it.

use atrium_domain::{Email, Invalid, Password, Subdomain, TenantStatus, Tier};
use atrium_store::fleet::archive::{self, ArchiveReport, ImportTarget};
use atrium_store::fleet::migrate::MigrationSets;
use atrium_store::fleet::provision;
use atrium_store::fleet::provision::{FirstAdmin, NewTenant};
use atrium_store::registry::{self, TenantChanges, TenantEntry};
use atrium_store::{AdminDatabase, ClusterDatabases, Fleet};

use crate::{Problems, ServiceError, passwords};

/// A request to create a tenant, as it arrives from the edge.
#[derive(Debug, Clone)]
pub struct CreateTenant {
    pub name: String,
    pub subdomain: String,
    pub tier: Option<String>,
    pub admin_email: String,
    pub admin_first_name: String,
    pub admin_last_name: String,
    pub admin_password: String,
    /// The data cluster to place it on; `None` follows the placement rule
    /// ([`placement`]).
    pub cluster: Option<String>,
}

#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant: TenantEntry,
    pub admin_user_id: i32,
}

pub(crate) fn parse_name(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
    Ok(value.to_owned())
}

pub async fn create(fleet: &Fleet, request: CreateTenant) -> Result<CreatedTenant, ServiceError> {
    let mut problems = Problems::default();
    let name = problems.check(parse_name("name", &request.name, 255));
    let subdomain = problems.check(Subdomain::parse(&request.subdomain));
    let tier = problems.check(request.tier.as_deref().map_or(Ok(Tier::Small), Tier::parse));
    let email = problems.check(Email::parse_field("admin.email", &request.admin_email));
    let first_name = problems.check(parse_name(
        "admin.first_name",
        &request.admin_first_name,
        100,
    ));
    let last_name = problems.check(parse_name("admin.last_name", &request.admin_last_name, 100));
    let password = problems.check(Password::parse_field(
        "admin.password",
        &request.admin_password,
    ));
    problems.into_result()?;
    let cluster = placement(fleet, request.cluster.as_deref()).await?;
    let (name, subdomain, tier, email, first_name, last_name, password) = (
        name.unwrap(),
        subdomain.unwrap(),
        tier.unwrap(),
        email.unwrap(),
        first_name.unwrap(),
        last_name.unwrap(),
        password.unwrap(),
    );
    let password_hash = passwords::hash(&password).await?;
    let (tenant, admin_user_id) = provision::provision(
        &fleet.home().admin,
        cluster,
        &NewTenant {
            name: &name,
            subdomain: &subdomain,
            tier,
            admin: FirstAdmin {
                email: &email,
                first_name: &first_name,
                last_name: &last_name,
                password_hash: &password_hash,
            },
        },
    )
    .await
    .map_err(|e| ServiceError::from_store(e, "tenant"))?;
    Ok(CreatedTenant {
        tenant,
        admin_user_id,
    })
}

/// Where a new tenant goes: the `requested` cluster, which must be
/// recorded, accepting new tenants and known to this process; else the
/// accepting cluster this process knows with the fewest tenants, ties by
/// name.
pub async fn placement<'f>(
    fleet: &'f Fleet,
    requested: Option<&str>,
) -> Result<&'f ClusterDatabases, ServiceError> {
    let recorded = registry::clusters::list(fleet.home().admin.database()).await?;
    if let Some(name) = requested {
        let refuse = |why: String| ServiceError::from(Invalid::new("cluster", why));
        let entry = recorded
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| refuse(format!("no cluster is called {name:?}")))?;
        if !entry.accepting {
            return Err(refuse(format!(
                "cluster {name} takes no new tenants (`atrium cluster accept {name}`)"
            )));
        }
        return fleet.cluster(name).ok_or_else(|| {
            refuse(format!(
                "cluster {name} is not declared in this process's settings"
            ))
        });
    }
    recorded
        .iter()
        .filter(|c| c.accepting)
        .filter_map(|c| Some((c.tenants, &c.name, fleet.cluster(&c.name)?)))
        .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|(_, _, cluster)| cluster)
        .ok_or_else(|| {
            ServiceError::from(Invalid::new(
                "cluster",
                "no cluster takes new tenants (`atrium cluster accept NAME`)",
            ))
        })
}

/// The tenant's cluster as this process reaches it.
pub fn cluster_of<'f>(
    fleet: &'f Fleet,
    tenant: &TenantEntry,
) -> Result<&'f ClusterDatabases, ServiceError> {
    fleet.cluster(&tenant.cluster).ok_or_else(|| {
        ServiceError::Other(anyhow::anyhow!(
            "tenant {} is on cluster {}, which is not declared in this process's settings",
            tenant.subdomain,
            tenant.cluster
        ))
    })
}

/// Fills in the live counts of the tenants that live on other clusters
/// than the home one (whose counters the registry query already joined).
/// A cluster that does not answer leaves its tenants' counts at zero
/// rather than failing a listing of the whole fleet.
pub async fn count_elsewhere(fleet: &Fleet, tenants: &mut [TenantEntry]) {
    for cluster in &fleet.clusters()[1..] {
        let ids: Vec<i32> = tenants
            .iter()
            .filter(|t| t.cluster == cluster.name)
            .map(|t| t.id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        match registry::counts_of(cluster.admin.database(), &ids).await {
            Ok(counts) => {
                for tenant in tenants.iter_mut().filter(|t| t.cluster == cluster.name) {
                    tenant.counts = counts.get(&tenant.id).copied().unwrap_or_default();
                }
            }
            Err(e) => tracing::warn!(
                cluster = %cluster.name,
                error = format!("{e:#}"),
                "reading tenant counts"
            ),
        }
    }
}

/// Changes to a tenant, as they arrive from the edge.
#[derive(Debug, Clone, Default)]
pub struct UpdateTenant {
    pub name: Option<String>,
    pub subdomain: Option<String>,
    pub tier: Option<String>,
    pub status: Option<String>,
    /// With `status` `maintenance`: what the tenant's people are told.
    pub maintenance_message: Option<String>,
    /// Who asks (recorded when the tenant goes into maintenance).
    pub changed_by: Option<String>,
}

/// The longest maintenance message.
const MAINTENANCE_MESSAGE_MAX: usize = 500;

pub async fn update(
    db: &AdminDatabase,
    id: i32,
    request: UpdateTenant,
) -> Result<TenantEntry, ServiceError> {
    let mut problems = Problems::default();
    let changes = TenantChanges {
        name: request
            .name
            .and_then(|n| problems.check(parse_name("name", &n, 255))),
        subdomain: request
            .subdomain
            .and_then(|s| problems.check(Subdomain::parse(&s))),
        tier: request.tier.and_then(|t| problems.check(Tier::parse(&t))),
        status: request
            .status
            .and_then(|s| problems.check(TenantStatus::parse(&s))),
        maintenance_message: None,
        changed_by: request.changed_by,
    };
    let mut changes = changes;
    if let Some(message) = request.maintenance_message {
        if changes.status != Some(TenantStatus::Maintenance) {
            problems.push(Invalid::new(
                "maintenance_message",
                "goes with \"status\": \"maintenance\"",
            ));
        } else {
            changes.maintenance_message = problems
                .check(parse_name(
                    "maintenance_message",
                    &message,
                    MAINTENANCE_MESSAGE_MAX,
                ))
                .map(Some)
                .unwrap_or_default();
        }
    }
    problems.into_result()?;
    registry::update(db, id, &changes)
        .await
        .map_err(|e| ServiceError::from_store(e, "tenant"))
}

/// Finds a tenant by its subdomain, as operators name tenants on the
/// command line.
pub async fn find(fleet: &Fleet, subdomain: &str) -> Result<TenantEntry, ServiceError> {
    let mut tenant = registry::find_by_subdomain(&fleet.home().db, subdomain)
        .await
        .map_err(|e| match e {
            atrium_store::StoreError::NotFound => {
                ServiceError::NotFound(format!("tenant '{subdomain}'"))
            }
            other => ServiceError::from_store(other, "tenant"),
        })?;
    count_elsewhere(fleet, std::slice::from_mut(&mut tenant)).await;
    Ok(tenant)
}

pub async fn get(fleet: &Fleet, id: i32) -> Result<TenantEntry, ServiceError> {
    let mut tenant = registry::find_by_id(&fleet.home().db, id)
        .await
        .map_err(|e| ServiceError::from_store(e, "tenant"))?;
    count_elsewhere(fleet, std::slice::from_mut(&mut tenant)).await;
    Ok(tenant)
}

pub async fn delete(fleet: &Fleet, id: i32) -> Result<(), ServiceError> {
    registry::delete(fleet, id)
        .await
        .map_err(|e| ServiceError::from_store(e, "tenant"))
}

/// A tenant as the API and the command line show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: i32,
    pub name: String,
    pub subdomain: String,
    pub schema_name: String,
    pub status: String,
    pub tier: String,
    pub cluster: String,
    /// While in maintenance: what its people are told.
    pub maintenance_message: Option<String>,
    /// While in maintenance: who put it there (the platform API, or the
    /// operator's login on the command line) and since when.
    pub maintenance_by: Option<String>,
    pub maintenance_since: Option<chrono::DateTime<chrono::Utc>>,
    pub schema_version: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub user_count: i64,
    pub company_count: i64,
    pub contact_count: i64,
    pub deal_count: i64,
    pub activity_count: i64,
}

impl From<&TenantEntry> for TenantView {
    fn from(t: &TenantEntry) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            subdomain: t.subdomain.clone(),
            schema_name: t.schema_name.clone(),
            status: t.status.as_str().to_owned(),
            tier: t.tier.as_str().to_owned(),
            cluster: t.cluster.clone(),
            maintenance_message: t.maintenance.as_ref().and_then(|m| m.message.clone()),
            maintenance_by: t.maintenance.as_ref().and_then(|m| m.by.clone()),
            maintenance_since: t.maintenance.as_ref().and_then(|m| m.since),
            schema_version: t.schema_version,
            created_at: t.created_at,
            updated_at: t.updated_at,
            user_count: t.counts.users,
            company_count: t.counts.companies,
            contact_count: t.counts.contacts,
            deal_count: t.counts.deals,
            activity_count: t.counts.activities,
        }
    }
}

/// Tenants by id after `after`, at most `limit`, with their counts.
pub async fn page(fleet: &Fleet, after: i32, limit: i64) -> Result<Vec<TenantEntry>, ServiceError> {
    let mut page = registry::list(&fleet.home().db, after, limit).await?;
    count_elsewhere(fleet, &mut page).await;
    Ok(page)
}

/// Every tenant's registry entry, by id.
pub async fn list_all_entries(fleet: &Fleet) -> Result<Vec<TenantEntry>, ServiceError> {
    const PAGE: i64 = 1000;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = registry::list(&fleet.home().db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let full = page.len() as i64 == PAGE;
        all.extend(page);
        if !full {
            break;
        }
    }
    Ok(all)
}

/// Every tenant, read page by page from the registry and its counters.
pub async fn list_all(fleet: &Fleet) -> Result<Vec<TenantView>, ServiceError> {
    const PAGE: i64 = 1000;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = page(fleet, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let full = page.len() as i64 == PAGE;
        all.extend(page.iter().map(TenantView::from));
        if !full {
            break;
        }
    }
    Ok(all)
}

/// Writes tenant `subdomain`'s archive to `out` (see
/// `atrium_store::fleet::archive`).
pub async fn export<W>(
    fleet: &Fleet,
    subdomain: &str,
    out: W,
) -> Result<ArchiveReport, ServiceError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let tenant = find(fleet, subdomain).await?;
    let cluster = cluster_of(fleet, &tenant)?;
    Ok(archive::export(&cluster.admin, &tenant, out).await?)
}

/// Creates a tenant under `subdomain` from an archive; `name` defaults to
/// the source tenant's.
pub async fn import<R>(
    db: &AdminDatabase,
    input: R,
    subdomain: &str,
    name: Option<&str>,
) -> Result<(TenantEntry, ArchiveReport), ServiceError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut problems = Problems::default();
    let subdomain = problems.check(Subdomain::parse(subdomain));
    let name = match name {
        Some(n) => problems.check(parse_name("name", n, 255)),
        None => None,
    };
    problems.into_result()?;
    let subdomain = subdomain.expect("checked above");
    archive::import(
        db,
        &MigrationSets::embedded(),
        input,
        &ImportTarget {
            subdomain: &subdomain,
            name: name.as_deref(),
        },
    )
    .await
    .map_err(|e| ServiceError::from_store(e, "file"))
}

/// Writes tenant `subdomain`'s `pg_dump` backup to `out`; the bytes
/// written.
pub async fn backup<W>(fleet: &Fleet, subdomain: &str, out: &mut W) -> Result<u64, ServiceError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let tenant = find(fleet, subdomain).await?;
    let cluster = cluster_of(fleet, &tenant)?;
    Ok(atrium_store::fleet::backup::backup(&cluster.admin, &tenant, out).await?)
}

/// Restores a backup as the tenant it was; never over a live tenant.
pub async fn restore<R>(db: &AdminDatabase, input: R) -> Result<TenantEntry, ServiceError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    atrium_store::fleet::backup::restore(db, input)
        .await
        .map_err(|e| ServiceError::from_store(e, "file"))
}
