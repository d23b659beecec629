//! The tenant a use case runs in, and the signed-in user it runs for.

use std::sync::Arc;
use std::time::Duration;

use atrium_domain::{Access, Action, Permissions, Role};
use atrium_store::registry::directory::TenantDirectory;
use atrium_store::users::User;
use atrium_store::{Database, Fleet, StoreError, TenantContext, TenantTx};

use crate::ServiceError;

/// One request's tenant: where its transactions go.
#[derive(Clone)]
pub struct Scope {
    /// The pool of the tenant's cluster.
    pub db: Database,
    pub tenant: Arc<TenantContext>,
    pub statement_timeout: Duration,
    /// Where to ask again when the tenant has moved to another cluster
    /// since it was resolved; without it, a move fails the request (503).
    pub placement: Option<Placement>,
}

/// The registry's directory and every cluster's pools: what finds a
/// tenant again after a move.
#[derive(Clone)]
pub struct Placement {
    pub directory: Arc<TenantDirectory>,
    pub fleet: Fleet,
}

/// How often a transaction asks the registry again for a tenant that
/// moved: once is the rule (a move flips the registry before it fences
/// the source), twice covers a move right after another.
const RELOCATIONS: usize = 2;

impl Scope {
    /// Runs `work` in one tenant transaction: commits if it succeeded,
    /// rolls back otherwise.
    pub async fn run<T, E: Into<ServiceError>>(
        &self,
        work: impl AsyncFnOnce(&TenantTx) -> Result<T, E>,
    ) -> Result<T, ServiceError> {
        let tx = self.begin().await?;
        match work(&tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e.into())
            }
        }
    }

    /// Opens a transaction whose end the caller decides: an import's
    /// batches, which a dry run rolls back on success.
    pub async fn begin(&self) -> Result<TenantTx, ServiceError> {
        self.begin_as(true).await
    }

    /// [`Scope::begin`] for a transaction that may write, or only reads
    /// (a reader never waits for a move's pause).
    pub async fn begin_as(&self, writes: bool) -> Result<TenantTx, ServiceError> {
        self.retry_moved(|scope| async move {
            TenantTx::begin_as(&scope.db, &scope.tenant, scope.statement_timeout, writes).await
        })
        .await
    }

    /// Runs `open` (which opens a tenant transaction) on this scope, and
    /// again on the tenant's new cluster if it moved.
    pub async fn retry_moved<T, F, Fut>(&self, open: F) -> Result<T, ServiceError>
    where
        F: Fn(Scope) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut scope = self.clone();
        for _ in 0..RELOCATIONS {
            match open(scope.clone()).await {
                Err(StoreError::Moved) => scope = scope.relocated().await?,
                other => return other.map_err(Into::into),
            }
        }
        open(scope).await.map_err(Into::into)
    }

    /// The same tenant where the registry places it now.
    async fn relocated(&self) -> Result<Scope, ServiceError> {
        let Some(placement) = &self.placement else {
            return Err(ServiceError::Moving);
        };
        placement.directory.forget(self.tenant.id);
        let tenant = placement
            .directory
            .resolve(&self.tenant.subdomain)
            .await?
            .filter(|t| t.id == self.tenant.id)
            .ok_or(ServiceError::Moving)?;
        let cluster = placement
            .fleet
            .cluster(&tenant.cluster)
            .ok_or(ServiceError::Moving)?;
        Ok(Scope {
            db: cluster.db.clone(),
            tenant,
            statement_timeout: self.statement_timeout,
            placement: self.placement.clone(),
        })
    }
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub session_id: i32,
    pub access: Access,
}

impl CurrentUser {
    pub fn new(user: User, session_id: i32) -> Result<Self, ServiceError> {
        let role = Role::parse(&user.role).map_err(|e| anyhow::anyhow!("stored role: {e}"))?;
        let overrides = Permissions::parse(&user.permissions)
            .map_err(|e| anyhow::anyhow!("stored permissions: {e}"))?;
        Ok(Self {
            access: Access::new(role, overrides),
            user,
            session_id,
        })
    }

    pub fn id(&self) -> i32 {
        self.user.id
    }

    /// Refuses with 403 unless the user may take `action`.
    pub fn require(&self, action: Action) -> Result<(), ServiceError> {
        if self.access.allows(action) {
            Ok(())
        } else {
            Err(ServiceError::forbidden())
        }
    }
}
