//! Signed-in sessions remembered in-process, so that a request whose
//! session was found a moment ago does not look it up again.
//!
//! Trust comes from PostgreSQL, not from time: triggers on each tenant's
//! `sessions` and `users` (tenant migration 0003) send
//! `NOTIFY atrium_sessions '<schema> <user id>'` whenever a session is
//! revoked, cut short or deleted while live, and whenever a user changes
//! (role, deactivation, deletion, name). Each cluster has a listener, and a
//! notification makes every server forget that user's sessions the moment
//! it arrives (milliseconds after the commit). A cluster's entries are
//! trusted only while its listener is connected; when it drops, or comes
//! back, they are all forgotten.
//!
//! An entry is used only while its session's idle clock needs no writing
//! (`touch_interval` since it was last seen): past that, the request goes
//! to the database, which writes the clock and remembers the session
//! afresh. So the database still sees every session at least once per
//! `touch_interval`, and the idle and absolute expiries hold exactly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::connection::listener::{self, Listening};
use crate::data::sessions::Authenticated;
use crate::registry::naming::tenant_schema_name;
use crate::{Fleet, TenantContext};

/// The channel the triggers notify.
pub const SESSION_CHANNEL: &str = "atrium_sessions";
/// How the listeners' sessions show in `pg_stat_activity`.
pub const SESSION_LISTENER_APPLICATION: &str = "atrium session listener";

/// At most this many sessions are remembered per cluster (a few hundred
/// bytes each, so at most some 25 MiB).
const MAX_ENTRIES: usize = 50_000;
/// A lookup that took longer than this is not remembered: the record of
/// recent invalidations it is checked against goes back no further.
const RECENT: Duration = Duration::from_secs(10);

/// Every cluster's remembered sessions.
pub struct SessionCache {
    clusters: HashMap<String, Arc<ClusterSessions>>,
}

impl SessionCache {
    /// Starts a listener on every cluster of `fleet` (each reconnects by
    /// itself for as long as the cache lives).
    pub fn start(fleet: &Fleet) -> Arc<Self> {
        let clusters = fleet
            .clusters()
            .iter()
            .map(|cluster| {
                let sessions = Arc::new(ClusterSessions::default());
                listener::spawn(
                    cluster.db.clone(),
                    SESSION_CHANNEL,
                    SESSION_LISTENER_APPLICATION,
                    Arc::downgrade(&sessions),
                );
                (cluster.name.clone(), sessions)
            })
            .collect();
        Arc::new(Self { clusters })
    }

    /// Remembers nothing: every request looks its session up.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self {
            clusters: HashMap::new(),
        })
    }

    /// The session with this token hash, if it is remembered for this
    /// tenant (the very context the directory resolved: a tenant changed
    /// in the registry since is a new context, and a miss), its expiry is
    /// ahead, and it was seen within `fresh` (beyond it, the caller writes
    /// the idle clock).
    pub fn get(
        &self,
        tenant: &Arc<TenantContext>,
        token_hash: &str,
        fresh: Duration,
    ) -> Option<Authenticated> {
        let cluster = self.listening(&tenant.cluster)?;
        let entries = cluster.entries.read().expect("not poisoned");
        let entry = entries.get(token_hash)?;
        let now = Utc::now();
        let seen = (now - entry.found.last_seen_at)
            .to_std()
            .unwrap_or_default();
        (Arc::ptr_eq(&entry.tenant, tenant) && entry.found.expires_at > now && seen <= fresh)
            .then(|| entry.found.clone())
    }

    /// Remembers a session the database found, unless something that may
    /// have changed it (a notification for its user, a listener outage)
    /// arrived since `read_started`, taken just before the lookup was sent.
    pub fn remember(
        &self,
        tenant: &Arc<TenantContext>,
        token_hash: &str,
        found: &Authenticated,
        read_started: Instant,
    ) {
        let Some(cluster) = self.listening(&tenant.cluster) else {
            return;
        };
        if read_started.elapsed() > RECENT {
            return;
        }
        let mut entries = cluster.entries.write().expect("not poisoned");
        {
            let forgotten = cluster.forgotten.lock().expect("not poisoned");
            let key = (tenant.id, found.user.id);
            if forgotten.all.is_some_and(|at| at >= read_started)
                || forgotten
                    .users
                    .get(&key)
                    .is_some_and(|at| *at >= read_started)
                || forgotten
                    .tenants
                    .get(&tenant.id)
                    .is_some_and(|at| *at >= read_started)
            {
                return;
            }
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token_hash) {
            // Full: start again rather than track which entry is oldest. It
            // costs each remembered session one lookup, once.
            entries.clear();
        }
        entries.insert(
            token_hash.to_owned(),
            Entry {
                tenant: tenant.clone(),
                found: found.clone(),
            },
        );
    }

    /// Forgets every session of tenant `tenant_id` at once, on this server:
    /// after a request of the tenant that wrote has committed, so that its
    /// own next request never meets what it changed (a logout, a password
    /// change, a user deactivated), whenever the notification arrives.
    pub fn forget_tenant(&self, tenant_id: i32) {
        for cluster in self.clusters.values() {
            cluster.forget_tenant(tenant_id);
        }
    }

    /// The cluster's sessions when its listener is connected.
    fn listening(&self, cluster: &str) -> Option<&Arc<ClusterSessions>> {
        self.clusters
            .get(cluster)
            .filter(|c| c.listening.load(Ordering::Acquire))
    }

    /// How many sessions are remembered, over every cluster.
    pub fn len(&self) -> usize {
        self.clusters
            .values()
            .map(|c| c.entries.read().expect("not poisoned").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Entry {
    /// Held, not only named: a tenant whose registry row changed is
    /// resolved to a new context, and its old entries stop matching.
    tenant: Arc<TenantContext>,
    found: Authenticated,
}

#[derive(Default)]
struct ClusterSessions {
    listening: AtomicBool,
    /// By token hash (64 hex digits, unique across tenants in practice;
    /// the tenant is checked on every hit anyway).
    entries: RwLock<HashMap<String, Entry>>,
    forgotten: Mutex<Forgotten>,
}

/// When each user's sessions, or all of them, were last forgotten: a
/// lookup that started before must not store what it read.
#[derive(Default)]
struct Forgotten {
    all: Option<Instant>,
    users: HashMap<(i32, i32), Instant>,
    tenants: HashMap<i32, Instant>,
}

impl ClusterSessions {
    fn forget(&self, user: Option<(i32, i32)>) {
        let mut entries = self.entries.write().expect("not poisoned");
        let mut forgotten = self.forgotten.lock().expect("not poisoned");
        let now = Instant::now();
        match user {
            Some((tenant_id, user_id)) => {
                entries.retain(|_, e| !(e.tenant.id == tenant_id && e.found.user.id == user_id));
                forgotten.users.retain(|_, at| at.elapsed() <= RECENT);
                forgotten.users.insert((tenant_id, user_id), now);
            }
            None => {
                entries.clear();
                forgotten.users.clear();
                forgotten.tenants.clear();
                forgotten.all = Some(now);
            }
        }
    }

    fn forget_tenant(&self, tenant_id: i32) {
        let mut entries = self.entries.write().expect("not poisoned");
        let mut forgotten = self.forgotten.lock().expect("not poisoned");
        entries.retain(|_, e| e.tenant.id != tenant_id);
        forgotten.tenants.retain(|_, at| at.elapsed() <= RECENT);
        forgotten.tenants.insert(tenant_id, Instant::now());
    }
}

/// `'<schema> <user id>'` as the tenant and user it names.
fn parse_payload(payload: &str) -> Option<(i32, i32)> {
    let (schema, user) = payload.split_once(' ')?;
    let tenant_id: i32 = schema.strip_prefix("tenant_")?.parse().ok()?;
    (tenant_schema_name(tenant_id) == schema).then_some(())?;
    Some((tenant_id, user.parse().ok()?))
}

impl Listening for ClusterSessions {
    fn changed(&self, payload: &str) {
        // Anything unreadable (a schema that is not a tenant's, say)
        // forgets everything: the safe reading.
        self.forget(parse_payload(payload));
    }

    fn listening(&self, on: bool) {
        if on {
            self.forget(None);
            self.listening.store(true, Ordering::Release);
        } else {
            self.listening.store(false, Ordering::Release);
            self.forget(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_a_tenant_schema_and_a_user() {
        assert_eq!(parse_payload("tenant_12 7"), Some((12, 7)));
        for bad in [
            "tenant_12",
            "tenant_x 7",
            "tenant_012 7",
            "moved_12_20260101 7",
            "tenant_12 seven",
            "",
        ] {
            assert_eq!(parse_payload(bad), None, "{bad}");
        }
    }
}
