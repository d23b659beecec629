//! Connections: the pool every request and command shares, and single
//! dedicated sessions for work that must hold a session (advisory locks,
//! LISTEN).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use deadpool::managed::Timeouts;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::Client;

pub use crate::connection::pool::{
    CONNECTION_MAX_AGE, CONNECTION_MAX_SCHEMAS_CREATED, CONNECTION_MAX_TENANTS, ConnectionLimits,
    Pool, PoolActivity, PooledConnection, TenantConnectionSource,
};
use crate::connection::pool::{ConnectionManager, PoolCounters};
use crate::connection::tls::Connector;

/// The lowest PostgreSQL major version Atrium runs on.
pub const MIN_SERVER_VERSION: i32 = 150000;

/// Every pooled session starts with a search path that resolves none of our
/// tables, so a query run outside a tenant transaction fails loudly instead
/// of reading the registry. Registry SQL is always schema-qualified.
/// The server's NOTICEs ("already exists, skipping" from idempotent DDL,
/// once per tenant on every start) are not news: only warnings come back.
const SESSION_OPTIONS: &str = "-c search_path=pg_catalog -c client_min_messages=warning";

/// Sessions a server keeps to the database unless configured otherwise.
pub const DEFAULT_POOL_SIZE: usize = 32;

/// How long a tenant transaction waits for its busy lane before taking a
/// session whose backend has not met the tenant.
const LANE_WAIT: Duration = Duration::from_millis(10);

/// A pool of this size or more keeps part of its sessions as tenant lanes.
const MIN_POOL_FOR_LANES: usize = 8;

/// How a pool of `max_connections` is split: sessions shared by all work,
/// and single-session lanes that each tenant prefers one of.
fn split_pool(max_connections: usize) -> (usize, usize) {
    let max_connections = max_connections.max(2);
    if max_connections < MIN_POOL_FOR_LANES {
        return (max_connections, 0);
    }
    let shared = (max_connections / 4).max(2);
    (shared, max_connections - shared)
}

/// The warning of [`Database::open_files_advice`]: a lane's backend meets
/// about `tenants / lanes` tenants (at most `session_max_tenants` before
/// it retires), each with `files_per_tenant` tables and indexes.
fn open_files_advice(
    max_files_per_process: usize,
    tenants: usize,
    lanes: usize,
    session_max_tenants: usize,
    files_per_tenant: usize,
) -> Option<String> {
    let per_backend = tenants.div_ceil(lanes.max(1)).min(session_max_tenants);
    let needed = per_backend * files_per_tenant;
    (needed > max_files_per_process).then(|| {
        format!(
            "PostgreSQL lets a backend keep {max_files_per_process} files open \
             (max_files_per_process), but each of this server's lanes serves about \
             {per_backend} tenants with {files_per_tenant} tables and indexes each, about \
             {needed} files: backends will close and reopen files on most requests. Raise \
             max_files_per_process and the service's open-files limit (docs/operations.md, \
             \"PostgreSQL for a large fleet\")"
        )
    })
}

/// Takes a session only if one is free now (or can be connected).
const NO_WAIT: Timeouts = Timeouts {
    wait: Some(Duration::ZERO),
    create: Some(Duration::from_secs(10)),
    recycle: None,
};

/// Connections with the rights to change the schema: migrations,
/// provisioning, maintenance, archives and backups, roles. A type of its
/// own, so that fleet work cannot be handed the application's pool (whose
/// login may not create a schema) nor a request the operator's. Where one
/// login does both (the embedded default, tests), [`AdminDatabase::new`]
/// says so explicitly.
#[derive(Clone, Debug)]
pub struct AdminDatabase(Database);

impl AdminDatabase {
    pub fn new(db: Database) -> Self {
        Self(db)
    }

    /// The same connections as a plain pool: for the store's fleet code,
    /// for reading the registry as the operator, and for the benchmarks'
    /// scratch databases. Handing it to tenant work is a visible step.
    pub fn database(&self) -> &Database {
        &self.0
    }

    pub fn close(&self) {
        self.0.close();
    }
}

#[derive(Clone)]
pub struct Database {
    /// Registry and operator work, and tenants whose lane is busy.
    pool: Pool,
    /// One session each. Tenant `t` prefers lane `t mod lanes`, so a
    /// backend keeps meeting the same few hundred tenants, whose catalog
    /// entries stay warm in it, instead of every tenant of the fleet cold.
    lanes: Arc<[Pool]>,
    config: tokio_postgres::Config,
    tls: Connector,
    limits: ConnectionLimits,
    counters: Arc<PoolCounters>,
    /// A transaction-mode pooler (PgBouncer) is in between: a server
    /// session lasts one transaction, so nothing may outlive it (no
    /// statements prepared for later, no session options).
    pooler: bool,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects a pool of at most `max_connections` sessions and checks the
    /// server's version.
    pub async fn connect(url: &str, max_connections: usize) -> anyhow::Result<Self> {
        Self::connect_with_limits(url, max_connections, ConnectionLimits::default()).await
    }

    /// `connect`, retiring sessions by `limits`.
    pub async fn connect_with_limits(
        url: &str,
        max_connections: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let db = Self::connect_lazily(url, max_connections, limits)?;
        db.check_server_version().await?;
        Ok(db)
    }

    /// `connect_with_limits` without reaching the server: sessions are
    /// opened when first needed. A data cluster that is down when the
    /// server starts must not stop it (only that cluster's tenants wait).
    pub fn connect_lazily(
        url: &str,
        max_connections: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let (config, tls) = crate::connection::tls::parse_url(url)?;
        let pooler = crate::connection::tls::transaction_pooler(url)?;
        Self::build(config, tls, max_connections, limits, pooler)
    }

    /// Whether statements may be prepared once per session and reused
    /// (not behind a transaction-mode pooler).
    pub(crate) fn caches_statements(&self) -> bool {
        !self.pooler
    }

    async fn connect_config(
        config: tokio_postgres::Config,
        tls: Connector,
        max_connections: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let db = Self::build(config, tls, max_connections, limits, false)?;
        db.check_server_version().await?;
        Ok(db)
    }

    fn build(
        mut config: tokio_postgres::Config,
        tls: Connector,
        max_connections: usize,
        limits: ConnectionLimits,
        pooler: bool,
    ) -> anyhow::Result<Self> {
        // PgBouncer refuses startup options, and a session setting would
        // not follow the client from one server session to the next (the
        // tenant context is transaction-local anyway).
        if !pooler {
            config.options(SESSION_OPTIONS);
        }
        if config.get_application_name().is_none() {
            config.application_name("atrium");
        }
        config.connect_timeout(Duration::from_secs(10));
        let (shared, lanes) = split_pool(max_connections);
        let counters = Arc::new(PoolCounters::default());
        let build = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(ConnectionManager {
                inner: manager,
                limits,
                counters: counters.clone(),
            })
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .context("building the connection pool")
        };
        let pool = build(shared)?;
        let lanes = (0..lanes).map(|_| build(1)).collect::<Result<_, _>>()?;
        Ok(Self {
            pool,
            lanes,
            config,
            tls,
            limits,
            counters,
            pooler,
        })
    }

    /// The sessions of the pool, lanes included, and how many are in use
    /// or waited for.
    pub fn status(&self) -> deadpool::Status {
        let mut status = self.pool.status();
        for lane in self.lanes.iter() {
            let lane = lane.status();
            status.max_size += lane.max_size;
            status.size += lane.size;
            status.available += lane.available;
            status.waiting += lane.waiting;
        }
        status
    }

    /// Single-session lanes of this pool (none below `MIN_POOL_FOR_LANES`).
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// A warning for the operator when PostgreSQL lets a backend keep fewer
    /// files open than one of this pool's lanes needs for its share of the
    /// fleet; `None` when it is enough.
    pub async fn open_files_advice(&self) -> anyhow::Result<Option<String>> {
        let row = self
            .connection()
            .await?
            .query_one(
                "SELECT current_setting('max_files_per_process')::int,
                        (SELECT count(*)::int FROM public.tenants),
                        (SELECT count(*)::int FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = 'template' AND c.relkind IN ('r', 'i', 'S'))",
                &[],
            )
            .await?;
        Ok(open_files_advice(
            row.get::<_, i32>(0).max(0) as usize,
            row.get::<_, i32>(1).max(0) as usize,
            self.lane_count(),
            self.limits.max_tenants,
            row.get::<_, i32>(2).max(0) as usize,
        ))
    }

    /// Sessions opened and retired, and where tenant transactions found
    /// their sessions, since the pool was made.
    pub fn activity(&self) -> PoolActivity {
        let counters = &self.counters;
        PoolActivity {
            connections_opened: counters.opened.load(Ordering::Relaxed),
            connections_retired: counters.retired.load(Ordering::Relaxed),
            first_visits: counters.first_visits.load(Ordering::Relaxed),
            tenant_connections: std::array::from_fn(|i| {
                counters.tenant_connections[i].load(Ordering::Relaxed)
            }),
        }
    }

    /// Closes every session of the pool; later requests for one fail.
    pub fn close(&self) {
        self.pool.close();
        for lane in self.lanes.iter() {
            lane.close();
        }
    }

    /// The database this connects to.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// The connection settings as libpq environment variables, for the
    /// PostgreSQL client programs (`pg_dump`, `pg_restore`): in the
    /// environment, the password is not on their command line for every
    /// user of the machine to see.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        use tokio_postgres::config::Host;
        let mut env = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            env.push((
                "PGHOST",
                match host {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(dir) => dir.display().to_string(),
                },
            ));
        }
        if let Some(port) = self.config.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        if let Some(user) = self.config.get_user() {
            env.push(("PGUSER", user.to_owned()));
        }
        if let Some(password) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        if let Some(dbname) = self.config.get_dbname() {
            env.push(("PGDATABASE", dbname.to_owned()));
        }
        env
    }

    /// Whether the database answers a trivial query (readiness).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.connection().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// A pooled connection, outside any tenant: only the store's own
    /// registry and fleet code works on one directly (and, with the `raw`
    /// feature, tests and the benchmarks' direct-SQL side).
    #[cfg(feature = "raw")]
    pub async fn connection(&self) -> anyhow::Result<PooledConnection> {
        self.pooled().await
    }

    #[cfg(not(feature = "raw"))]
    pub(crate) async fn connection(&self) -> anyhow::Result<PooledConnection> {
        self.pooled().await
    }

    async fn pooled(&self) -> anyhow::Result<PooledConnection> {
        self.pool
            .get()
            .await
            .context("getting a database connection from the pool")
    }

    /// A pooled session for work in tenant `tenant_id`'s schema.
    ///
    /// Its lane if free, else its lane after waiting up to `LANE_WAIT`,
    /// however many wait with it: the lane's current transaction is usually
    /// about to end, and a backend meeting a tenant for the first time
    /// spends milliseconds of CPU reading its catalog entries, which on a
    /// loaded server slows every request, not just this one. Then a free shared
    /// session, then any free lane, then the first shared session to come
    /// free. Overflow takes shared sessions before other lanes so that a
    /// lane's backend keeps to its own tenants and is not retired early.
    pub async fn tenant_session(&self, tenant_id: i32) -> anyhow::Result<PooledConnection> {
        use TenantConnectionSource::{Lane, NoLanes, OtherLane, Shared};
        use deadpool::managed::{PoolError, TimeoutType};
        if self.lanes.is_empty() {
            return self.connection_counted(NoLanes).await;
        }
        let home = tenant_id.unsigned_abs() as usize % self.lanes.len();
        let lane = &self.lanes[home];
        let wait_for_lane = Timeouts {
            wait: Some(LANE_WAIT),
            ..NO_WAIT
        };
        // A free lane is taken at once; `wait_for_lane` only bounds the wait
        // for a busy one.
        let attempts = [(lane, wait_for_lane, Lane), (&self.pool, NO_WAIT, Shared)]
            .into_iter()
            .chain(
                self.lanes[home + 1..]
                    .iter()
                    .chain(&self.lanes[..home])
                    .map(|other| (other, NO_WAIT, OtherLane)),
            );
        for (pool, timeouts, source) in attempts {
            match pool.timeout_get(&timeouts).await {
                Ok(session) => {
                    self.count(source);
                    return Ok(session);
                }
                Err(PoolError::Timeout(TimeoutType::Wait)) => continue,
                Err(PoolError::Closed) => {
                    return Err(PoolError::<tokio_postgres::Error>::Closed)
                        .context("getting a database connection from the pool");
                }
                // A free slot whose connection could not be made: the
                // server is likely unreachable for every pool alike, so
                // stop trying slots one by one and wait like other work.
                Err(_) => break,
            }
        }
        self.connection_counted(Shared).await
    }

    async fn connection_counted(
        &self,
        source: TenantConnectionSource,
    ) -> anyhow::Result<PooledConnection> {
        let session = self.connection().await?;
        self.count(source);
        Ok(session)
    }

    fn count(&self, source: TenantConnectionSource) {
        self.counters.tenant_connections[source as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A session of its own, outside the pool, closed when the client
    /// drops: for session-level locks and `LISTEN` (public with `raw`, as
    /// [`Database::connection`]).
    #[cfg(feature = "raw")]
    pub async fn dedicated_connection(&self) -> anyhow::Result<Client> {
        self.open_dedicated().await
    }

    #[cfg(not(feature = "raw"))]
    pub(crate) async fn dedicated_connection(&self) -> anyhow::Result<Client> {
        self.open_dedicated().await
    }

    async fn open_dedicated(&self) -> anyhow::Result<Client> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .context("connecting to the database")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "dedicated database session ended");
            }
        });
        Ok(client)
    }

    /// Creates database `name` on the same server and connects a pool to
    /// it (benchmarks work in a scratch database of their own).
    pub async fn create_sibling(&self, name: &str, max_connections: usize) -> anyhow::Result<Self> {
        let session = self.connection().await?;
        session
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("creating database {name}"))?;
        self.sibling(name, max_connections).await
    }

    /// A pool to database `name` on the same server.
    pub async fn sibling(&self, name: &str, max_connections: usize) -> anyhow::Result<Self> {
        let mut config = self.config.clone();
        config.dbname(name);
        Self::connect_config(config, self.tls.clone(), max_connections, self.limits).await
    }

    /// Drops database `name` (closing its sessions) and the tenant roles
    /// its registry made: roles belong to the server, not the database.
    pub async fn drop_sibling(&self, sibling: Self, name: &str) -> anyhow::Result<()> {
        let prefix: Option<String> = match sibling.connection().await {
            Ok(s) => s
                .query_opt("SELECT role_prefix FROM public.installation", &[])
                .await
                .ok()
                .flatten()
                .map(|r| r.get(0)),
            Err(_) => None,
        };
        sibling.close();
        let session = self.connection().await?;
        session
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            ))
            .await?;
        if let Some(prefix) = prefix {
            let roles = session
                .query(
                    "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)",
                    &[&format!("{prefix}_")],
                )
                .await?;
            for role in roles {
                let role: String = role.get(0);
                session
                    .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
                    .await?;
            }
        }
        Ok(())
    }

    /// A pool to the same database as another login (trust or peer
    /// authentication, as on the embedded cluster's socket).
    pub async fn as_user(&self, user: &str, max_connections: usize) -> anyhow::Result<Self> {
        let mut config = self.config.clone();
        config.user(user);
        Self::connect_config(config, self.tls.clone(), max_connections, self.limits).await
    }

    /// Another pool to the same database, of a different size.
    pub async fn resized(&self, max_connections: usize) -> anyhow::Result<Self> {
        Self::connect_config(
            self.config.clone(),
            self.tls.clone(),
            max_connections,
            self.limits,
        )
        .await
    }

    /// Another pool to the same database whose sessions show as
    /// `application_name` between transactions (benchmarks tell the
    /// server's backends from their own by it), retiring by `limits`.
    pub async fn named(
        &self,
        application_name: &str,
        max_connections: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        Self::connect_config(config, self.tls.clone(), max_connections, limits).await
    }

    /// Another pool to the same database, retiring sessions by `limits`.
    pub async fn with_session_limits(
        &self,
        max_connections: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        Self::connect_config(
            self.config.clone(),
            self.tls.clone(),
            max_connections,
            limits,
        )
        .await
    }

    /// A session of its own whose connection the caller drives, for
    /// receiving notifications (LISTEN).
    pub(crate) async fn raw_connection(
        &self,
    ) -> Result<
        (
            Client,
            tokio_postgres::Connection<tokio_postgres::Socket, crate::connection::tls::TlsStream>,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }

    async fn check_server_version(&self) -> anyhow::Result<()> {
        let client = self.connection().await?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await?;
        let (num, text): (i32, String) = (row.get(0), row.get(1));
        if num < MIN_SERVER_VERSION {
            anyhow::bail!("PostgreSQL {text} found; Atrium needs PostgreSQL 15 or newer");
        }
        Ok(())
    }
}

/// Creates database `name` through a connection to the server's `postgres`
/// database, unless it exists.
pub async fn ensure_database(postgres_database_url: &str, name: &str) -> anyhow::Result<()> {
    let (config, tls) = crate::connection::tls::parse_url(postgres_database_url)?;
    let (client, connection) = config
        .connect(tls)
        .await
        .context("connecting to the PostgreSQL server")?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(())
}

/// Quotes an identifier for SQL text. Only names the program made itself
/// (from the registry or constants) ever reach this; never user input.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQLSTATE of a database error, if the error came from the server.
pub fn sql_state(err: &tokio_postgres::Error) -> Option<&tokio_postgres::error::SqlState> {
    err.as_db_error().map(|e| e.code())
}

/// The constraint a database error names, if any.
pub fn constraint_of(err: &tokio_postgres::Error) -> Option<&str> {
    err.as_db_error().and_then(|e| e.constraint())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_advice_speaks_up_only_when_a_lanes_share_needs_more_files() {
        // 10,000 tenants over 24 lanes: about 417 tenants per backend.
        let advice = open_files_advice(1_000, 10_000, 24, 500, 60).unwrap();
        assert!(advice.contains("417 tenants"), "{advice}");
        assert!(advice.contains("25020 files"), "{advice}");
        assert_eq!(open_files_advice(65_536, 10_000, 24, 500, 60), None);
        assert_eq!(open_files_advice(1_000, 100, 24, 500, 60), None);
        // No lanes: every session meets every tenant, up to its retirement.
        let advice = open_files_advice(1_000, 10_000, 0, 500, 60).unwrap();
        assert!(advice.contains("500 tenants"), "{advice}");
    }
}
