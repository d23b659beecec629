//! Host → tenant, without a registry query on the common request.
//!
//! Lookups are cached in-process. Every change to a tenant row sends
//! `NOTIFY atrium_tenants, '<id>'` in the same transaction, and a listener
//! drops that tenant from the cache, so a suspended or renamed tenant is
//! seen by every server process within moments. The cache is trusted only
//! while the listener is connected: when its connection drops, the cache is
//! flushed and lookups go to the registry until it is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A backstop: no cached entry is trusted for longer than this, whatever
/// the listener says. The listener's heartbeat is what catches a listener
/// connection that died silently, within seconds; a short TTL would instead
/// send every tenant's lookup back to the registry every so often, which
/// at ten thousand tenants is hundreds of registry queries a second.
const CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// How the listener's session shows in `pg_stat_activity`.
pub const LISTENER_APPLICATION: &str = "atrium tenant listener";

use atrium_domain::{TenantStatus, Tier};

use crate::connection::listener::{self, Listening};
use crate::connection::tenant::TenantConnectionCap;
use crate::registry::TENANT_CHANNEL;
use crate::registry::naming::tenant_role_name;
use crate::{Database, StoreError, TenantContext};

pub struct TenantDirectory {
    db: Database,
    role_prefix: String,
    by_subdomain: RwLock<HashMap<String, (Arc<TenantContext>, Instant)>>,
    /// Bumped by every invalidation, so a lookup that raced with a change
    /// does not cache what it read before the change.
    generation: AtomicU64,
    listening: AtomicBool,
    /// Each tenant's connection cap, by id and tier: caps outlive cached
    /// entries, so invalidations and listener outages never hand a tenant
    /// a fresh, full set of permits.
    caps: std::sync::Mutex<HashMap<(i32, Tier), Arc<TenantConnectionCap>>>,
}

impl TenantDirectory {
    /// Starts the directory and its listener (which reconnects by itself
    /// for as long as the directory lives).
    pub async fn start(db: Database) -> anyhow::Result<Arc<Self>> {
        let role_prefix = {
            let session = db.connection().await?;
            crate::registry::role_prefix(&session).await?
        };
        let directory = Arc::new(Self {
            db,
            role_prefix,
            by_subdomain: RwLock::default(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            caps: std::sync::Mutex::default(),
        });
        listener::spawn(
            directory.db.clone(),
            TENANT_CHANNEL,
            LISTENER_APPLICATION,
            Arc::downgrade(&directory),
        );
        Ok(directory)
    }

    /// The tenant at `subdomain` (lower case), if there is one.
    pub async fn resolve(&self, subdomain: &str) -> Result<Option<Arc<TenantContext>>, StoreError> {
        if self.listening.load(Ordering::Acquire)
            && let Some((hit, at)) = self
                .by_subdomain
                .read()
                .expect("not poisoned")
                .get(subdomain)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(hit.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let session = self.db.connection().await?;
        let row = session
            .query_opt(
                "SELECT id, name, subdomain, schema_name, status, tier, cluster, maintenance_message
                   FROM public.tenants
                 WHERE subdomain = $1",
                &[&subdomain],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i32 = row.get(0);
        let tier = Tier::parse(row.get(5)).map_err(anyhow::Error::from)?;
        let cap = self
            .caps
            .lock()
            .expect("not poisoned")
            .entry((id, tier))
            .or_insert_with(|| Arc::new(TenantConnectionCap::new(tier)))
            .clone();
        let mut tenant = TenantContext::new(
            id,
            row.get(1),
            row.get(2),
            row.get(3),
            tenant_role_name(&self.role_prefix, id),
            TenantStatus::parse(row.get(4)).map_err(anyhow::Error::from)?,
            tier,
            row.get(6),
            cap,
        );
        tenant.maintenance_message = row.get(7);
        let tenant = Arc::new(tenant);
        if self.listening.load(Ordering::Acquire) {
            let mut cache = self.by_subdomain.write().expect("not poisoned");
            if self.generation.load(Ordering::Acquire) == generation {
                cache.insert(subdomain.to_owned(), (tenant.clone(), Instant::now()));
            }
        }
        Ok(Some(tenant))
    }

    /// Whether lookups are currently served from the cache.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Drops tenant `id` from this process's cache now. The process that
    /// changed a tenant calls this before it answers, so its next request
    /// never meets the old entry, whenever the notification arrives; a
    /// lookup that read the row before the change does not store it (see
    /// `generation`).
    pub fn forget(&self, tenant_id: i32) {
        self.invalidate(Some(tenant_id));
    }

    fn invalidate(&self, tenant_id: Option<i32>) {
        let mut cache = self.by_subdomain.write().expect("not poisoned");
        self.generation.fetch_add(1, Ordering::AcqRel);
        match tenant_id {
            Some(id) => cache.retain(|_, (t, _)| t.id != id),
            None => cache.clear(),
        }
    }
}

impl Listening for TenantDirectory {
    fn changed(&self, payload: &str) {
        // A payload that is not a tenant id is from nobody we know:
        // forgetting every tenant is the safe reading.
        self.invalidate(payload.parse::<i32>().ok());
    }

    fn forget_all(&self) {
        self.invalidate(None);
    }

    fn listening_flag(&self) -> &AtomicBool {
        &self.listening
    }
}
