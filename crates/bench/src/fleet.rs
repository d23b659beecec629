//! Making many tenants quickly for a benchmark: the real provisioning path,
//! two at a time.

use atrium_domain::{Email, Subdomain, Tier};
use atrium_store::fleet::provision::{FirstAdmin, NewTenant, provision};
use atrium_store::registry::TenantEntry;
use atrium_store::{AdminDatabase, ClusterDatabases, Database};
use futures::StreamExt;

/// A precomputed bcrypt hash: benchmarks measure provisioning, not hashing.
pub(crate) const BENCH_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

pub(crate) async fn provision_one(db: &Database, subdomain: &str) -> anyhow::Result<()> {
    let admin = AdminDatabase::new(db.clone());
    let fleet = atrium_store::Fleet::single(db.clone(), admin.clone());
    provision_on(&admin, fleet.home(), subdomain, Tier::Small).await?;
    Ok(())
}

/// A tenant on `cluster`, registered in `home`, with the bench's admin:
/// its registry entry and the admin's user id.
pub(crate) async fn provision_on(
    home: &AdminDatabase,
    cluster: &ClusterDatabases,
    subdomain: &str,
    tier: Tier,
) -> anyhow::Result<(TenantEntry, i32)> {
    let subdomain = Subdomain::parse(subdomain)?;
    let email = Email::parse("admin@bench.example")?;
    Ok(provision(
        home,
        cluster,
        &NewTenant {
            name: "Bench Org",
            subdomain: &subdomain,
            tier,
            admin: FirstAdmin {
                email: &email,
                first_name: "Bench",
                last_name: "Admin",
                password_hash: BENCH_HASH,
            },
        },
    )
    .await?)
}

/// Creates `count` tenants named `<prefix>-<n>`, `jobs` at a time.
pub(crate) async fn provision_many(
    db: &Database,
    prefix: &str,
    count: u32,
    jobs: usize,
) -> anyhow::Result<()> {
    let mut results = futures::stream::iter(0..count)
        .map(|i| async move { provision_one(db, &format!("{prefix}-{i}")).await })
        .buffer_unordered(jobs);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}
