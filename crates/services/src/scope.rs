//! The tenant a use case runs in, and the signed-in user it runs for.

use std::sync::Arc;
use std::time::Duration;

use atrium_domain::{Access, Action, Permissions, Role};
use atrium_store::users::User;
use atrium_store::{Database, TenantContext, TenantTx};

use crate::ServiceError;

/// One request's tenant: where its transactions go.
#[derive(Clone)]
pub struct Scope {
    pub db: Database,
    pub tenant: Arc<TenantContext>,
    pub statement_timeout: Duration,
}

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
        TenantTx::begin(&self.db, &self.tenant, self.statement_timeout)
            .await
            .map_err(Into::into)
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
