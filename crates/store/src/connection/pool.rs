//! The pool's connections: what each has served, when it retires, and
//! the counts an operator sizes a pool by.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager};

/// A pooled session is retired once it has served this many distinct
/// tenants (or reached this age). Each tenant a PostgreSQL backend touches
/// stays in its catalog caches, which never shrink; retiring sessions
/// bounds a backend's memory, and the cost of the cache resets that other
/// sessions' DDL forces on it, whatever the number of tenants. With tenant
/// lanes (below) a lane's session serves about `tenants / lanes` tenants,
/// so the bound is set for a pool of 32 to keep 10,000 tenants warm.
pub const CONNECTION_MAX_TENANTS: usize = 500;
/// Each session retires at a random point in the last quarter of this
/// age, so that sessions opened together (a server's lanes, at start) do
/// not all retire, and meet their tenants cold, in the same minute.
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// A session that has created this many tenant schemas (a tenant or a
/// spare) is retired too. Every catalog change a session makes is first
/// applied to its own caches, and some of them (the plan cache, the type
/// cache) are walked whole for each change: creating a tenant on a session
/// holding hundreds of tenants' entries took twice as long as on a fresh
/// one. Reconnecting costs a few milliseconds every so many tenants.
pub const CONNECTION_MAX_SCHEMAS_CREATED: usize = 25;

/// A pooled PostgreSQL session and the tenants it has served.
pub struct Connection {
    client: ClientWrapper,
    tenants_seen: HashSet<i32>,
    schemas_created: usize,
    counters: Arc<PoolCounters>,
    /// `ConnectionLimits::max_age`, less up to a quarter.
    max_age: Duration,
}

impl std::ops::Deref for Connection {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl Connection {
    pub(crate) fn note_tenant(&mut self, tenant_id: i32) {
        if self.tenants_seen.insert(tenant_id) {
            self.counters.first_visits.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn note_schema_created(&mut self) {
        self.schemas_created += 1;
    }
}

/// When a pooled session is retired.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_tenants: usize,
    pub max_age: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_tenants: CONNECTION_MAX_TENANTS,
            max_age: CONNECTION_MAX_AGE,
        }
    }
}

/// deadpool's PostgreSQL manager, plus retirement by tenants served.
pub struct ConnectionManager {
    pub(crate) inner: Manager,
    pub(crate) limits: ConnectionLimits,
    pub(crate) counters: Arc<PoolCounters>,
}

/// Where tenant sessions came from, and how many sessions were opened and
/// retired: an operator sizing `pool_size` and `session_max_tenants` for
/// a fleet reads from these whether backends keep their tenants warm.
#[derive(Default)]
pub(crate) struct PoolCounters {
    pub(crate) opened: AtomicU64,
    pub(crate) retired: AtomicU64,
    pub(crate) first_visits: AtomicU64,
    /// By [`TenantConnectionSource`].
    pub(crate) tenant_connections: [AtomicU64; 4],
}

/// Where a tenant transaction found its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantConnectionSource {
    /// Its own lane, free at once or after a short wait: a backend that
    /// has most likely met the tenant before.
    Lane,
    /// A shared session, free at once or after waiting with other work.
    Shared,
    /// Another tenant's lane, free while the tenant's own and every shared
    /// session were busy.
    OtherLane,
    /// The pool has no lanes (it is too small for them).
    NoLanes,
}

impl TenantConnectionSource {
    pub const ALL: [Self; 4] = [Self::Lane, Self::Shared, Self::OtherLane, Self::NoLanes];

    pub fn label(self) -> &'static str {
        match self {
            Self::Lane => "lane",
            Self::Shared => "shared",
            Self::OtherLane => "other_lane",
            Self::NoLanes => "no_lanes",
        }
    }
}

/// Totals since the pool was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolActivity {
    pub connections_opened: u64,
    /// Sessions closed by the retirement rules (tenants served, schemas
    /// made, age), each followed by a new one when next needed.
    pub connections_retired: u64,
    /// Tenant transactions on a session that had not served the tenant
    /// before: its backend reads the tenant's catalog entries afresh
    /// (milliseconds, against a fraction of one for a warm request).
    pub first_visits: u64,
    /// Tenant transactions, by where their session came from, in the
    /// order of [`TenantConnectionSource::ALL`].
    pub tenant_connections: [u64; 4],
}

impl std::ops::AddAssign for PoolActivity {
    fn add_assign(&mut self, other: Self) {
        self.connections_opened += other.connections_opened;
        self.connections_retired += other.connections_retired;
        self.first_visits += other.first_visits;
        for (mine, theirs) in self
            .tenant_connections
            .iter_mut()
            .zip(other.tenant_connections)
        {
            *mine += theirs;
        }
    }
}

impl PoolActivity {
    pub fn tenant_connections_from(&self, source: TenantConnectionSource) -> u64 {
        self.tenant_connections[source as usize]
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            connections_opened: self.connections_opened - earlier.connections_opened,
            connections_retired: self.connections_retired - earlier.connections_retired,
            first_visits: self.first_visits - earlier.first_visits,
            tenant_connections: std::array::from_fn(|i| {
                self.tenant_connections[i] - earlier.tenant_connections[i]
            }),
        }
    }
}

impl deadpool::managed::Manager for ConnectionManager {
    type Type = Connection;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Connection, tokio_postgres::Error> {
        let client = self.inner.create().await?;
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Connection {
            client,
            tenants_seen: HashSet::new(),
            schemas_created: 0,
            counters: self.counters.clone(),
            max_age: self.limits.max_age.mul_f64(rand::random_range(0.75..=1.0)),
        })
    }

    async fn recycle(
        &self,
        session: &mut Connection,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<tokio_postgres::Error> {
        if session.tenants_seen.len() >= self.limits.max_tenants
            || session.schemas_created >= CONNECTION_MAX_SCHEMAS_CREATED
            || metrics.age() >= session.max_age
        {
            self.counters.retired.fetch_add(1, Ordering::Relaxed);
            return Err(deadpool::managed::RecycleError::message(
                "retired: served enough tenants",
            ));
        }
        self.inner.recycle(&mut session.client, metrics).await
    }

    fn detach(&self, session: &mut Connection) {
        self.inner.detach(&mut session.client);
    }
}

pub type Pool = deadpool::managed::Pool<ConnectionManager>;
pub type PooledConnection = deadpool::managed::Object<ConnectionManager>;
