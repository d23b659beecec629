//! Everything that talks to PostgreSQL, in four parts:
//! - `connection`: the pool, transactions, the tenant context, TLS, the
//!   embedded cluster;
//! - `registry`: the tenants, their names and roles, and the directory
//!   that resolves a host to a tenant;
//! - `fleet`: what the operator runs over many tenants (migrate,
//!   provision, spares, check, maintain, archive, backup, roles, statistics);
//! - `data`: the per-tenant repositories (users, sessions, records, …).

pub mod connection;
pub mod data;
pub mod fleet;
pub mod registry;

// The names every caller uses, at the top.
pub use connection::database::{
    AdminDatabase, CONNECTION_MAX_AGE, CONNECTION_MAX_SCHEMAS_CREATED, CONNECTION_MAX_TENANTS,
    ConnectionLimits, DEFAULT_POOL_SIZE, Database, MIN_SERVER_VERSION, PoolActivity,
    TenantConnectionSource, ensure_database, quote_ident,
};
pub use connection::fleet::{ClusterDatabases, Fleet, HOME_CLUSTER};
pub use connection::tenant::{CONNECTION_CAP_WAIT, TenantConnectionCap, TenantContext, TenantTx};
pub use connection::tx::PooledTx;
pub use data::{
    custom_fields, invitations, outbox, password_resets, pipeline, records, saved_views,
    session_cache, sessions, users,
};
pub use registry::naming::is_tenant_schema_name;

/// What callers of the store handle; everything else is `Other` and ends up
/// as a logged 500 or a failed command.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// A file the store refuses as a whole (a truncated or tampered
    /// archive or backup): the work failed, the command line was fine.
    #[error("{0}")]
    Damaged(String),
    /// The tenant already uses all the connections its tier allows.
    #[error("the tenant is at its connection limit")]
    Busy,
    /// The cluster asked is not (or not yet) where the tenant is served:
    /// it moved. Ask the registry again.
    #[error("the tenant moved to another cluster")]
    Moved,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Other(e.into())
    }
}
