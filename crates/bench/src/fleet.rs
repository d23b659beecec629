//! Making many tenants quickly for a benchmark: the real provisioning path,
//! two at a time.

use atrium_domain::{Email, Subdomain, Tier};
use atrium_store::AdminDatabase;
use atrium_store::Database;
use atrium_store::fleet::provision::{FirstAdmin, NewTenant, provision};
use futures::StreamExt;

/// A precomputed bcrypt hash: benchmarks measure provisioning, not hashing.
pub(crate) const BENCH_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

pub(crate) async fn provision_one(db: &Database, subdomain: &str) -> anyhow::Result<()> {
    let subdomain = Subdomain::parse(subdomain)?;
    let email = Email::parse("admin@bench.example")?;
    let admin = AdminDatabase::new(db.clone());
    provision(
        &admin,
        atrium_store::Fleet::single(db.clone(), admin.clone()).home(),
        &NewTenant {
            name: "Bench Org",
            subdomain: &subdomain,
            tier: Tier::Small,
            admin: FirstAdmin {
                email: &email,
                first_name: "Bench",
                last_name: "Admin",
                password_hash: BENCH_HASH,
            },
        },
    )
    .await?;
    Ok(())
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
