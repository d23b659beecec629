//! What requests without a valid session may spend. They never count
//! against a tenant's own request rate or database-time budget (those are
//! charged only once a user is signed in), so nobody can make a tenant
//! answer 429 or 503 to its own users by flooding it anonymously. Instead
//! they share two buckets: one per client address, and a larger one per
//! tenant for all of its anonymous traffic together.
//!
//! An address that ran out is refused for a moment even when it sends a
//! bearer token, before the token is looked up (garbage tokens cost a
//! database lookup each), unless the token signed a request in moments
//! ago: the people behind the same address (an office, a proxy) keep
//! working while the noise from it is turned away.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Anonymous requests a second from one client address, after a burst.
const PER_ADDRESS: u32 = 10;
const PER_ADDRESS_BURST: u32 = 40;
/// Anonymous requests a second into one tenant from all addresses.
const PER_TENANT: u32 = 100;
const PER_TENANT_BURST: u32 = 300;
/// Keys kept before idle ones are swept (each costs tens of bytes).
const SWEEP_ABOVE: usize = 100_000;
/// Addresses remembered as out of allowance (refused before any lookup).
const MAX_BLOCKED: usize = 100_000;

pub struct AnonymousLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_tenant: DefaultKeyedRateLimiter<i32>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    last_sweep: Mutex<Instant>,
    /// Hashes of tokens that were valid moments ago, and until when they
    /// vouch for their sender. Only a way past `blocked`: every request
    /// is still authenticated against the database.
    vouched: Mutex<lru::LruCache<[u8; 32], Instant>>,
}

/// How long a token that worked vouches for its sender.
const VOUCH_FOR: Duration = Duration::from_secs(60);
/// Tokens remembered as recently valid.
const MAX_VOUCHED: usize = 20_000;

impl Default for AnonymousLimits {
    fn default() -> Self {
        let quota = |rate, burst| {
            Quota::per_second(NonZeroU32::new(rate).expect("positive"))
                .allow_burst(NonZeroU32::new(burst).expect("positive"))
        };
        Self {
            by_address: governor::RateLimiter::keyed(quota(PER_ADDRESS, PER_ADDRESS_BURST)),
            by_tenant: governor::RateLimiter::keyed(quota(PER_TENANT, PER_TENANT_BURST)),
            blocked: Mutex::default(),
            last_sweep: Mutex::new(Instant::now()),
            vouched: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_VOUCHED).expect("positive"),
            )),
        }
    }
}

impl AnonymousLimits {
    /// Counts one anonymous request into `tenant_id` from `address`; 429
    /// when either bucket is empty.
    pub fn admit(&self, tenant_id: i32, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.sweep();
        let now = DefaultClock::default().now();
        if let Some(address) = address
            && let Err(not_until) = self.by_address.check_key(&address)
        {
            let wait = not_until.wait_time_from(now);
            self.block(address, wait);
            return Err(refused(wait));
        }
        self.by_tenant
            .check_key(&tenant_id)
            .map_err(|not_until| refused(not_until.wait_time_from(now)))
    }

    /// 429 for an address that ran out of anonymous requests a moment
    /// ago, unless `token` worked moments ago. The common case (an address
    /// in good standing) hashes nothing.
    pub fn refuse_blocked(&self, address: Option<IpAddr>, token: &str) -> Result<(), ApiError> {
        let Some(address) = address else {
            return Ok(());
        };
        let until = self
            .blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .copied();
        let now = Instant::now();
        match until {
            Some(until) if until > now && !self.vouched_for(token, now) => {
                Err(refused(until - now))
            }
            _ => Ok(()),
        }
    }

    fn vouched_for(&self, token: &str, now: Instant) -> bool {
        self.vouched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token_hash(token))
            .is_some_and(|until| *until > now)
    }

    /// `token` just signed a request in.
    pub fn vouch(&self, token: &str) {
        self.vouched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(token_hash(token), Instant::now() + VOUCH_FOR);
    }

    fn block(&self, address: IpAddr, wait: Duration) {
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_BLOCKED {
                return; // the bucket still refuses it; only the shortcut is lost
            }
        }
        blocked.insert(address, Instant::now() + wait);
    }

    /// Forgets idle keys at most once a second, once there are many.
    fn sweep(&self) {
        if self.by_address.len() + self.by_tenant.len() < SWEEP_ABOVE {
            return;
        }
        let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        self.by_address.retain_recent();
        self.by_tenant.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_tenant.shrink_to_fit();
    }
}

/// Tokens are remembered by their hash, never as given.
fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn refused(wait: Duration) -> ApiError {
    ApiError::rate_limited(
        "too many requests without signing in; retry shortly",
        wait.as_secs_f64().ceil().max(1.0) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_runs_out_alone_and_is_then_refused_early() {
        let limits = AnonymousLimits::default();
        let (noisy, quiet) = ("10.0.0.1".parse().ok(), "10.0.0.2".parse().ok());
        let admitted = (0..100).filter(|_| limits.admit(1, noisy).is_ok()).count();
        assert!((PER_ADDRESS_BURST as usize..=PER_ADDRESS_BURST as usize + 2).contains(&admitted));
        assert!(limits.refuse_blocked(noisy, "garbage").is_err());
        assert!(limits.refuse_blocked(quiet, "garbage").is_ok());
        limits.vouch("a real token");
        assert!(
            limits.refuse_blocked(noisy, "a real token").is_ok(),
            "a token that worked gets past the block"
        );
        assert!(
            limits.admit(1, quiet).is_ok(),
            "another address is not affected"
        );
    }

    #[test]
    fn a_tenant_bucket_bounds_all_its_anonymous_traffic() {
        let limits = AnonymousLimits::default();
        let admitted = (0..1000u32)
            .filter(|i| {
                let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                limits.admit(7, Some(address)).is_ok()
            })
            .count();
        assert!(admitted <= PER_TENANT_BURST as usize + 5, "{admitted}");
        assert!(limits.admit(8, "10.9.9.9".parse().ok()).is_ok());
    }
}
