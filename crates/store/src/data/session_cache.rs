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
use std::sync::{Arc, RwLock};
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
        let state = cluster.state.read().expect("not poisoned");
        let entry = state.by_tenant.get(&tenant.id)?.get(token_hash)?;
        let now = Utc::now();
        let seen = (now - entry.found.last_seen_at)
            .to_std()
            .unwrap_or_default();
        (Arc::ptr_eq(&entry.tenant, tenant) && entry.found.expires_at > now && seen <= fresh)
            .then(|| entry.found.clone())
    }

    /// Remembers a session the database found, unless something that may
    /// have changed it (a notification for its user, a write of its
    /// tenant, a listener outage) came since `read_started`, taken just
    /// before the lookup was sent.
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
        let mut state = cluster.state.write().expect("not poisoned");
        let since_read = [
            Forget::All,
            Forget::Tenant(tenant.id),
            Forget::User(tenant.id, found.user.id),
        ]
        .iter()
        .any(|what| {
            state
                .forgotten
                .get(what)
                .is_some_and(|at| *at >= read_started)
        });
        if since_read {
            return;
        }
        if state.count >= MAX_ENTRIES {
            // Full: start again rather than track which entry is oldest. It
            // costs each remembered session one lookup, once.
            state.by_tenant.clear();
            state.count = 0;
        }
        let entry = Entry {
            tenant: tenant.clone(),
            found: found.clone(),
        };
        let added = state
            .by_tenant
            .entry(tenant.id)
            .or_default()
            .insert(token_hash.to_owned(), entry)
            .is_none();
        state.count += usize::from(added);
    }

    /// Forgets every session of tenant `tenant_id` at once, on this server:
    /// after a request of the tenant that wrote has committed, so that its
    /// own next request never meets what it changed (a logout, a password
    /// change, a user deactivated), whenever the notification arrives.
    pub fn forget_tenant(&self, tenant_id: i32) {
        for cluster in self.clusters.values() {
            cluster.forget(Forget::Tenant(tenant_id));
        }
    }

    /// The cluster's sessions when its listener is connected.
    fn listening(&self, cluster: &str) -> Option<&Arc<ClusterSessions>> {
        self.clusters
            .get(cluster)
            .filter(|c| c.listening.load(Ordering::Acquire))
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
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// By tenant, then token hash: forgetting a tenant or one of its users
    /// touches that tenant's entries alone.
    by_tenant: HashMap<i32, HashMap<String, Entry>>,
    count: usize,
    /// What was forgotten in the last [`RECENT`] seconds, and when: a
    /// lookup that started before must not store what it read.
    forgotten: HashMap<Forget, Instant>,
}

/// What a change makes a server forget.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Forget {
    All,
    Tenant(i32),
    /// A tenant's user.
    User(i32, i32),
}

impl ClusterSessions {
    fn forget(&self, what: Forget) {
        let mut state = self.state.write().expect("not poisoned");
        let removed = match what {
            Forget::All => {
                state.forgotten.clear();
                std::mem::take(&mut state.by_tenant)
                    .values()
                    .map(HashMap::len)
                    .sum()
            }
            Forget::Tenant(tenant_id) => state.by_tenant.remove(&tenant_id).map_or(0, |e| e.len()),
            Forget::User(tenant_id, user_id) => match state.by_tenant.get_mut(&tenant_id) {
                Some(entries) => {
                    let before = entries.len();
                    entries.retain(|_, e| e.found.user.id != user_id);
                    before - entries.len()
                }
                None => 0,
            },
        };
        state.count -= removed;
        state.forgotten.retain(|_, at| at.elapsed() <= RECENT);
        state.forgotten.insert(what, Instant::now());
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
        self.forget(parse_payload(payload).map_or(Forget::All, |(t, u)| Forget::User(t, u)));
    }

    fn forget_all(&self) {
        self.forget(Forget::All);
    }

    fn listening_flag(&self) -> &AtomicBool {
        &self.listening
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
