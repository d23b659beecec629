//! Moving a tenant to another cluster while it keeps serving: PostgreSQL's
//! logical replication copies the schema and streams its changes, a short
//! pause of the tenant's writes lets the target catch up exactly, and the
//! registry row flips.
//!
//! 1. Prepare: on the target, the tenant's role and schema at its version,
//!    tables empty, fenced (`public.tenant_fences`); on the source, a
//!    publication of the schema and a slot; on the target, a subscription.
//! 2. Copy and catch up: PostgreSQL copies each table, then streams.
//! 3. Cut over: the mover takes the tenant's move lock exclusively on the
//!    source (every writing tenant transaction holds it shared, see
//!    `shared.enter_tenant`): new writers wait, writers in flight finish.
//!    A marker row written then arrives on the target after everything
//!    before it; sequences and counters are copied, the target unfenced,
//!    the registry flipped (its trigger notifies every server), the source
//!    fenced, and the lock released: the writers that waited are told the
//!    tenant moved and go to the target. A pause that would last longer
//!    than `max_pause` is given up, writes resume, and it is tried again.
//! 4. Clean up: subscription, slot and publication dropped; the source
//!    schema kept as `moved_<id>_<timestamp>` (or dropped).
//!
//! Everything a move creates is named `atrium_move_<tenant id>`, and its
//! state is in the home registry (`public.tenant_moves`), so a move that
//! stopped anywhere before the flip is cleaned up and started over by the
//! next run, and one that stopped after it is finished.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::connection::database::quote_ident;
use crate::fleet::migrate::latest_tenant_version;
use crate::fleet::provision::newest_schema;
use crate::registry::naming::tenant_role_name;
use crate::registry::{self, TenantEntry};
use crate::{AdminDatabase, ClusterDatabases, Fleet, PooledTx, StoreError};

/// The advisory lock class of `shared.enter_tenant` (its second key is the
/// tenant id).
const MOVE_LOCK_CLASS: i32 = 16756;
/// Session advisory lock on the home database: one mover per tenant.
const MOVER_LOCK_CLASS: i32 = 16757;
/// How long creating the replication slot may wait for the source
/// server's running transactions before it tries again.
const SLOT_WAIT: Duration = Duration::from_secs(10);
const SLOT_ATTEMPTS: u32 = 6;
/// Below this much unconfirmed WAL on the slot, a cut-over is tried.
const CATCH_UP_LAG_BYTES: i64 = 16 * 1024 * 1024;
/// How often progress is polled (each poll is a small catalog query).
const POLL: Duration = Duration::from_millis(50);
/// How often the target is asked for the marker during the pause.
const MARKER_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// The longest the tenant's writes may wait at cut-over.
    pub max_pause: Duration,
    /// Cut-overs tried before the move gives up (each backs off longer).
    pub attempts: u32,
    /// Drop the source schema at once instead of keeping it renamed.
    pub drop_source: bool,
    /// Time spent inside the pause of cut-over attempt `n` (index `n - 1`)
    /// before the marker is looked for: how the tests make a cut-over run
    /// long (a target that cannot catch up in time, a move killed while
    /// writes are paused). Empty in real moves.
    pub pause_stalls: Vec<Duration>,
}

impl Default for MoveOptions {
    fn default() -> Self {
        Self {
            max_pause: Duration::from_secs(2),
            attempts: 5,
            drop_source: false,
            pause_stalls: Vec::new(),
        }
    }
}

/// Where a move is; also its state in `public.tenant_moves`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveState {
    Preparing,
    Copying,
    CatchingUp,
    CuttingOver,
    Done,
    Failed,
}

impl MoveState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Copying => "copying",
            Self::CatchingUp => "catching_up",
            Self::CuttingOver => "cutting_over",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Preparing,
            Self::Copying,
            Self::CatchingUp,
            Self::CuttingOver,
            Self::Done,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What a move reports while it runs.
#[derive(Debug, Clone, Serialize)]
pub struct MoveProgress {
    pub state: MoveState,
    pub tables_ready: i64,
    pub tables: i64,
    /// Bytes of the tenant's tables on the target so far.
    pub bytes_copied: i64,
    /// WAL the target has not confirmed yet.
    pub lag_bytes: i64,
    pub detail: String,
}

/// One table compared between the frozen source and the target as of the
/// flip.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub rows: i64,
    pub matches: bool,
}

/// What a finished move did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// From creating the subscription to every table copied.
    pub copy_ms: u64,
    pub rows: i64,
    pub bytes: i64,
    /// The longest the tenant's writes waited, over every cut-over tried.
    pub longest_pause_ms: u64,
    pub cut_over_attempts: u32,
    /// Every table's rows and hash matched between source and target.
    pub verified: bool,
    pub tables: Vec<TableCheck>,
    /// The source schema's new name, unless it was dropped.
    pub source_kept_as: Option<String>,
}

/// A move as the registry records it.
#[derive(Debug, Clone, Serialize)]
pub struct MoveRecord {
    pub tenant_id: i32,
    pub source: String,
    pub target: String,
    pub state: MoveState,
    pub detail: String,
    pub max_pause_ms: i32,
    pub result: Option<serde_json::Value>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a move did not happen, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The request cannot be done as asked (unknown cluster, the tenant's
    /// own, a precondition the operator must fix).
    #[error("{0}")]
    Refused(String),
    /// Another mover works on this tenant (or from this source).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for MoveError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Failed(e.into())
    }
}

impl From<StoreError> for MoveError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Other(e) => Self::Failed(e),
            other => Self::Failed(anyhow::anyhow!(other.to_string())),
        }
    }
}

fn move_name(tenant_id: i32) -> String {
    format!("atrium_move_{tenant_id}")
}

/// Takes the one-mover-per-tenant lock on `home`'s session. A mover just
/// killed holds it until the server notices its session is gone, which
/// takes a moment: wait that long, not for a mover that is running.
async fn take_mover_lock(home: &Client, tenant_id: i32) -> Result<bool, MoveError> {
    home.batch_execute("SET lock_timeout = '5s'").await?;
    match home
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&MOVER_LOCK_CLASS, &tenant_id],
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The latest move of a tenant, if it was ever moved.
pub async fn latest(
    home: &AdminDatabase,
    tenant_id: i32,
) -> Result<Option<MoveRecord>, StoreError> {
    let row = home
        .database()
        .connection()
        .await?
        .query_opt(
            "SELECT tenant_id, source, target, state, detail, max_pause_ms, result,
                    started_at, updated_at, finished_at
               FROM public.tenant_moves WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1",
            &[&tenant_id],
        )
        .await?;
    Ok(row.map(|r| MoveRecord {
        tenant_id: r.get(0),
        source: r.get(1),
        target: r.get(2),
        state: MoveState::parse(r.get(3)).unwrap_or(MoveState::Failed),
        detail: r.get(4),
        max_pause_ms: r.get(5),
        result: r.get(6),
        started_at: r.get(7),
        updated_at: r.get(8),
        finished_at: r.get(9),
    }))
}

/// The tenant ids with a move under way (the migrator leaves them alone:
/// DDL is not replicated).
pub(crate) async fn moving_tenants(client: &Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tenant_id FROM public.tenant_moves WHERE state NOT IN ('done', 'failed')",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The sessions one move works with.
struct Sides<'a> {
    fleet: &'a Fleet,
    tenant: TenantEntry,
    source: &'a ClusterDatabases,
    target: &'a ClusterDatabases,
    name: String,
    role: String,
    /// The mover's own home session: holds the per-tenant mover lock.
    home: Client,
}

impl Sides<'_> {
    async fn record(&self, state: MoveState, detail: &str) -> Result<(), MoveError> {
        self.home
            .execute(
                "UPDATE public.tenant_moves SET state = $2, detail = $3, updated_at = now(),
                        finished_at = CASE WHEN $2 IN ('done', 'failed') THEN now() END
                  WHERE tenant_id = $1 AND state NOT IN ('done', 'failed')",
                &[&self.tenant.id, &state.as_str(), &detail],
            )
            .await?;
        Ok(())
    }
}

/// Moves `tenant` to cluster `to` (see the module's documentation). A
/// move of the tenant that stopped half-way is cleaned up first (or
/// finished, if it had flipped the registry).
pub async fn move_tenant(
    fleet: &Fleet,
    tenant: &TenantEntry,
    to: &str,
    options: &MoveOptions,
    on_progress: &(dyn Fn(&MoveProgress) + Sync),
) -> Result<MoveReport, MoveError> {
    let home_db = fleet.home().admin.database();
    let home = home_db.dedicated_connection().await?;
    if !take_mover_lock(&home, tenant.id).await? {
        return Err(MoveError::Busy(format!(
            "a move of tenant {} is already running",
            tenant.subdomain
        )));
    }
    // The registry as it is now, under the lock.
    let tenant = registry::find_by_id(home_db, tenant.id).await?;
    let unfinished = latest(&fleet.home().admin, tenant.id)
        .await?
        .filter(|m| !matches!(m.state, MoveState::Done | MoveState::Failed));
    let role_prefix = registry::role_prefix(&home).await?;
    if let Some(previous) = &unfinished {
        let (Some(source), Some(target)) = (
            fleet.cluster(&previous.source),
            fleet.cluster(&previous.target),
        ) else {
            return Err(MoveError::Refused(format!(
                "an unfinished move of {} between {} and {} needs both clusters declared here",
                tenant.subdomain, previous.source, previous.target
            )));
        };
        let sides = Sides {
            fleet,
            name: move_name(tenant.id),
            role: tenant_role_name(&role_prefix, tenant.id),
            tenant: tenant.clone(),
            source,
            target,
            home,
        };
        if tenant.cluster == previous.target {
            // It had flipped: the target is the truth; finish the cleanup.
            fence_source(&sides).await?;
            let kept = clean_up(&sides, options.drop_source).await?;
            let detail = format!("finished after an interruption; source kept as {kept:?}");
            sides.record(MoveState::Done, &detail).await?;
            return Ok(MoveReport {
                tenant: tenant.subdomain.clone(),
                from: previous.source.clone(),
                to: previous.target.clone(),
                copy_ms: 0,
                rows: 0,
                bytes: 0,
                longest_pause_ms: 0,
                cut_over_attempts: 0,
                verified: false,
                tables: Vec::new(),
                source_kept_as: kept,
            });
        }
        undo(&sides).await?;
        sides
            .record(
                MoveState::Failed,
                "stopped before the cut-over; started over",
            )
            .await?;
        // Its session holds the mover lock the new run takes.
        drop(sides);
        return Box::pin(move_tenant(fleet, &tenant, to, options, on_progress)).await;
    }
    let (source, target) = clusters_of_move(fleet, &tenant, to)?;
    let sides = Sides {
        fleet,
        name: move_name(tenant.id),
        role: tenant_role_name(&role_prefix, tenant.id),
        tenant,
        source,
        target,
        home,
    };
    sides
        .home
        .execute(
            "INSERT INTO public.tenant_moves (tenant_id, source, target, state, max_pause_ms)
             VALUES ($1, $2, $3, 'preparing', $4)",
            &[
                &sides.tenant.id,
                &sides.source.name,
                &sides.target.name,
                &(options.max_pause.as_millis().min(i32::MAX as u128) as i32),
            ],
        )
        .await
        .map_err(|e| match e.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                MoveError::Busy(format!(
                    "a move of tenant {} is already running",
                    sides.tenant.subdomain
                ))
            }
            _ => e.into(),
        })?;
    match run(&sides, options, on_progress).await {
        Ok(report) => Ok(report),
        Err(e) => {
            // Before the flip nothing is lost by undoing: the tenant
            // serves from the source throughout.
            let flipped =
                registry::find_by_id(sides.fleet.home().admin.database(), sides.tenant.id)
                    .await
                    .map(|t| t.cluster == sides.target.name)
                    .unwrap_or(false);
            if !flipped && let Err(undo_error) = undo(&sides).await {
                tracing::warn!(error = format!("{undo_error:#}"), "undoing a failed move");
            }
            let _ = sides.record(MoveState::Failed, &e.to_string()).await;
            Err(e)
        }
    }
}

/// The source and target of moving `tenant` to `to`, refused when `to` is
/// its own cluster or either is unknown to this process.
pub fn clusters_of_move<'f>(
    fleet: &'f Fleet,
    tenant: &TenantEntry,
    to: &str,
) -> Result<(&'f ClusterDatabases, &'f ClusterDatabases), MoveError> {
    if tenant.cluster == to {
        return Err(MoveError::Refused(format!(
            "tenant {} is already on cluster {to}",
            tenant.subdomain
        )));
    }
    let source = fleet.cluster(&tenant.cluster).ok_or_else(|| {
        MoveError::Refused(format!(
            "tenant {} is on cluster {}, which is not declared in this process's settings",
            tenant.subdomain, tenant.cluster
        ))
    })?;
    let target = fleet.cluster(to).ok_or_else(|| {
        MoveError::Refused(format!(
            "no cluster {to} is declared in this process's settings (atrium.toml [clusters.{to}] or ATRIUM_CLUSTER_{}_DATABASE_URL)",
            to.to_ascii_uppercase()
        ))
    })?;
    Ok((source, target))
}

/// Stops an unfinished move of `tenant` and removes what it made (before
/// the flip; after it, the move is finished instead).
pub async fn abort(fleet: &Fleet, tenant: &TenantEntry) -> Result<bool, MoveError> {
    let home_db = fleet.home().admin.database();
    let Some(previous) = latest(&fleet.home().admin, tenant.id)
        .await?
        .filter(|m| !matches!(m.state, MoveState::Done | MoveState::Failed))
    else {
        return Ok(false);
    };
    let home = home_db.dedicated_connection().await?;
    if !take_mover_lock(&home, tenant.id).await? {
        return Err(MoveError::Busy(format!(
            "a move of tenant {} is running in another process: stop it first",
            tenant.subdomain
        )));
    }
    let (Some(source), Some(target)) = (
        fleet.cluster(&previous.source),
        fleet.cluster(&previous.target),
    ) else {
        return Err(MoveError::Refused(
            "both clusters of the move must be declared here".into(),
        ));
    };
    let tenant = registry::find_by_id(home_db, tenant.id).await?;
    if tenant.cluster == previous.target {
        return Err(MoveError::Refused(format!(
            "the move of {} had already flipped the registry: run `atrium tenant move {} --to {}` to finish it",
            tenant.subdomain, tenant.subdomain, previous.target
        )));
    }
    let role_prefix = registry::role_prefix(&home).await?;
    let sides = Sides {
        fleet,
        name: move_name(tenant.id),
        role: tenant_role_name(&role_prefix, tenant.id),
        tenant,
        source,
        target,
        home,
    };
    undo(&sides).await?;
    sides.record(MoveState::Failed, "aborted").await?;
    Ok(true)
}

/// What the clusters must allow before anything is made; each refusal says
/// what to change. (Not the command line's fault: these fail the work.)
async fn check_preconditions(sides: &Sides<'_>) -> Result<(), MoveError> {
    let refuse = |m: String| Err(MoveError::Failed(anyhow::anyhow!(m)));
    let reach = async |cluster: &ClusterDatabases| {
        cluster.admin.database().connection().await.map_err(|e| {
            MoveError::Failed(anyhow::anyhow!(
                "cluster {} cannot be reached: {e:#}",
                cluster.name
            ))
        })
    };
    let (source, target) = (reach(sides.source).await?, reach(sides.target).await?);
    let facts = "SELECT current_setting('wal_level'), current_setting('server_version_num')::int,
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                        current_setting('max_replication_slots')::int
                          - (SELECT count(*)::int FROM pg_replication_slots),
                        current_setting('max_wal_senders')::int
                          - (SELECT count(*)::int FROM pg_stat_replication),
                        (SELECT COALESCE(max(version::int), 0) FROM template.schema_migrations)";
    let (s, t) = (
        source.query_one(facts, &[]).await?,
        target.query_one(facts, &[]).await?,
    );
    let (source_name, target_name) = (&sides.source.name, &sides.target.name);
    if s.get::<_, String>(0) != "logical" {
        return refuse(format!(
            "cluster {source_name} has wal_level = {}: set wal_level = logical in its postgresql.conf and restart it",
            s.get::<_, String>(0)
        ));
    }
    if s.get::<_, i32>(1) / 10000 != t.get::<_, i32>(1) / 10000 {
        return refuse(format!(
            "clusters {source_name} and {target_name} run different PostgreSQL major versions ({} and {}): move between the same major version",
            s.get::<_, i32>(1) / 10000,
            t.get::<_, i32>(1) / 10000
        ));
    }
    for (name, row, why) in [
        (
            source_name,
            &s,
            "publish the tenant's schema (PostgreSQL 15 asks a superuser to publish a whole schema)",
        ),
        (target_name, &t, "create the subscription that copies it"),
    ] {
        if !row.get::<_, bool>(2) {
            return refuse(format!(
                "the admin login of cluster {name} must be a superuser to {why}: give the cluster an admin_database_url with one"
            ));
        }
    }
    // The move's own slot and the table copies' temporary ones.
    let (free_slots, free_senders) = (s.get::<_, i32>(3), s.get::<_, i32>(4));
    if free_slots < 3 || free_senders < 3 {
        return refuse(format!(
            "cluster {source_name} has {free_slots} free replication slot(s) and {free_senders} free WAL sender(s); a move needs 3 of each: raise max_replication_slots and max_wal_senders"
        ));
    }
    let latest = latest_tenant_version();
    if sides.tenant.schema_version != latest {
        return refuse(format!(
            "tenant {} is at version {:04}, not {latest:04}: run `atrium migrate` first",
            sides.tenant.subdomain, sides.tenant.schema_version
        ));
    }
    if t.get::<_, i32>(5) != latest {
        return refuse(format!(
            "cluster {target_name} is not at version {latest:04}: run `atrium migrate` first"
        ));
    }
    let prefix_ok = crate::fleet::provision::expect_role_prefix(
        &target,
        target_name,
        &registry::role_prefix(&sides.home).await?,
    )
    .await;
    if let Err(e) = prefix_ok {
        return refuse(e.to_string());
    }
    Ok(())
}

async fn run(
    sides: &Sides<'_>,
    options: &MoveOptions,
    on_progress: &(dyn Fn(&MoveProgress) + Sync),
) -> Result<MoveReport, MoveError> {
    check_preconditions(sides).await?;
    let schema = sides.tenant.schema_name.clone();
    let progress = |state: MoveState, detail: String| MoveProgress {
        state,
        tables_ready: 0,
        tables: 0,
        bytes_copied: 0,
        lag_bytes: 0,
        detail,
    };
    on_progress(&progress(
        MoveState::Preparing,
        format!("making {schema} on {}", sides.target.name),
    ));
    let deferred_indexes = prepare_target(sides).await?;
    publish_source(sides).await?;
    sides.record(MoveState::Copying, "copying").await?;
    let copy_started = Instant::now();
    subscribe_target(sides).await?;
    let copied = wait_for_copy(sides, on_progress).await?;
    on_progress(&progress(
        MoveState::Copying,
        format!("building {} indexes", deferred_indexes.len()),
    ));
    build_deferred_indexes(sides, &deferred_indexes).await?;
    let copy_ms = copy_started.elapsed().as_millis() as u64;
    sides.record(MoveState::CatchingUp, "catching up").await?;
    let mut longest_pause = Duration::ZERO;
    let mut attempt = 0;
    let verify_snapshot = loop {
        attempt += 1;
        wait_for_small_lag(sides, on_progress).await?;
        sides
            .record(
                MoveState::CuttingOver,
                &format!("cut-over attempt {attempt}"),
            )
            .await?;
        on_progress(&progress(
            MoveState::CuttingOver,
            format!("pausing writes (attempt {attempt})"),
        ));
        let stall = options.pause_stalls.get(attempt as usize - 1).copied();
        match cut_over(sides, options.max_pause, stall).await? {
            CutOver::Done { pause, snapshot } => {
                longest_pause = longest_pause.max(pause);
                break snapshot;
            }
            CutOver::BackedOff { pause, why } => {
                longest_pause = longest_pause.max(pause);
                if attempt >= options.attempts {
                    return Err(MoveError::Failed(anyhow::anyhow!(
                        "gave up after {attempt} cut-over attempts ({why}); the tenant serves from {} as before: retry when it writes less, or with a longer --max-pause",
                        sides.source.name
                    )));
                }
                sides
                    .record(
                        MoveState::CatchingUp,
                        &format!("backed off: {why}; writes resumed"),
                    )
                    .await?;
                on_progress(&progress(
                    MoveState::CatchingUp,
                    format!("backed off ({why}); writes resumed"),
                ));
                tokio::time::sleep(Duration::from_millis(500) * attempt).await;
            }
        }
    };
    let tables = verify(sides, &verify_snapshot).await?;
    drop(verify_snapshot);
    let kept = clean_up(sides, options.drop_source).await?;
    let report = MoveReport {
        tenant: sides.tenant.subdomain.clone(),
        from: sides.source.name.clone(),
        to: sides.target.name.clone(),
        copy_ms,
        rows: tables.iter().map(|t| t.rows).sum(),
        bytes: copied,
        longest_pause_ms: longest_pause.as_millis() as u64,
        cut_over_attempts: attempt,
        verified: tables.iter().all(|t| t.matches),
        tables,
        source_kept_as: kept,
    };
    sides
        .home
        .execute(
            "UPDATE public.tenant_moves SET state = 'done', detail = 'done', result = $2,
                    updated_at = now(), finished_at = now()
              WHERE tenant_id = $1 AND state NOT IN ('done', 'failed')",
            &[
                &sides.tenant.id,
                &serde_json::to_value(&report).map_err(anyhow::Error::from)?,
            ],
        )
        .await?;
    Ok(report)
}

/// The tenant's role, schema (empty, at its version) and bookkeeping row
/// on the target, fenced until the flip. Its indexes that neither key nor
/// constrain anything are dropped for the copy (maintaining a trigram
/// index row by row costs far more than building it once at the end, as
/// `pg_restore` does) and returned, to be built again once the copy is
/// done. A move stopped before that drops the whole schema anyway.
async fn prepare_target(sides: &Sides<'_>) -> Result<Vec<String>, MoveError> {
    let (id, schema) = (sides.tenant.id, &sides.tenant.schema_name);
    let role_prefix = registry::role_prefix(&sides.home).await?;
    let mut tx = PooledTx::begin(sides.target.admin.database(), "").await?;
    tx.note_tenant(id);
    tx.note_schema_created();
    let client = tx.client();
    newest_schema(client, schema, &sides.role, &role_prefix).await?;
    // Every table arrives from the source, migration history included.
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            &[schema],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>();
    client
        .batch_execute(&format!(
            "TRUNCATE {};
             INSERT INTO public.tenants (id, name, subdomain, schema_name, tier, cluster, schema_version)
             VALUES ({id}, 'moving', '{schema}', '{schema}', 'small', {cluster}, {version})
             ON CONFLICT (id) DO UPDATE SET cluster = EXCLUDED.cluster,
                                            schema_version = EXCLUDED.schema_version;
             INSERT INTO public.tenant_counters (tenant_id) VALUES ({id}) ON CONFLICT DO NOTHING;
             INSERT INTO public.tenant_fences (tenant_id, reason) VALUES ({id}, 'a move is copying it here')
             ON CONFLICT (tenant_id) DO UPDATE SET reason = EXCLUDED.reason, created_at = now();",
            tables.join(", "),
            cluster = quote_literal(&sides.target.name),
            version = latest_tenant_version(),
        ))
        .await?;
    client
        .execute(
            "UPDATE public.tenants SET name = $2, tier = $3 WHERE id = $1",
            &[&id, &sides.tenant.name, &sides.tenant.tier.as_str()],
        )
        .await?;
    // Definitions that name every schema (the table's, the operator
    // classes' in `extensions`), to run from any session.
    client
        .batch_execute("SELECT set_config('search_path', 'pg_catalog', true)")
        .await?;
    let deferred = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND NOT i.indisunique AND NOT i.indisprimary
                AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
              ORDER BY 1",
            &[schema],
        )
        .await?;
    let mut definitions = Vec::new();
    for index in deferred {
        let (name, definition): (String, String) = (index.get(0), index.get(1));
        client.batch_execute(&format!("DROP INDEX {name}")).await?;
        definitions.push(definition);
    }
    tx.commit().await?;
    Ok(definitions)
}

/// Builds the indexes `prepare_target` left out, two at a time, once the
/// tables are copied (the target is fenced: only the subscription writes).
async fn build_deferred_indexes(
    sides: &Sides<'_>,
    definitions: &[String],
) -> Result<(), MoveError> {
    let target = sides.target.admin.database();
    let (first, second) = (
        target.dedicated_connection().await?,
        target.dedicated_connection().await?,
    );
    for session in [&first, &second] {
        session
            .batch_execute("SET maintenance_work_mem = '256MB'")
            .await?;
    }
    for pair in definitions.chunks(2) {
        let (a, b) = (
            first.batch_execute(&pair[0]),
            second.batch_execute(pair.get(1).map_or("", String::as_str)),
        );
        let (a, b) = futures::join!(a, b);
        a?;
        b?;
    }
    Ok(())
}

/// The publication of the tenant's schema (and its markers), and the
/// replication slot, on the source.
async fn publish_source(sides: &Sides<'_>) -> Result<(), MoveError> {
    let session = sides.source.admin.database().dedicated_connection().await?;
    let name = quote_ident(&sides.name);
    session
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {name};
             CREATE PUBLICATION {name} FOR TABLES IN SCHEMA {schema},
                 TABLE public.move_markers WHERE (tenant_id = {id});",
            schema = quote_ident(&sides.tenant.schema_name),
            id = sides.tenant.id,
        ))
        .await?;
    // Creating a slot waits for every transaction running on the source
    // server, not only this tenant's: one long report elsewhere must not
    // hang the move, so it waits a while and tries again.
    session
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            SLOT_WAIT.as_millis()
        ))
        .await?;
    for attempt in 1..=SLOT_ATTEMPTS {
        let made = session
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')
                  WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[&sides.name],
            )
            .await;
        match made {
            Ok(_) => return Ok(()),
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
                    && attempt < SLOT_ATTEMPTS =>
            {
                tracing::info!(
                    attempt,
                    "the replication slot waits for a long transaction on the source; trying again"
                );
            }
            Err(e) => {
                return Err(MoveError::Failed(anyhow::Error::from(e).context(format!(
                    "creating the replication slot on {} (a long transaction there delays it)",
                    sides.source.name
                ))));
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// A libpq connection string for the source as the target reaches it.
fn conninfo(db: &crate::Database) -> String {
    db.libpq_env()
        .into_iter()
        .map(|(var, value)| {
            let key = match var {
                "PGHOST" => "host",
                "PGPORT" => "port",
                "PGUSER" => "user",
                "PGPASSWORD" => "password",
                _ => "dbname",
            };
            format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn subscribe_target(sides: &Sides<'_>) -> Result<(), MoveError> {
    let session = sides.target.admin.database().dedicated_connection().await?;
    let source = conninfo(sides.source.admin.database());
    session
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION {name} CONNECTION {conninfo} PUBLICATION {name}
               WITH (create_slot = false, slot_name = {slot}, copy_data = true)",
            name = quote_ident(&sides.name),
            conninfo = quote_literal(&source),
            slot = quote_literal(&sides.name),
        ))
        .await
        .map_err(|e| {
            MoveError::Failed(anyhow::Error::from(e).context(format!(
                "cluster {} could not subscribe to {} (can it reach the source's address?)",
                sides.target.name, sides.source.name
            )))
        })?;
    Ok(())
}

/// Waits until every table is copied and streaming; the bytes copied.
async fn wait_for_copy(
    sides: &Sides<'_>,
    on_progress: &(dyn Fn(&MoveProgress) + Sync),
) -> Result<i64, MoveError> {
    let target = sides.target.admin.database().dedicated_connection().await?;
    let source = sides.source.admin.database().dedicated_connection().await?;
    let mut last_report = Instant::now() - Duration::from_secs(10);
    loop {
        let row = target
            .query_one(
                "SELECT count(*) FILTER (WHERE r.srsubstate = 'r'), count(*),
                        COALESCE((SELECT sync_error_count + apply_error_count
                                    FROM pg_stat_subscription_stats WHERE subname = $1), 0),
                        (SELECT COALESCE(sum(pg_table_size(c.oid)), 0)::bigint FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $2 AND c.relkind = 'r')
                   FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid
                  WHERE s.subname = $1",
                &[&sides.name, &sides.tenant.schema_name],
            )
            .await?;
        let (ready, total, errors, bytes): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if errors > 0 {
            return Err(MoveError::Failed(anyhow::anyhow!(
                "the copy failed on cluster {} (its log says why)",
                sides.target.name
            )));
        }
        let lag = slot_lag(&source, &sides.name).await?;
        if last_report.elapsed() >= Duration::from_secs(1) || (total > 0 && ready == total) {
            last_report = Instant::now();
            let detail = format!("{ready}/{total} tables copied, {bytes} bytes, lag {lag} bytes");
            sides.record(MoveState::Copying, &detail).await?;
            on_progress(&MoveProgress {
                state: MoveState::Copying,
                tables_ready: ready,
                tables: total,
                bytes_copied: bytes,
                lag_bytes: lag,
                detail,
            });
        }
        if total > 0 && ready == total {
            return Ok(bytes);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn slot_lag(source: &Client, slot: &str) -> Result<i64, MoveError> {
    Ok(source
        .query_opt(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .unwrap_or(0))
}

/// Waits (up to half a minute) for the slot's unconfirmed WAL to be small
/// enough that a cut-over can finish within its pause.
async fn wait_for_small_lag(
    sides: &Sides<'_>,
    on_progress: &(dyn Fn(&MoveProgress) + Sync),
) -> Result<(), MoveError> {
    let source = sides.source.admin.database().dedicated_connection().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lag = slot_lag(&source, &sides.name).await?;
        if lag < CATCH_UP_LAG_BYTES || Instant::now() >= deadline {
            on_progress(&MoveProgress {
                state: MoveState::CatchingUp,
                tables_ready: 0,
                tables: 0,
                bytes_copied: 0,
                lag_bytes: lag,
                detail: format!("lag {lag} bytes"),
            });
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

enum CutOver {
    /// The registry points at the target; `snapshot` is a transaction on
    /// the target that sees it as of the flip.
    Done {
        pause: Duration,
        snapshot: Client,
    },
    BackedOff {
        pause: Duration,
        why: String,
    },
}

/// One try at the pause (see the module's documentation).
async fn cut_over(
    sides: &Sides<'_>,
    max_pause: Duration,
    stall: Option<Duration>,
) -> Result<CutOver, MoveError> {
    let (id, schema) = (sides.tenant.id, &sides.tenant.schema_name);
    let source = sides.source.admin.database().dedicated_connection().await?;
    let target = sides.target.admin.database().dedicated_connection().await?;
    let snapshot = sides.target.admin.database().dedicated_connection().await?;
    // Most of the pause may go to waiting for the writers in flight; the
    // rest is for the marker's trip.
    source
        .batch_execute(&format!(
            "SET lock_timeout = {}",
            (max_pause / 2).as_millis().max(1)
        ))
        .await?;
    let paused_at = Instant::now();
    if let Err(e) = source
        .execute("SELECT pg_advisory_lock($1, $2)", &[&MOVE_LOCK_CLASS, &id])
        .await
    {
        if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return Ok(CutOver::BackedOff {
                pause: paused_at.elapsed(),
                why: "a transaction of the tenant ran longer than the pause allows".into(),
            });
        }
        return Err(e.into());
    }
    // From here the tenant's writes wait: release them whatever happens.
    let result = async {
        let token = format!("{:016x}", rand::random::<u64>());
        // Flushed at once: a WAL sender sends only flushed WAL, and a
        // server with synchronous_commit off would hold the marker back
        // for up to three wal_writer_delay rounds.
        source
            .batch_execute(&format!(
                "BEGIN; SET LOCAL synchronous_commit = on;
                 INSERT INTO public.move_markers (tenant_id, token) VALUES ({id}, '{token}');
                 COMMIT;"
            ))
            .await?;
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        let deadline = paused_at + max_pause.mul_f32(0.8);
        loop {
            // Past the bound, the pause ends here, whatever has arrived.
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let arrived = target
                .query_opt(
                    "SELECT 1 FROM public.move_markers WHERE tenant_id = $1 AND token = $2",
                    &[&id, &token],
                )
                .await?
                .is_some();
            if arrived {
                break;
            }
            tokio::time::sleep(MARKER_POLL).await;
        }
        // The target now has everything the source had: see it so, for
        // the comparison after the flip.
        snapshot
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")
            .await?;
        copy_sequences_and_counters(&source, &target, id, schema).await?;
        copy_registry_rows(&source, &target, id).await?;
        target
            .execute(
                "DELETE FROM public.tenant_fences WHERE tenant_id = $1",
                &[&id],
            )
            .await?;
        let flipped = sides
            .home
            .execute(
                "UPDATE public.tenants SET cluster = $2 WHERE id = $1 AND cluster = $3",
                &[&id, &sides.target.name, &sides.source.name],
            )
            .await?;
        if flipped != 1 {
            return Err(MoveError::Failed(anyhow::anyhow!(
                "the tenant's registry row changed during the move"
            )));
        }
        sides
            .record(MoveState::CuttingOver, "flipped; fencing the source")
            .await?;
        fence_source_on(&source, sides).await?;
        Ok::<_, MoveError>(Some(()))
    }
    .await;
    let unlocked = source
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&MOVE_LOCK_CLASS, &id],
        )
        .await;
    let pause = paused_at.elapsed();
    drop(source);
    if let Err(e) = unlocked {
        // Closing the session releases the lock as well.
        tracing::warn!(error = %e, "releasing the move lock");
    }
    match result? {
        Some(()) => Ok(CutOver::Done { pause, snapshot }),
        None => {
            // Nothing was flipped: the target stays fenced.
            Ok(CutOver::BackedOff {
                pause,
                why: "the target did not catch up within the pause".into(),
            })
        }
    }
}

/// Sequences exactly as the source has them (`max(id)` would miss deleted
/// rows and rolled-back inserts), and the live counters, which the copy's
/// row applications did not count.
async fn copy_sequences_and_counters(
    source: &Client,
    target: &Client,
    id: i32,
    schema: &str,
) -> Result<(), MoveError> {
    let sequences = source
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY 1",
            &[&schema],
        )
        .await?;
    let mut set = String::new();
    for sequence in sequences {
        let name: String = sequence.get(0);
        let row = source
            .query_one(&format!("SELECT last_value, is_called FROM {name}"), &[])
            .await?;
        let (value, called): (i64, bool) = (row.get(0), row.get(1));
        set.push_str(&format!(
            "SELECT setval({}, {value}, {called});\n",
            quote_literal(&name)
        ));
    }
    let counters = source
        .query_opt(
            "SELECT users, companies, contacts, deals, activities
               FROM public.tenant_counters WHERE tenant_id = $1",
            &[&id],
        )
        .await?;
    if let Some(c) = counters {
        set.push_str(&format!(
            "UPDATE public.tenant_counters SET users = {}, companies = {}, contacts = {},
                    deals = {}, activities = {} WHERE tenant_id = {id};",
            c.get::<_, i64>(0),
            c.get::<_, i64>(1),
            c.get::<_, i64>(2),
            c.get::<_, i64>(3),
            c.get::<_, i64>(4)
        ));
    }
    target.batch_execute(&set).await?;
    Ok(())
}

/// The tenant's rows of the registry tables a tenant writes (invitations
/// still open, emails not sent yet): they live in `public`, outside the
/// published schema. They get the target's ids.
async fn copy_registry_rows(source: &Client, target: &Client, id: i32) -> Result<(), MoveError> {
    for (table, open) in [
        (
            "public.invitations",
            "accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
        ),
        ("public.outbox", "sent_at IS NULL"),
    ] {
        let rows: serde_json::Value = source
            .query_one(
                &format!(
                    "SELECT COALESCE(jsonb_agg(to_jsonb(r) - 'id'), '[]') FROM {table} r
                      WHERE tenant_id = $1 AND {open}"
                ),
                &[&id],
            )
            .await?
            .get(0);
        if rows.as_array().is_none_or(|r| r.is_empty()) {
            continue;
        }
        let columns: String = target
            .query_one(
                "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
                    AND attname <> 'id'",
                &[&table],
            )
            .await?
            .get(0);
        target
            .execute(
                &format!(
                    "INSERT INTO {table} ({columns})
                     SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, $1)"
                ),
                &[&rows],
            )
            .await?;
    }
    Ok(())
}

async fn fence_source(sides: &Sides<'_>) -> Result<(), MoveError> {
    let source = sides.source.admin.database().dedicated_connection().await?;
    fence_source_on(&source, sides).await
}

/// From now on the source refuses the tenant: a server whose cache still
/// points there is told it moved.
async fn fence_source_on(source: &Client, sides: &Sides<'_>) -> Result<(), MoveError> {
    source
        .execute(
            "INSERT INTO public.tenant_fences (tenant_id, reason) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET reason = EXCLUDED.reason, created_at = now()",
            &[&sides.tenant.id, &format!("moved to {}", sides.target.name)],
        )
        .await?;
    Ok(())
}

/// Compares every table of the frozen source with the target as of the
/// flip: row counts and a hash of every row.
async fn verify(sides: &Sides<'_>, snapshot: &Client) -> Result<Vec<TableCheck>, MoveError> {
    let source = sides.source.admin.database().dedicated_connection().await?;
    let schema = &sides.tenant.schema_name;
    let tables = source
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
            &[schema],
        )
        .await?;
    let mut checks = Vec::new();
    for table in tables {
        let table: String = table.get(0);
        let sql = format!(
            "SELECT count(*), COALESCE(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '')
               FROM {}.{} t",
            quote_ident(schema),
            quote_ident(&table)
        );
        let (s, t) = (
            source.query_one(&sql, &[]).await?,
            snapshot.query_one(&sql, &[]).await?,
        );
        let (rows, source_hash, target_rows, target_hash): (i64, String, i64, String) =
            (s.get(0), s.get(1), t.get(0), t.get(1));
        checks.push(TableCheck {
            table,
            rows,
            matches: rows == target_rows && source_hash == target_hash,
        });
    }
    let _ = snapshot.batch_execute("COMMIT").await;
    Ok(checks)
}

/// After the flip: the subscription, slot, publication and markers go; the
/// source schema is renamed (or dropped) and the source's bookkeeping row
/// goes. Returns the source schema's new name.
async fn clean_up(sides: &Sides<'_>, drop_source: bool) -> Result<Option<String>, MoveError> {
    drop_replication(sides).await?;
    let (id, schema) = (sides.tenant.id, &sides.tenant.schema_name);
    let source = sides.source.admin.database().dedicated_connection().await?;
    let exists = source
        .query_one(
            "SELECT to_regnamespace($1) IS NOT NULL",
            &[&quote_ident(schema)],
        )
        .await?
        .get::<_, bool>(0);
    let kept = if !exists {
        None
    } else if drop_source {
        source
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(schema)))
            .await?;
        None
    } else {
        let kept = format!("moved_{id}_{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
        source
            .batch_execute(&format!(
                "ALTER SCHEMA {} RENAME TO {}",
                quote_ident(schema),
                quote_ident(&kept)
            ))
            .await?;
        Some(kept)
    };
    source
        .batch_execute(&format!(
            "DELETE FROM public.tenants WHERE id = {id};
             DELETE FROM public.move_markers WHERE tenant_id = {id};"
        ))
        .await?;
    let target = sides.target.admin.database().dedicated_connection().await?;
    target
        .execute(
            "DELETE FROM public.move_markers WHERE tenant_id = $1",
            &[&id],
        )
        .await?;
    Ok(kept)
}

/// The subscription, then the slot and publication, if they exist.
async fn drop_replication(sides: &Sides<'_>) -> Result<(), MoveError> {
    let target = sides.target.admin.database().dedicated_connection().await?;
    let name = quote_ident(&sides.name);
    let subscribed = target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)",
            &[&sides.name],
        )
        .await?
        .get::<_, bool>(0);
    if subscribed {
        // Detached from its slot first, so dropping it needs no trip to
        // the source (which may be the one that is unwell).
        target
            .batch_execute(&format!(
                "ALTER SUBSCRIPTION {name} DISABLE;
                 ALTER SUBSCRIPTION {name} SET (slot_name = NONE);
                 DROP SUBSCRIPTION {name};"
            ))
            .await?;
    }
    let source = sides.source.admin.database().dedicated_connection().await?;
    // The slot is busy until the disabled subscription's sender exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dropped = source
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1",
                &[&sides.name],
            )
            .await;
        match dropped {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the move's slot is still in use");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    source
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {name}"))
        .await?;
    Ok(())
}

/// Before the flip: removes everything the move made on both sides; the
/// tenant serves from the source as if nothing happened.
async fn undo(sides: &Sides<'_>) -> Result<(), MoveError> {
    drop_replication(sides).await?;
    let (id, schema) = (sides.tenant.id, &sides.tenant.schema_name);
    let target = sides.target.admin.database().dedicated_connection().await?;
    target
        .batch_execute(&format!(
            "BEGIN;
             DROP SCHEMA IF EXISTS {} CASCADE;
             DELETE FROM public.tenants WHERE id = {id};
             DELETE FROM public.move_markers WHERE tenant_id = {id};
             COMMIT;",
            quote_ident(schema)
        ))
        .await?;
    // The target's fence stays: the tenant is not served there.
    let source = sides.source.admin.database().dedicated_connection().await?;
    source
        .execute(
            "DELETE FROM public.move_markers WHERE tenant_id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// A string as an SQL literal (for statements that take no parameters:
/// `CREATE SUBSCRIPTION`, `setval` batches). Only names and addresses the
/// program holds reach this.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
