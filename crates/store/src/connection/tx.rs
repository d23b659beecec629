//! A transaction on a pooled session that can never leak into the next user
//! of that session.

use deadpool::managed::Object;
use deadpool_postgres::ClientWrapper;

use tokio::sync::OwnedSemaphorePermit;

use crate::connection::database::PooledConnection;

use crate::Database;

/// An open transaction on a pooled session. `commit` or `rollback` returns
/// the session to the pool; dropping it open (a panic, a cancelled request)
/// closes the session instead, so the server rolls back and no half-done
/// transaction — nor its transaction-local tenant settings — is handed to
/// the next borrower.
pub struct PooledTx {
    session: Option<PooledConnection>,
    /// Released only once the session is back in the pool.
    held: Option<OwnedSemaphorePermit>,
}

impl PooledTx {
    /// `BEGIN`, followed in the same message by `prelude` (statements that set
    /// the transaction up), so setting up costs one round trip.
    pub async fn begin(db: &Database, prelude: &str) -> anyhow::Result<Self> {
        Self::open_session(db.connection().await?, prelude).await
    }

    async fn open_session(session: PooledConnection, prelude: &str) -> anyhow::Result<Self> {
        let tx = Self {
            session: Some(session),
            held: None,
        };
        if let Err(e) = tx
            .client()
            .batch_execute(&format!("BEGIN; {prelude}"))
            .await
        {
            // The session is healthy if it can roll back; keep it pooled.
            let _ = tx.rollback().await;
            return Err(e.into());
        }
        Ok(tx)
    }

    /// The session, with its per-connection cache of prepared statements.
    /// A session whose transaction the caller begins itself (pipelined
    /// with its first statement). Dropping it before `BEGIN` is harmless.
    pub(crate) async fn open_for(db: &Database, tenant_id: i32) -> anyhow::Result<Self> {
        let mut session = db.tenant_session(tenant_id).await?;
        session.note_tenant(tenant_id);
        Ok(Self {
            session: Some(session),
            held: None,
        })
    }

    pub fn client(&self) -> &ClientWrapper {
        self.session.as_ref().expect("transaction is open")
    }

    /// Keeps `permit` until the session is back in the pool.
    pub(crate) fn hold(&mut self, permit: OwnedSemaphorePermit) {
        self.held = Some(permit);
    }

    /// Counts `tenant_id` among the tenants this session has served.
    pub(crate) fn note_tenant(&mut self, tenant_id: i32) {
        if let Some(session) = self.session.as_mut() {
            session.note_tenant(tenant_id);
        }
    }

    /// Counts a tenant schema (or a spare) made or renamed on this session.
    pub(crate) fn note_schema_created(&mut self) {
        if let Some(session) = self.session.as_mut() {
            session.note_schema_created();
        }
    }

    pub async fn commit(mut self) -> Result<(), tokio_postgres::Error> {
        let result = self.client().batch_execute("COMMIT").await;
        if result.is_ok() {
            self.session.take();
        }
        result
    }

    pub async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        let result = self.client().batch_execute("ROLLBACK").await;
        if result.is_ok() {
            self.session.take();
        }
        result
    }
}

impl Drop for PooledTx {
    /// Dropped open (an error path that did not roll back, a cancelled or
    /// timed-out request): roll back in the background and keep the session
    /// if that works; otherwise close it, which rolls back on the server.
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let held = self.held.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if session.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(session));
                    }
                    drop(held);
                });
            }
            Err(_) => drop(Object::take(session)),
        }
    }
}

/// Runs `body` (statements of our own making, no parameters) in one
/// transaction and one round trip, in tenant `tenant_id`'s schema: `BEGIN; body; COMMIT` as one message.
/// On failure the transaction is rolled back and the session kept if it is
/// healthy.
pub async fn execute_in_transaction(
    db: &Database,
    tenant_id: i32,
    body: &str,
) -> anyhow::Result<()> {
    let mut session = db.tenant_session(tenant_id).await?;
    session.note_tenant(tenant_id);
    match session
        .batch_execute(&format!("BEGIN; {body}\nCOMMIT;"))
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            if session.batch_execute("ROLLBACK").await.is_err() {
                drop(Object::take(session));
            }
            Err(e.into())
        }
    }
}
