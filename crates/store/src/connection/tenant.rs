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
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper;
use tokio::sync::Semaphore;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use atrium_domain::{TenantStatus, Tier};

use crate::connection::db_time::{note_statement, request_id, timed, timed_statement};
use crate::registry::naming::is_tenant_schema_name;
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
    /// The data cluster whose pool its transactions run on.
    pub cluster: String,
    /// What its people are told while it is in maintenance.
    pub maintenance_message: Option<String>,
    connections: Arc<TenantConnectionCap>,
}

/// At most `tier.connection_limit()` transactions of a tenant hold a
/// pooled connection at once; one per tenant and tier, kept by the
/// directory so it outlives cached entries.
#[derive(Debug)]
pub struct TenantConnectionCap {
    permits: Arc<Semaphore>,
}

impl TenantConnectionCap {
    pub fn new(tier: Tier) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(tier.connection_limit())),
        }
    }

    /// A permit for one more connection, waiting up to
    /// [`CONNECTION_CAP_WAIT`] for one to come free.
    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        tokio::time::timeout(CONNECTION_CAP_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Busy)
            .map(|permit| permit.expect("tenant semaphores are never closed"))
    }
}

impl TenantContext {
    /// `connections` is the tenant's cap, sized for its tier.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i32,
        name: String,
        subdomain: String,
        schema_name: String,
        role_name: String,
        status: TenantStatus,
        tier: Tier,
        cluster: String,
        connections: Arc<TenantConnectionCap>,
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
            cluster,
            maintenance_message: None,
            connections,
        }
    }

    /// SQL that sets the tenant up inside an open transaction. The schema
    /// and role names come from the registry and match fixed patterns, so
    /// writing them into the text is safe; nothing from a request is.
    /// JIT is off: a request's statements are short, and compiling one
    /// whose estimate crosses `jit_above_cost` (the pipeline board over
    /// 20,000 deals) cost 30 ms, more than running it.
    /// `writes`: whether the transaction may write, so waits while a move
    /// pauses the tenant's writes (`shared.enter_tenant`, which also
    /// refuses a tenant this cluster no longer serves).
    /// The session is named after the schema, followed by the request's id
    /// when it serves one (`atrium queries` shows it; the id is checked to
    /// hold only letters, digits, `-`, `_` and `.`).
    fn setup_sql(&self, writes: bool, settings: &[String; 4]) -> String {
        let [search_path, role, application_name, timeout] = settings;
        format!(
            "SELECT shared.enter_tenant({id}, {writes}); \
             SELECT set_config('search_path', '{search_path}', true), \
                    set_config('role', '{role}', true), \
                    set_config('application_name', '{application_name}', true), \
                    set_config('statement_timeout', '{timeout}', true), \
                    set_config('jit', 'off', true)",
            id = self.id,
        )
    }

    /// The transaction's settings: search path, role, session name and
    /// statement timeout (ms).
    fn settings(&self, statement_timeout: Duration) -> [String; 4] {
        let application_name = match request_id() {
            Some(id) => format!("{} {id}", self.schema_name),
            None => self.schema_name.clone(),
        };
        [
            format!("{}, extensions, pg_temp", self.schema_name),
            self.role_name.clone(),
            application_name,
            statement_timeout.as_millis().to_string(),
        ]
    }

    /// Opens the transaction on `client`, sets the tenant up and then
    /// runs `then` (the transaction's first statement, or nothing), all
    /// pipelined: one round trip. The setup is [`SETUP_STATEMENT`],
    /// prepared once per session and planned once: it runs before the
    /// search path changes, so unlike the tenant's own statements nothing
    /// makes PostgreSQL plan it again. Behind a transaction-mode pooler
    /// (no statements kept) it goes as one text message instead. Returns
    /// `then`'s result, unless the setup failed, and when the setup was
    /// through.
    async fn open_then<T>(
        &self,
        client: &ClientWrapper,
        statement_timeout: Duration,
        writes: bool,
        cache_statements: bool,
        then: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> (Result<T, tokio_postgres::Error>, Option<Instant>) {
        // Prepared before anything is sent: messages go out in the order
        // their futures are first polled, and a setup still being prepared
        // would let `then` overtake it.
        let setup = if cache_statements {
            match client.prepare_cached(SETUP_STATEMENT).await {
                Ok(setup) => Some(setup),
                Err(e) => return (Err(e), None),
            }
        } else {
            None
        };
        let settings = self.settings(statement_timeout);
        let begin_and_set_up = async {
            let result = match &setup {
                Some(setup) => {
                    let [search_path, role, application_name, timeout] = &settings;
                    let params: [&(dyn ToSql + Sync); 6] = [
                        &self.id,
                        &writes,
                        search_path,
                        role,
                        application_name,
                        timeout,
                    ];
                    let (begun, set_up) = futures::join!(
                        client.batch_execute("BEGIN"),
                        client.query_one(setup, &params)
                    );
                    begun.and(set_up.map(drop))
                }
                None => {
                    let text = format!("BEGIN; {}", self.setup_sql(writes, &settings));
                    client.batch_execute(&text).await
                }
            };
            (result, Instant::now())
        };
        let ((set_up, at), then) = futures::join!(begin_and_set_up, then);
        (set_up.and(then), Some(at))
    }
}

/// Sets a tenant transaction up (see [`TenantContext::setup_sql`] for the
/// settings): the fence and the move lock first, as the application's
/// login, then the search path, the tenant's role, the session's name, the
/// statement timeout and no JIT, all local to the transaction.
const SETUP_STATEMENT: &str = "SELECT shared.enter_tenant($1, $2), \
     set_config('search_path', $3, true), set_config('role', $4, true), \
     set_config('application_name', $5, true), set_config('statement_timeout', $6, true), \
     set_config('jit', 'off', true)";

/// The SQLSTATE `shared.enter_tenant` raises for a fenced tenant.
const TENANT_MOVED: &str = "AT001";

/// `StoreError::Moved` for a tenant this cluster no longer serves (or does
/// not serve yet), anything else as it is.
fn moved_or_other(e: anyhow::Error) -> StoreError {
    let moved = e.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
            .is_some_and(|code| code.code() == TENANT_MOVED)
    });
    if moved {
        StoreError::Moved
    } else {
        StoreError::Other(e)
    }
}

/// How long a tenant's request waits for a connection under the tenant's
/// cap before it is told to come back later.
pub const CONNECTION_CAP_WAIT: Duration = Duration::from_secs(2);

/// An open transaction in one tenant's schema, as that tenant's role.
pub struct TenantTx {
    /// Holds one of the tenant's connection permits until the connection
    /// is back in the pool (after a background rollback too), so abandoned work keeps
    /// counting against the tenant while it still runs.
    tx: PooledTx,
    tenant: Arc<TenantContext>,
    /// Custom field definitions read in this transaction, by entity: a
    /// bulk write checks every row against them, and they change only
    /// through this transaction's own writes (which clear it) or another
    /// transaction's, which a transaction may read as of its start.
    pub(crate) definitions: std::sync::Mutex<DefinitionsMemo>,
    /// Statements are prepared once per session and reused, unless a
    /// transaction-mode pooler hands each transaction another session.
    cache_statements: bool,
}

pub(crate) type DefinitionsMemo =
    std::collections::HashMap<Option<String>, Vec<crate::data::custom_fields::FieldDefinition>>;

impl TenantTx {
    /// Waits (briefly) for a connection under the tenant's cap, then opens
    /// the transaction; the statement timeout bounds every statement in it.
    pub async fn begin(
        db: &Database,
        tenant: &Arc<TenantContext>,
        statement_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::begin_as(db, tenant, statement_timeout, true).await
    }

    /// [`TenantTx::begin`] for a transaction that writes or only reads
    /// (readers never wait for a move's pause). `StoreError::Moved` when
    /// the tenant is no longer served by this cluster.
    pub async fn begin_as(
        db: &Database,
        tenant: &Arc<TenantContext>,
        statement_timeout: Duration,
        writes: bool,
    ) -> Result<Self, StoreError> {
        let permit = tenant.connections.acquire().await?;
        let mut tx = PooledTx::open_for(db, tenant.id).await?;
        tx.hold(permit);
        let cache_statements = db.caches_statements();
        let (opened, _) = timed(tenant.open_then(
            tx.client(),
            statement_timeout,
            writes,
            cache_statements,
            async { Ok(()) },
        ))
        .await;
        let tx = Self {
            tx,
            tenant: tenant.clone(),
            definitions: Default::default(),
            cache_statements,
        };
        match opened {
            Ok(()) => Ok(tx),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(moved_or_other(e.into()))
            }
        }
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
        writes: bool,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Self, Option<Row>), StoreError> {
        let permit = tenant.connections.acquire().await?;
        let mut tx = PooledTx::open_for(db, tenant.id).await?;
        tx.hold(permit);
        let client = tx.client();
        let cache_statements = db.caches_statements();
        let sent = Instant::now();
        let (row, set_up) =
            timed(
                tenant.open_then(client, statement_timeout, writes, cache_statements, async {
                    let statement = if cache_statements {
                        client.prepare_cached(sql).await?
                    } else {
                        client.prepare(sql).await?
                    };
                    client.query_opt(&statement, params).await
                }),
            )
            .await;
        // The query's own time starts once the setup is through: waiting in
        // `enter_tenant` while a move pauses writes is not the query's.
        note_statement(&tenant.schema_name, sql, set_up.unwrap_or(sent).elapsed());
        let tx = Self {
            tx,
            tenant: tenant.clone(),
            definitions: Default::default(),
            cache_statements,
        };
        match row {
            Ok(row) => Ok((tx, row)),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(moved_or_other(e.into()))
            }
        }
    }

    pub fn tenant(&self) -> &TenantContext {
        &self.tenant
    }

    /// The tenant as the directory resolved it (caches key on the very
    /// context: a tenant changed in the registry since is a new one).
    pub fn tenant_arc(&self) -> &Arc<TenantContext> {
        &self.tenant
    }

    /// Prepares `sql` once per pooled session and reuses it: PostgreSQL
    /// replans a cached statement when the search path changes, so one
    /// statement serves every tenant. Behind a transaction-mode pooler it
    /// is prepared in this transaction and closed with its last use, which
    /// comes before the commit: the server session it lived in is another
    /// client's next.
    async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if self.cache_statements {
            self.tx.client().prepare_cached(sql).await
        } else {
            self.tx.client().prepare(sql).await
        }
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        timed_statement(&self.tenant.schema_name, sql, async {
            let statement = self.prepared(sql).await?;
            self.tx.client().query(&statement, params).await
        })
        .await
    }

    /// Runs `sql`, whose parameters are all text, as a statement planned
    /// for these very values, in one round trip (parse, bind and execute
    /// together, no statement kept). For a statement whose best plan
    /// depends on its values: a prepared statement soon runs a generic
    /// plan, where a value that folds to a constant (a search's
    /// `to_tsquery`) is computed again for every row it meets, and it is
    /// planned again for each tenant anyway, as its search path changes.
    pub(crate) async fn query_planned_for_values(
        &self,
        sql: &str,
        text_params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let typed: Vec<(&(dyn ToSql + Sync), Type)> =
            text_params.iter().map(|p| (*p, Type::TEXT)).collect();
        timed_statement(
            &self.tenant.schema_name,
            sql,
            self.tx.client().query_typed(sql, &typed),
        )
        .await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        timed_statement(&self.tenant.schema_name, sql, async {
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
        timed_statement(&self.tenant.schema_name, sql, async {
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
        timed_statement(&self.tenant.schema_name, sql, async {
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

    /// Undoes [`TenantTx::plan_for_current_sizes`] for the statements that
    /// follow, until it is called again: for a bulk insert, whose foreign
    /// key checks (primary key lookups, whose plan does not depend on the
    /// table's size) would otherwise be planned again for every row.
    pub async fn plan_generically(&self) -> Result<(), StoreError> {
        self.tx
            .client()
            .batch_execute("SET LOCAL plan_cache_mode = auto")
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

    /// Runs `sql` in the tenant transaction. For tests that must
    /// show what the tenant role can and cannot do; the application's own
    /// queries live in the store's repositories.
    #[cfg(feature = "testing")]
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
