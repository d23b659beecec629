//! Request policy: how much a signed-in tenant may ask of this server. A
//! request rate (a flood waits its turn, then is turned away) and a
//! database-time budget (a tenant whose requests run long pays it back
//! before it is served again). The store only caps a tenant's connections;
//! what a request may cost is decided here, per tier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atrium_domain::Tier;
use atrium_store::TenantContext;

use crate::error::ApiError;

/// How long a request waits for its tenant's request rate before it is
/// told to come back later.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);

/// The longest a tenant's database-time debt can keep it waiting.
pub const MAX_DEBT_SECONDS: f64 = 30.0;

/// Each tenant's policy, by id and tier: it outlives the directory's
/// cached entries, so a reload never hands a tenant a fresh allowance.
#[derive(Default)]
pub(crate) struct Policies(Mutex<HashMap<(i32, Tier), Arc<TenantPolicy>>>);

impl Policies {
    pub fn of(&self, tenant: &TenantContext) -> Arc<TenantPolicy> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((tenant.id, tenant.tier))
            .or_insert_with(|| Arc::new(TenantPolicy::new(tenant.tier)))
            .clone()
    }
}

pub(crate) struct TenantPolicy {
    /// At most `tier.request_rate()` requests a second (after a burst of
    /// `tier.request_burst()`).
    requests: governor::DefaultDirectRateLimiter,
    /// Database time used against `tier.db_time_budget_ms()` a second.
    db_time: Mutex<DbTimeBudget>,
}

/// A bucket of database milliseconds that refills at the tier's budget,
/// holds at most one second of it, and goes into debt when a request used
/// more than was left: the tenant's next requests wait a small debt off,
/// and are refused (503 with `Retry-After`) while a large one is paid
/// back, so a tenant whose requests each run for seconds cannot keep its
/// connections busy. The debt is bounded by [`MAX_DEBT_SECONDS`] of the
/// tenant's budget, so one runaway statement (itself bounded by the
/// tier's statement timeout) costs the tenant at most that long.
#[derive(Debug)]
struct DbTimeBudget {
    balance_ms: f64,
    updated: Instant,
    per_second_ms: f64,
}

impl DbTimeBudget {
    fn new(per_second_ms: f64) -> Self {
        Self {
            balance_ms: per_second_ms,
            updated: Instant::now(),
            per_second_ms,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.updated).as_secs_f64() * self.per_second_ms;
        self.balance_ms = (self.balance_ms + earned).min(self.per_second_ms);
        self.updated = now;
    }

    fn charge(&mut self, used: Duration) {
        self.refill();
        self.balance_ms = (self.balance_ms - used.as_secs_f64() * 1000.0)
            .max(-self.per_second_ms * MAX_DEBT_SECONDS);
    }

    /// How long until the balance is positive again.
    fn wait(&mut self) -> Duration {
        self.refill();
        if self.balance_ms > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.balance_ms / self.per_second_ms)
        }
    }
}

impl TenantPolicy {
    fn new(tier: Tier) -> Self {
        let rate = std::num::NonZeroU32::new(tier.request_rate()).expect("positive rate");
        let burst = std::num::NonZeroU32::new(tier.request_burst()).expect("positive burst");
        Self {
            requests: governor::RateLimiter::direct(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
            db_time: Mutex::new(DbTimeBudget::new(f64::from(tier.db_time_budget_ms()))),
        }
    }

    /// Charges a finished request's database time to the tenant.
    pub fn charge_db_time(&self, used: Duration) {
        self.budget().charge(used);
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, DbTimeBudget> {
        self.db_time.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses at once, before any database work, while the tenant is
    /// paying back more database time than a request may wait for: only
    /// the tenant's own signed-in work can put it in that debt, so this
    /// check cannot be used against it, and its refused requests cost
    /// nothing (not even the session lookup). Otherwise the debt a request
    /// waits off (usually none).
    pub fn refuse_while_in_debt(&self) -> Result<Duration, ApiError> {
        let debt = self.budget().wait();
        if debt >= REQUEST_WAIT {
            let seconds = debt.as_secs_f64().ceil() as u64;
            return Err(ApiError::unavailable(
                format!(
                    "this organisation used more database time than its plan allows; \
                     retry in {seconds} s"
                ),
                seconds,
            ));
        }
        Ok(debt)
    }

    /// Admits one request within the tenant's budget and request rate,
    /// waiting up to `REQUEST_WAIT` in all for its turn.
    pub async fn admit(&self) -> Result<(), ApiError> {
        let debt = self.refuse_while_in_debt()?;
        // The common case waits for nothing and must not touch a timer: a
        // zero sleep still waits for the timer wheel's next tick (~1 ms).
        if !debt.is_zero() {
            tokio::time::sleep(debt).await;
        }
        if self.requests.check().is_ok() {
            return Ok(());
        }
        tokio::time::timeout(REQUEST_WAIT - debt, self.requests.until_ready())
            .await
            .map_err(|_| {
                ApiError::unavailable(
                    "this organisation is using all of its capacity; retry shortly",
                    1,
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_request_puts_its_tenant_in_debt_for_as_long_as_it_takes_to_pay() {
        // Small tier: 100 ms of database time a second.
        let mut budget = DbTimeBudget::new(100.0);
        assert_eq!(budget.wait(), Duration::ZERO);
        budget.charge(Duration::from_millis(2_100));
        let wait = budget.wait();
        assert!(
            (Duration::from_millis(19_900)..=Duration::from_secs(20)).contains(&wait),
            "{wait:?}: 2 s over a 100 ms/s budget is 20 s of debt"
        );
        budget.charge(Duration::from_secs(3600));
        assert!(
            budget.wait() <= Duration::from_secs_f64(MAX_DEBT_SECONDS),
            "the debt is bounded"
        );
    }

    #[tokio::test]
    async fn a_tenant_in_debt_past_the_request_wait_is_refused_saying_how_long() {
        let policy = TenantPolicy::new(Tier::Small);
        assert!(policy.admit().await.is_ok());
        policy.charge_db_time(Duration::from_secs(5));
        let refused = policy.admit().await.expect_err("in debt");
        let retry_after = refused.retry_after.expect("says how long");
        assert!(retry_after > 25, "{retry_after}: capped at 30 s");
    }
}
