//! Housekeeping: the policy from the operator's settings, and the schedule
//! `atrium serve` runs it on.

use std::time::Duration;

use atrium_store::fleet::maintain::{self, MaintainReport, Policy, TenantFailure};
use atrium_store::{ClusterDatabases, Fleet};

use crate::ServiceError;
use crate::auth::AuthSettings;

/// How long soft-deleted records are kept before `maintain` purges them.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// How often `serve` runs `maintain` (across all its processes).
pub const DEFAULT_INTERVAL_MINUTES: u32 = 60;

/// How often `serve` rebuilds bloated indexes by default.
pub const DEFAULT_REINDEX_INTERVAL_DAYS: u32 = 7;

/// `reindex_every`: rebuild bloated indexes when no run did in that long
/// (zero: now); `None`: not at all.
pub fn policy(retention_days: u32, vacuum: bool, reindex_every: Option<Duration>) -> Policy {
    Policy {
        retention: Duration::from_secs(u64::from(retention_days) * 24 * 3600),
        session_idle: AuthSettings::default().session_idle,
        vacuum,
        reindex_every,
    }
}

/// `days` as a policy's `reindex_every` (0 turns it off).
pub fn reindex_every_days(days: u32) -> Option<Duration> {
    (days > 0).then(|| Duration::from_secs(u64::from(days) * 24 * 3600))
}

/// Runs `maintain` now on every cluster, one after another; `None` when
/// another run is in progress on the home database. A cluster that fails
/// as a whole is reported as a failure named after it.
pub async fn run_now(
    fleet: &Fleet,
    policy: &Policy,
) -> Result<Option<MaintainReport>, ServiceError> {
    let Some(mut total) = maintain::maintain(&fleet.home().admin, policy).await? else {
        return Ok(None);
    };
    sample_capacity(fleet, fleet.home(), &mut total).await;
    for cluster in &fleet.clusters()[1..] {
        match maintain::maintain(&cluster.admin, policy).await {
            Ok(Some(mut report)) => {
                sample_capacity(fleet, cluster, &mut report).await;
                add(&mut total, report, &cluster.name)
            }
            Ok(None) => {}
            Err(e) => total.failures.push(TenantFailure {
                subdomain: format!("(cluster {})", cluster.name),
                error: format!("{e:#}"),
            }),
        }
    }
    Ok(Some(total))
}

/// Takes today's capacity samples of `cluster`'s tenants after its run,
/// if not taken yet; a failure is one of the run's.
async fn sample_capacity(fleet: &Fleet, cluster: &ClusterDatabases, report: &mut MaintainReport) {
    match crate::capacity::sample_if_due(fleet, cluster).await {
        Ok(sampled) => report.capacity_samples += sampled,
        Err(e) => report.failures.push(TenantFailure {
            subdomain: format!("(capacity samples of cluster {})", cluster.name),
            error: format!("{e:#}"),
        }),
    }
}

/// Adds a data cluster's run to the fleet's (its tenants are named by
/// schema there: a cluster's copies of tenant rows keep no subdomain).
fn add(total: &mut MaintainReport, report: MaintainReport, cluster: &str) {
    total.tenants += report.tenants;
    total.sessions_removed += report.sessions_removed;
    total.reset_tokens_removed += report.reset_tokens_removed;
    total.companies_purged += report.companies_purged;
    total.contacts_purged += report.contacts_purged;
    total.deals_purged += report.deals_purged;
    total.activities_purged += report.activities_purged;
    total.audit_events_purged += report.audit_events_purged;
    total.invitations_removed += report.invitations_removed;
    total.outbox_tokens_blanked += report.outbox_tokens_blanked;
    let on = |name: String| format!("{name} (cluster {cluster})");
    total.vacuumed.extend(report.vacuumed.into_iter().map(on));
    total.reindex_ran |= report.reindex_ran;
    total.reindexed.extend(report.reindexed);
    total.capacity_samples += report.capacity_samples;
    total
        .moved_sources_dropped
        .extend(report.moved_sources_dropped.into_iter().map(on));
    total
        .rehearsals_dropped
        .extend(report.rehearsals_dropped.into_iter().map(on));
    total
        .failures
        .extend(report.failures.into_iter().map(|f| TenantFailure {
            subdomain: on(f.subdomain),
            error: f.error,
        }));
    total.seconds += report.seconds;
}

/// Every `interval`, runs `maintain` (with `VACUUM ANALYZE` of written
/// schemas) on every cluster where no server has in the last `interval`.
/// Never returns.
pub async fn run_schedule(fleet: Fleet, policy: Policy, interval: Duration) {
    // Checking more often than the interval lets another server's run count:
    // the database decides whether a run is due.
    let mut ticks = tokio::time::interval(interval.min(Duration::from_secs(300)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for cluster in fleet.clusters() {
            run_if_due(&fleet, cluster, &policy, interval).await;
        }
    }
}

async fn run_if_due(fleet: &Fleet, on: &ClusterDatabases, policy: &Policy, interval: Duration) {
    let cluster = on.name.as_str();
    match maintain::maintain_if_due(&on.admin, policy, interval).await {
        Ok(Some(mut report)) => {
            sample_capacity(fleet, on, &mut report).await;
            log_run(&report, cluster)
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = format!("{e:#}"), cluster, "maintain failed"),
    }
}

fn log_run(report: &MaintainReport, cluster: &str) {
    tracing::info!(
        tenants = report.tenants,
        sessions_removed = report.sessions_removed,
        purged = report.companies_purged
            + report.contacts_purged
            + report.deals_purged
            + report.activities_purged,
        vacuumed = report.vacuumed.len(),
        reindexed = report.reindexed.len(),
        capacity_samples = report.capacity_samples,
        failures = report.failures.len(),
        seconds = report.seconds,
        cluster,
        "maintain ran"
    );
    for failure in &report.failures {
        tracing::warn!(cluster, what = %failure.subdomain, error = %failure.error, "maintain: a part failed");
    }
}
