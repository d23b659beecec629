//! Capacity and growth (`atrium capacity`): each tenant's size now, its
//! growth over the last 7 and 30 days from the daily samples the
//! scheduled maintain keeps, and when each cluster's disk fills at the
//! rate its tenants grow.

use std::collections::HashMap;

use atrium_store::fleet::capacity::{self, Baselines, Disk, TableSize, TenantSize};
use atrium_store::registry::TenantEntry;
use atrium_store::{ClusterDatabases, Fleet, registry};
use chrono::NaiveDate;
use serde::Serialize;

/// One tenant: its size now and what it grew by.
#[derive(Debug, Clone, Serialize)]
pub struct TenantCapacity {
    pub tenant: String,
    pub cluster: String,
    pub rows: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub total_bytes: i64,
    #[serde(flatten)]
    pub growth: Growth,
}

/// Growth from the earliest sample within the last 7 and 30 days; `None`
/// without one. `*_days` says how far back that sample is (less than 7 or
/// 30 while the history is short).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Growth {
    pub growth_7d_bytes: Option<i64>,
    pub growth_7d_days: Option<i64>,
    pub growth_30d_bytes: Option<i64>,
    pub growth_30d_days: Option<i64>,
}

impl Growth {
    fn from(now_bytes: i64, baselines: Option<&Baselines>, today: NaiveDate) -> Self {
        let since = |base: Option<(NaiveDate, i64)>| {
            base.map(|(day, bytes)| (now_bytes - bytes, (today - day).num_days()))
        };
        let (week, month) = baselines.map_or((None, None), |b| (since(b.week), since(b.month)));
        Self {
            growth_7d_bytes: week.map(|w| w.0),
            growth_7d_days: week.map(|w| w.1),
            growth_30d_bytes: month.map(|m| m.0),
            growth_30d_days: month.map(|m| m.1),
        }
    }

    /// Bytes a day over the last week, when there is a day to measure.
    fn per_day(&self) -> Option<f64> {
        match (self.growth_7d_bytes, self.growth_7d_days) {
            (Some(bytes), Some(days)) if days > 0 => Some(bytes as f64 / days as f64),
            _ => None,
        }
    }
}

/// One cluster: its tenants' bytes, the database's, its disk, and when
/// that disk fills at the rate the tenants grew over the last week.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterCapacity {
    pub cluster: String,
    pub tenants: usize,
    pub tenant_bytes: i64,
    pub database_bytes: i64,
    pub disk_total_bytes: Option<u64>,
    pub disk_free_bytes: Option<u64>,
    /// `measured` (the data directory's filesystem, seen from this
    /// machine), `declared` (`--disk-size`, less the database), or `null`.
    pub disk_source: Option<&'static str>,
    pub growth_bytes_per_day: Option<f64>,
    pub days_until_full: Option<f64>,
    pub full_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub clusters: Vec<ClusterCapacity>,
    /// Largest first.
    pub tenants: Vec<TenantCapacity>,
    pub totals: Totals,
    /// Clusters that could not be read, with why.
    pub failed: Vec<(String, String)>,
}

/// Cross-tenant totals: the registry's record counts (as `atrium stats`)
/// and the bytes of every tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub records: registry::Totals,
    pub total_bytes: i64,
    pub growth_7d_bytes: i64,
}

/// Every cluster's tenants with their growth, and each cluster's
/// projection. `disk_sizes` are declared sizes by cluster name, and
/// `None` for every cluster without one of its own.
pub async fn capacity(
    fleet: &Fleet,
    disk_sizes: &HashMap<Option<String>, u64>,
) -> anyhow::Result<Capacity> {
    let names = placements(fleet).await?;
    let (today, baselines) = capacity::baselines(&fleet.home().db).await?;
    let reads = fleet.clusters().iter().map(|cluster| async move {
        let read = async {
            let sizes =
                capacity::by_tenant(&capacity::table_sizes(cluster.admin.database()).await?);
            let database = capacity::database_bytes(cluster.admin.database()).await?;
            let disk = capacity::local_disk(cluster.admin.database()).await;
            anyhow::Ok((sizes, database, disk))
        };
        (cluster, read.await)
    });
    let mut out = Capacity {
        clusters: Vec::new(),
        tenants: Vec::new(),
        totals: Totals {
            records: crate::operator::totals(fleet).await?,
            total_bytes: 0,
            growth_7d_bytes: 0,
        },
        failed: Vec::new(),
    };
    for (cluster, read) in futures::future::join_all(reads).await {
        let (sizes, database_bytes, disk) = match read {
            Ok(read) => read,
            Err(e) => {
                out.failed.push((cluster.name.clone(), format!("{e:#}")));
                continue;
            }
        };
        let tenants: Vec<TenantCapacity> = sizes
            .into_iter()
            // A schema the registry does not name (a spare) is no tenant.
            .filter_map(|size| {
                let tenant = names
                    .get(&(cluster.name.clone(), size.schema_name.clone()))?
                    .clone();
                let growth =
                    Growth::from(size.total_bytes, baselines.get(&size.schema_name), today);
                Some(tenant_capacity(tenant, &cluster.name, &size, growth))
            })
            .collect();
        let rates: Vec<f64> = tenants.iter().filter_map(|t| t.growth.per_day()).collect();
        let growth_bytes_per_day = (!rates.is_empty()).then(|| rates.iter().sum::<f64>());
        let declared = disk_sizes
            .get(&Some(cluster.name.clone()))
            .or_else(|| disk_sizes.get(&None));
        let (disk, disk_source) = match (disk, declared) {
            (_, Some(&total)) => (
                Some(Disk {
                    total_bytes: total,
                    free_bytes: total.saturating_sub(database_bytes.max(0) as u64),
                }),
                Some("declared"),
            ),
            (Some(measured), None) => (Some(measured), Some("measured")),
            (None, None) => (None, None),
        };
        let days_until_full = match (disk, growth_bytes_per_day) {
            (Some(disk), Some(rate)) if rate > 0.0 => Some(disk.free_bytes as f64 / rate),
            _ => None,
        };
        out.totals.total_bytes += tenants.iter().map(|t| t.total_bytes).sum::<i64>();
        out.totals.growth_7d_bytes += tenants
            .iter()
            .filter_map(|t| t.growth.growth_7d_bytes)
            .sum::<i64>();
        out.clusters.push(ClusterCapacity {
            cluster: cluster.name.clone(),
            tenants: tenants.len(),
            tenant_bytes: tenants.iter().map(|t| t.total_bytes).sum(),
            database_bytes,
            disk_total_bytes: disk.map(|d| d.total_bytes),
            disk_free_bytes: disk.map(|d| d.free_bytes),
            disk_source,
            growth_bytes_per_day: growth_bytes_per_day.map(|r| r.round()),
            days_until_full: days_until_full.map(|d| (d * 10.0).round() / 10.0),
            full_on: days_until_full
                .filter(|d| *d < 365.0 * 100.0)
                .map(|d| today + chrono::Days::new(d.ceil() as u64)),
        });
        out.tenants.extend(tenants);
    }
    out.tenants.sort_by(|a, b| {
        b.total_bytes
            .cmp(&a.total_bytes)
            .then_with(|| a.tenant.cmp(&b.tenant))
    });
    Ok(out)
}

fn tenant_capacity(
    tenant: String,
    cluster: &str,
    size: &TenantSize,
    growth: Growth,
) -> TenantCapacity {
    TenantCapacity {
        tenant,
        cluster: cluster.to_owned(),
        rows: size.rows,
        table_bytes: size.table_bytes,
        index_bytes: size.index_bytes,
        toast_bytes: size.toast_bytes,
        total_bytes: size.total_bytes,
        growth,
    }
}

/// One tenant, table by table, with exact row counts.
#[derive(Debug, Clone, Serialize)]
pub struct TenantTables {
    #[serde(flatten)]
    pub tenant: TenantCapacity,
    pub tables: Vec<TableSize>,
}

pub async fn of_tenant(fleet: &Fleet, tenant: &TenantEntry) -> anyhow::Result<TenantTables> {
    let cluster = crate::tenants::cluster_of(fleet, tenant)?;
    let db = cluster.admin.database();
    let mut tables = capacity::table_sizes_of(db, &tenant.schema_name).await?;
    capacity::count_rows(db, &mut tables).await?;
    tables.sort_by(|a, b| {
        b.total_bytes
            .cmp(&a.total_bytes)
            .then_with(|| a.table.cmp(&b.table))
    });
    let size = capacity::by_tenant(&tables).pop().unwrap_or_default();
    let (today, baselines) = capacity::baselines(&fleet.home().db).await?;
    let growth = Growth::from(size.total_bytes, baselines.get(&tenant.schema_name), today);
    Ok(TenantTables {
        tenant: tenant_capacity(tenant.subdomain.clone(), &cluster.name, &size, growth),
        tables,
    })
}

/// The tenant taking the most bytes, on any cluster (`None` without
/// tenants): the one a migration is rehearsed on by default.
pub async fn largest_tenant(fleet: &Fleet) -> anyhow::Result<Option<TenantEntry>> {
    let names = placements(fleet).await?;
    let mut largest: Option<(i64, String)> = None;
    for cluster in fleet.clusters() {
        let sizes = capacity::by_tenant(&capacity::table_sizes(cluster.admin.database()).await?);
        if let Some((size, subdomain)) = sizes.iter().find_map(|size| {
            let subdomain = names.get(&(cluster.name.clone(), size.schema_name.clone()))?;
            Some((size.total_bytes, subdomain.clone()))
        }) && largest.as_ref().is_none_or(|(bytes, _)| size > *bytes)
        {
            largest = Some((size, subdomain));
        }
    }
    match largest {
        Some((_, subdomain)) => Ok(Some(crate::tenants::find(fleet, &subdomain).await?)),
        None => Ok(None),
    }
}

/// Records today's size of every tenant of `cluster` in the home
/// registry, unless each already has one: what the scheduled maintain
/// does once a day. The samples written.
pub async fn sample_if_due(fleet: &Fleet, cluster: &ClusterDatabases) -> anyhow::Result<u64> {
    let home = &fleet.home().db;
    if capacity::sampled_today(home, &cluster.name).await? {
        return Ok(0);
    }
    let sizes = capacity::by_tenant(&capacity::table_sizes(cluster.admin.database()).await?);
    capacity::record_samples(home, &cluster.name, &sizes).await
}

/// Subdomains by cluster and schema name.
async fn placements(fleet: &Fleet) -> anyhow::Result<HashMap<(String, String), String>> {
    Ok(registry::placements(&fleet.home().db)
        .await?
        .into_iter()
        .map(|(cluster, schema, subdomain)| ((cluster, schema), subdomain))
        .collect())
}
