//! The tenant context: the heart of isolation.
//!
//! Every unit of tenant work is a [`TenantTx`]: one transaction that starts,
//! in the same message as `BEGIN`, by setting the tenant's schema as the
//! search path, switching to the tenant's data-only role, and naming the
//! session after the tenant in `pg_stat_activity` — all transaction-local,
//! so a pooled session never carries a tenant into the next request.
//! Store functions that touch tenant data take a `&TenantTx`, so tenant work
//! outside a tenant transaction does not compile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use atrium_domain::{TenantStatus, Tier};

use crate::db_time::timed;
use crate::{Database, PooledTx, StoreError};

/// What a request needs to know about its tenant; built from the registry
/// only, never from input.
#[derive(Debug)]
pub struct TenantContext {
    pub id: i32,
    pub name: String,
    pub subdomain: String,
    pub schema_name: String,
    pub role_name: String,
    pub status: TenantStatus,
    pub tier: Tier,
    pub(crate) limits: Arc<TenantLimits>,
}

/// What keeps one tenant from starving the others; one per tenant and
/// tier, kept by the directory so it outlives cached entries.
pub struct TenantLimits {
    /// At most `tier.connection_limit()` transactions of this tenant hold a
    /// pooled session at once.
    permits: Arc<Semaphore>,
    /// At most `tier.request_rate()` requests a second (after a burst of
    /// `tier.request_burst()`): a flood waits its turn (costing nothing),
    /// and past `REQUEST_WAIT` is turned away.
    requests: governor::DefaultDirectRateLimiter,
    /// Database time used against `tier.db_time_budget_ms()` a second.
    db_time: std::sync::Mutex<DbTimeBudget>,
}

/// A bucket of database milliseconds that refills at the tier's budget,
/// holds at most one second of it, and goes into debt when a request used
/// more than was left: the tenant's next requests wait a small debt off,
/// and are refused (503 with `Retry-After`) while a large one is paid
/// back, so a tenant whose requests each run for seconds cannot keep its
/// connections busy. The debt is bounded by [`MAX_DEBT_SECONDS`] of the
/// tenant's budget, so one runaway statement (itself bounded by the
/// tier's statement timeout) costs the tenant at most that long.
#[derive(Debug)]
struct DbTimeBudget {
    balance_ms: f64,
    updated: std::time::Instant,
    per_second_ms: f64,
}

/// The longest a tenant's database-time debt can keep it waiting.
pub const MAX_DEBT_SECONDS: f64 = 30.0;

impl DbTimeBudget {
    fn new(per_second_ms: f64) -> Self {
        Self {
            balance_ms: per_second_ms,
            updated: std::time::Instant::now(),
            per_second_ms,
        }
    }

    fn refill(&mut self) {
        let now = std::time::Instant::now();
        let earned = now.duration_since(self.updated).as_secs_f64() * self.per_second_ms;
        self.balance_ms = (self.balance_ms + earned).min(self.per_second_ms);
        self.updated = now;
    }

    fn charge(&mut self, used: Duration) {
        self.refill();
        self.balance_ms = (self.balance_ms - used.as_secs_f64() * 1000.0)
            .max(-self.per_second_ms * MAX_DEBT_SECONDS);
    }

    /// How long until the balance is positive again.
    fn wait(&mut self) -> Duration {
        self.refill();
        if self.balance_ms > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.balance_ms / self.per_second_ms)
        }
    }
}

impl std::fmt::Debug for TenantLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimits")
            .field("free_slots", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl TenantLimits {
    pub fn new(tier: Tier) -> Self {
        let rate = std::num::NonZeroU32::new(tier.request_rate()).expect("positive rate");
        let burst = std::num::NonZeroU32::new(tier.request_burst()).expect("positive burst");
        Self {
            permits: Arc::new(Semaphore::new(tier.connection_limit())),
            requests: governor::RateLimiter::direct(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
            db_time: std::sync::Mutex::new(DbTimeBudget::new(f64::from(tier.db_time_budget_ms()))),
        }
    }

    /// Charges a finished request's database time to the tenant.
    pub fn charge_db_time(&self, used: Duration) {
        self.db_time
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .charge(used);
    }

    fn db_time_wait(&self) -> Duration {
        self.db_time
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait()
    }
}

/// How long a request waits for its tenant's request rate before it is
/// told to come back later.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);

impl TenantContext {
    /// `limits` are the tenant's, sized for its tier.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i32,
        name: String,
        subdomain: String,
        schema_name: String,
        role_name: String,
        status: TenantStatus,
        tier: Tier,
        limits: Arc<TenantLimits>,
    ) -> Self {
        assert!(
            is_tenant_schema_name(&schema_name),
            "schema names come from the registry: {schema_name}"
        );
        Self {
            id,
            name,
            subdomain,
            schema_name,
            role_name,
            status,
            tier,
            limits,
        }
    }

    /// Admits one request of this tenant within its database time budget
    /// and its request rate, waiting up to `REQUEST_WAIT` in all for its
    /// turn.
    /// Refuses at once, before any database work, while the tenant is
    /// paying back more database time than a request may wait for: only
    /// the tenant's own signed-in work can put it in that debt, so this
    /// check cannot be used against it, and its refused requests cost
    /// nothing (not even the session lookup).
    /// Otherwise the debt a request waits off (usually none).
    pub fn refuse_while_in_debt(&self) -> Result<Duration, StoreError> {
        let debt = self.limits.db_time_wait();
        if debt >= REQUEST_WAIT {
            return Err(StoreError::OverBudget { retry_after: debt });
        }
        Ok(debt)
    }

    pub async fn admit_request(&self) -> Result<(), StoreError> {
        let debt = self.refuse_while_in_debt()?;
        // The common case waits for nothing and must not touch a timer: a
        // zero sleep still waits for the timer wheel's next tick (~1 ms).
        if !debt.is_zero() {
            tokio::time::sleep(debt).await;
        }
        if self.limits.requests.check().is_ok() {
            return Ok(());
        }
        tokio::time::timeout(REQUEST_WAIT - debt, self.limits.requests.until_ready())
            .await
            .map_err(|_| StoreError::Busy)
    }

    pub fn limits(&self) -> &Arc<TenantLimits> {
        &self.limits
    }

    /// SQL that sets the tenant up inside an open transaction. The schema
    /// and role names come from the registry and match fixed patterns, so
    /// writing them into the text is safe; nothing from a request is.
    fn setup_sql(&self, statement_timeout: Duration) -> String {
        format!(
            "SELECT set_config('search_path', '{schema}, extensions, pg_temp', true), \
                    set_config('role', '{role}', true), \
                    set_config('application_name', '{schema}', true), \
                    set_config('statement_timeout', '{timeout}', true)",
            schema = self.schema_name,
            role = self.role_name,
            timeout = statement_timeout.as_millis(),
        )
    }
}

/// `tenant_<digits>`: the only shape a tenant schema name can have.
pub fn is_tenant_schema_name(name: &str) -> bool {
    name.strip_prefix("tenant_")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// How long a tenant's request waits for one of the tenant's connection
/// slots before it is told to come back later.
pub const TENANT_SLOT_WAIT: Duration = Duration::from_secs(2);

/// An open transaction in one tenant's schema, as that tenant's role.
pub struct TenantTx {
    /// Holds one of the tenant's slots until the session is back in the
    /// pool (after a background rollback too), so abandoned work keeps
    /// counting against the tenant while it still runs.
    tx: PooledTx,
    tenant: Arc<TenantContext>,
    /// Custom field definitions read in this transaction, by entity: a
    /// bulk write checks every row against them, and they change only
    /// through this transaction's own writes (which clear it) or another
    /// transaction's, which a transaction may read as of its start.
    pub(crate) definitions: std::sync::Mutex<DefinitionsMemo>,
}

pub(crate) type DefinitionsMemo =
    std::collections::HashMap<Option<String>, Vec<crate::custom_fields::FieldDefinition>>;

impl TenantTx {
    /// Waits (briefly) for one of the tenant's connection slots, then opens
    /// the transaction; the statement timeout bounds every statement in it.
    pub async fn begin(
        db: &Database,
        tenant: &Arc<TenantContext>,
        statement_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let slot = tokio::time::timeout(
            TENANT_SLOT_WAIT,
            tenant.limits.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StoreError::Busy)?
        .expect("tenant semaphores are never closed");
        let mut tx = timed(PooledTx::begin_for(
            db,
            tenant.id,
            &tenant.setup_sql(statement_timeout),
        ))
        .await?;
        tx.hold(slot);
        Ok(Self {
            tx,
            tenant: tenant.clone(),
            definitions: Default::default(),
        })
    }

    /// Opens the transaction and runs its first query in one round trip:
    /// the tenant setup and the query are pipelined on the session (the
    /// server runs them in order, so the query sees the tenant's schema
    /// and role; a statement prepared for the first time is prepared in
    /// that context too).
    pub(crate) async fn begin_with_query_opt(
        db: &Database,
        tenant: &Arc<TenantContext>,
        statement_timeout: Duration,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Self, Option<Row>), StoreError> {
        let slot = tokio::time::timeout(
            TENANT_SLOT_WAIT,
            tenant.limits.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StoreError::Busy)?
        .expect("tenant semaphores are never closed");
        let mut tx = PooledTx::open_for(db, tenant.id).await?;
        tx.hold(slot);
        let client = tx.client();
        let setup = format!("BEGIN; {}", tenant.setup_sql(statement_timeout));
        let (begun, row) = timed(async {
            futures::join!(client.batch_execute(&setup), async {
                let statement = client.prepare_cached(sql).await?;
                client.query_opt(&statement, params).await
            })
        })
        .await;
        let tx = Self {
            tx,
            tenant: tenant.clone(),
            definitions: Default::default(),
        };
        match begun.and(row) {
            Ok(row) => Ok((tx, row)),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e.into())
            }
        }
    }

    pub fn tenant(&self) -> &TenantContext {
        &self.tenant
    }

    /// Prepares `sql` once per pooled session and reuses it: PostgreSQL
    /// replans a cached statement when the search path changes, so one
    /// statement serves every tenant.
    async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.tx.client().prepare_cached(sql).await
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        timed(async {
            let statement = self.prepared(sql).await?;
            self.tx.client().query(&statement, params).await
        })
        .await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        timed(async {
            let statement = self.prepared(sql).await?;
            self.tx.client().query_opt(&statement, params).await
        })
        .await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        timed(async {
            let statement = self.prepared(sql).await?;
            self.tx.client().query_one(&statement, params).await
        })
        .await
    }

    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        timed(async {
            let statement = self.prepared(sql).await?;
            self.tx.client().execute(&statement, params).await
        })
        .await
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        timed(self.tx.commit()).await.map_err(Into::into)
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        timed(self.tx.rollback()).await.map_err(Into::into)
    }

    /// Plans every statement of this transaction for the tables as they
    /// are now. A bulk write (an import) grows tables far past the size
    /// the session's cached generic plans were made for, and nothing
    /// replans them until autovacuum analyzes the table: a lookup planned
    /// on an empty table can become a full scan per row.
    pub async fn plan_for_current_sizes(&self) -> Result<(), StoreError> {
        self.tx
            .client()
            .batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
        Ok(())
    }

    /// Starts a savepoint: work after it can be undone alone (one row of
    /// an import), leaving the rest of the transaction intact.
    pub async fn savepoint(&self) -> Result<(), StoreError> {
        self.tx
            .client()
            .batch_execute("SAVEPOINT atrium_row")
            .await?;
        Ok(())
    }

    /// Keeps the work since the savepoint and starts the next one, in one
    /// round trip.
    pub async fn keep_and_savepoint(&self) -> Result<(), StoreError> {
        self.tx
            .client()
            .batch_execute("RELEASE SAVEPOINT atrium_row; SAVEPOINT atrium_row")
            .await?;
        Ok(())
    }

    /// Undoes the work since the savepoint, which stays in place for the
    /// next piece of work.
    pub async fn rollback_to_savepoint(&self) -> Result<(), StoreError> {
        self.tx
            .client()
            .batch_execute("ROLLBACK TO SAVEPOINT atrium_row")
            .await?;
        Ok(())
    }

    /// Runs `sql` in the tenant transaction. For tests and tools that must
    /// show what the tenant role can and cannot do; the application's own
    /// queries live in the store's repositories.
    pub async fn query_raw_for_tests(
        &self,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.tx.client().query(sql, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_request_puts_its_tenant_in_debt_for_as_long_as_it_takes_to_pay() {
        // Small tier: 100 ms of database time a second.
        let mut budget = DbTimeBudget::new(100.0);
        assert_eq!(budget.wait(), Duration::ZERO);
        budget.charge(Duration::from_millis(2_100));
        let wait = budget.wait();
        assert!(
            (Duration::from_millis(19_900)..=Duration::from_secs(20)).contains(&wait),
            "{wait:?}: 2 s over a 100 ms/s budget is 20 s of debt"
        );
        budget.charge(Duration::from_secs(3600));
        assert!(
            budget.wait() <= Duration::from_secs_f64(MAX_DEBT_SECONDS),
            "the debt is bounded"
        );
    }

    #[tokio::test]
    async fn a_tenant_in_debt_past_the_request_wait_is_refused_saying_how_long() {
        let limits = Arc::new(TenantLimits::new(Tier::Small));
        let tenant = TenantContext::new(
            1,
            "Acme".into(),
            "acme".into(),
            "tenant_1".into(),
            "x_tenant_1".into(),
            TenantStatus::Active,
            Tier::Small,
            limits.clone(),
        );
        assert!(tenant.admit_request().await.is_ok());
        limits.charge_db_time(Duration::from_secs(5));
        match tenant.admit_request().await {
            Err(StoreError::OverBudget { retry_after }) => {
                assert!(
                    retry_after > Duration::from_secs(25),
                    "{retry_after:?}: capped at 30 s"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn only_registry_shaped_names_are_tenant_schemas() {
        assert!(is_tenant_schema_name("tenant_1"));
        assert!(is_tenant_schema_name("tenant_10000"));
        for bad in [
            "tenant_",
            "tenant_x",
            "public",
            "tenant_1; DROP",
            "template",
            "Tenant_1",
        ] {
            assert!(!is_tenant_schema_name(bad), "{bad}");
        }
    }
}
