//! Housekeeping: the policy from the operator's settings, and the schedule
//! `atrium serve` runs it on.

use std::time::Duration;

use atrium_store::AdminDatabase;
use atrium_store::fleet::maintain::{self, MaintainReport, Policy};

use crate::ServiceError;
use crate::auth::AuthSettings;

/// How long soft-deleted records are kept before `maintain` purges them.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// How often `serve` runs `maintain` (across all its processes).
pub const DEFAULT_INTERVAL_MINUTES: u32 = 60;

pub fn policy(retention_days: u32, vacuum: bool) -> Policy {
    Policy {
        retention: Duration::from_secs(u64::from(retention_days) * 24 * 3600),
        session_idle: AuthSettings::default().session_idle,
        vacuum,
    }
}

/// Runs `maintain` now; `None` when another run is in progress.
pub async fn run_now(
    db: &AdminDatabase,
    policy: &Policy,
) -> Result<Option<MaintainReport>, ServiceError> {
    Ok(maintain::maintain(db, policy).await?)
}

/// Every `interval`, runs `maintain` (with `VACUUM ANALYZE` of written
/// schemas) if no server has in the last `interval`. Never returns.
pub async fn run_schedule(db: AdminDatabase, policy: Policy, interval: Duration) {
    // Checking more often than the interval lets another server's run count:
    // the database decides whether a run is due.
    let mut ticks = tokio::time::interval(interval.min(Duration::from_secs(300)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match maintain::maintain_if_due(&db, &policy, interval).await {
            Ok(Some(report)) => tracing::info!(
                tenants = report.tenants,
                sessions_removed = report.sessions_removed,
                purged = report.companies_purged
                    + report.contacts_purged
                    + report.deals_purged
                    + report.activities_purged,
                vacuumed = report.vacuumed.len(),
                failures = report.failures.len(),
                seconds = report.seconds,
                "maintain ran"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "maintain failed"),
        }
    }
}
