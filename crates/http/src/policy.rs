//! Request policy: how much a signed-in tenant may ask of this server. A
//! request rate (a flood waits its turn, then is turned away) and a
//! database-time budget (a tenant whose requests run long pays it back
//! before it is served again). The store only caps a tenant's connections;
//! what a request may cost is decided here, per tier.
//!
//! A tier's limits are the tenant's across every server: each server takes
//! an equal share, by the number of live servers it sees in the registry
//! (`public.servers`, renewed every two seconds), and resizes its
//! policies when that number changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
pub(crate) struct Policies {
    by_tenant: Mutex<HashMap<(i32, Tier), Arc<TenantPolicy>>>,
    /// Live servers sharing the limits, this one included (0 until the
    /// first heartbeat, counted as 1).
    servers: AtomicUsize,
}

impl Policies {
    pub fn of(&self, tenant: &TenantContext) -> Arc<TenantPolicy> {
        let servers = self.servers();
        let mut by_tenant = self.by_tenant.lock().unwrap_or_else(|e| e.into_inner());
        let policy = by_tenant
            .entry((tenant.id, tenant.tier))
            .or_insert_with(|| Arc::new(TenantPolicy::new(tenant.tier, servers)));
        if policy.servers != servers {
            // Resized for the new share. The request rate starts over (at
            // most one burst more); database time owed stays owed.
            let resized = TenantPolicy::new(tenant.tier, servers);
            resized.budget().carry(&policy.budget());
            *policy = Arc::new(resized);
        }
        policy.clone()
    }

    pub fn servers(&self) -> usize {
        self.servers.load(Ordering::Relaxed).max(1)
    }

    /// Records how many servers are live; whether that changed.
    pub fn set_servers(&self, servers: usize) -> bool {
        self.servers.swap(servers.max(1), Ordering::Relaxed) != servers.max(1)
    }
}

pub(crate) struct TenantPolicy {
    /// The live servers whose share of the tier this is.
    servers: usize,
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

    /// Takes over `old`'s balance (a debt especially) within this
    /// budget's bounds.
    fn carry(&mut self, old: &DbTimeBudget) {
        self.balance_ms = old
            .balance_ms
            .clamp(-self.per_second_ms * MAX_DEBT_SECONDS, self.per_second_ms);
        self.updated = old.updated;
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
    /// This server's share of `tier` when `servers` servers are live: the
    /// rate, the burst and the database time divided between them.
    fn new(tier: Tier, servers: usize) -> Self {
        let servers = servers.max(1);
        // One request every `servers / rate` seconds: a fractional rate
        // (50 a second over 3 servers) stays exact.
        let period = Duration::from_secs_f64(servers as f64 / f64::from(tier.request_rate()));
        let burst = std::num::NonZeroU32::new((tier.request_burst() / servers as u32).max(1))
            .expect("at least one");
        Self {
            servers,
            requests: governor::RateLimiter::direct(
                governor::Quota::with_period(period)
                    .expect("a positive period")
                    .allow_burst(burst),
            ),
            db_time: Mutex::new(DbTimeBudget::new(
                f64::from(tier.db_time_budget_ms()) / servers as f64,
            )),
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
        let policy = TenantPolicy::new(Tier::Small, 1);
        assert!(policy.admit().await.is_ok());
        policy.charge_db_time(Duration::from_secs(5));
        let refused = policy.admit().await.expect_err("in debt");
        let retry_after = refused.retry_after.expect("says how long");
        assert!(retry_after > 25, "{retry_after}: capped at 30 s");
    }

    #[test]
    fn two_live_servers_each_take_half_of_the_tier() {
        let burst_admitted = |policy: &TenantPolicy| {
            (0..1000)
                .take_while(|_| policy.requests.check().is_ok())
                .count()
        };
        let alone = TenantPolicy::new(Tier::Small, 1);
        let shared = TenantPolicy::new(Tier::Small, 2);
        let burst = Tier::Small.request_burst() as usize;
        // A refill of one request takes 20 ms (40 shared): the loop is done
        // long before.
        assert_eq!(burst_admitted(&alone), burst);
        assert_eq!(burst_admitted(&shared), burst / 2);
        assert_eq!(
            shared.budget().per_second_ms * 2.0,
            f64::from(Tier::Small.db_time_budget_ms())
        );
    }

    #[test]
    fn a_resized_policy_keeps_the_tenants_debt() {
        let policies = Policies::default();
        let tenant = TenantContext::new(
            7,
            "Acme".into(),
            "acme".into(),
            "tenant_7".into(),
            "atr_x_tenant_7".into(),
            atrium_domain::TenantStatus::Active,
            Tier::Small,
            "default".into(),
            Arc::new(atrium_store::TenantConnectionCap::new(Tier::Small)),
        );
        let alone = policies.of(&tenant);
        alone.charge_db_time(Duration::from_secs(2));
        assert!(alone.refuse_while_in_debt().is_err());
        assert!(policies.set_servers(3));
        assert!(!policies.set_servers(3), "no change");
        let shared = policies.of(&tenant);
        assert_eq!(shared.servers, 3);
        assert!(
            shared.refuse_while_in_debt().is_err(),
            "a new share is no fresh start for a tenant in debt"
        );
        assert!(Arc::ptr_eq(&shared, &policies.of(&tenant)));
    }
}
