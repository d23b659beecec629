//! Everything that talks to PostgreSQL: the embedded cluster, the pool, the
//! registry, provisioning, the migrator and the drift check.

pub mod archive;
pub mod backup;
pub mod check;
pub mod cluster;
pub mod custom_fields;
mod db;
pub mod db_time;
pub mod directory;
pub mod invitations;
pub mod maintain;
pub mod migrate;
pub mod observe;
pub mod outbox;
pub mod password_resets;
pub mod pipeline;
pub mod provision;
pub mod records;
pub mod registry;
pub mod roles;
pub mod sessions;
pub mod spares;
mod tenant;
pub mod tenant_metrics;
pub mod tls;
mod tx;
pub mod users;

pub use db::{
    CONNECTION_MAX_AGE, CONNECTION_MAX_SCHEMAS_CREATED, CONNECTION_MAX_TENANTS, ConnectionLimits,
    DEFAULT_POOL_SIZE, Database, MIN_SERVER_VERSION, PoolActivity, TenantConnectionSource,
    ensure_database, quote_ident,
};
pub use tenant::{
    REQUEST_WAIT, TENANT_SLOT_WAIT, TenantContext, TenantLimits, TenantTx, is_tenant_schema_name,
};
pub use tx::PooledTx;

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
    /// The tenant used more database time than its tier allows and is
    /// paying it back.
    #[error("the tenant is over its database-time budget")]
    OverBudget { retry_after: std::time::Duration },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Other(e.into())
    }
}
