//! The migrator: two ordered sets of SQL files embedded in the binary, one
//! for the `public` registry and one for `template` and every tenant schema.
//!
//! Each schema records what it applied, with a checksum, in its own
//! `schema_migrations`; the registry also keeps each tenant's version in
//! `public.tenants.schema_version`, so finding the tenants with pending work
//! is one query however many tenants there are.

use crate::AdminDatabase;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::connection::database::{quote_ident, sql_state};
use crate::connection::tx::execute_in_transaction;
use crate::registry::naming::tenant_role_name;
use crate::{ClusterDatabases, Database, Fleet, HOME_CLUSTER, registry};

mod files;
pub mod rehearse;
mod status;

pub use files::{MigrationFile, MigrationSets, latest_tenant_version};
pub use status::{
    MigrationStatus, TenantVersion, pending_control_or_template, status, tenant_versions,
};

/// Session-level advisory lock held by the one migrator allowed at a time.
pub const MIGRATION_LOCK_KEY: i64 = 0x4174_7269_756d_0001;

pub(crate) const SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version VARCHAR(20) PRIMARY KEY,
    name TEXT NOT NULL,
    checksum CHAR(64) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
)";

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "another `atrium migrate` is running (it holds the migration lock); try again when it ends"
    )]
    Locked,
    #[error(
        "migration {version} ({name}) was edited after it was applied to {schema}: its checksum no longer matches; restore the file as it was and add a new migration instead"
    )]
    Edited {
        schema: String,
        version: i32,
        name: String,
    },
    #[error(
        "{schema} has migration {version} applied, which this atrium does not know: the database is newer than this program; upgrade atrium"
    )]
    Unknown { schema: String, version: i32 },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for MigrationError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Other(e.into())
    }
}

/// Counts the statements a run sends, so the cost of a no-op run can be
/// checked against the number of tenants.
#[derive(Debug, Default)]
pub struct QueryCounter(AtomicUsize);

impl QueryCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Tenants migrated at once.
    pub jobs: usize,
    /// Wait for a running migrator to finish instead of refusing to start.
    pub wait_for_lock: bool,
    /// How long tenant DDL may wait for a table lock before it gives up and
    /// retries, so a migration never queues behind a long request and
    /// blocks that tenant's traffic behind itself.
    pub lock_timeout: Duration,
    pub lock_retries: u32,
    /// Tenants left as they are: the ones being moved to another cluster
    /// (DDL is not replicated). `migrate_fleet` fills it in.
    pub skip_tenants: Vec<i32>,
    /// Only these tenants (no spares): `migrate --tenant`.
    pub only_tenants: Option<Vec<i32>>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            wait_for_lock: false,
            lock_timeout: Duration::from_secs(2),
            lock_retries: 10,
            skip_tenants: Vec::new(),
            only_tenants: None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantFailure {
    /// The data cluster the tenant lives on.
    pub cluster: String,
    pub tenant_id: i32,
    pub subdomain: String,
    pub schema_name: String,
    pub error: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct MigrateReport {
    pub latest_version: i32,
    pub control_applied: Vec<i32>,
    pub template_applied: Vec<i32>,
    pub tenants_migrated: usize,
    /// Spare schemas brought to the newest version with the tenants.
    pub spares_migrated: usize,
    pub failures: Vec<TenantFailure>,
    /// Tenants behind that were left alone because they are moving; the
    /// next run migrates them.
    pub skipped_moving: Vec<i32>,
    /// Statements sent by the coordinating session and the tenant jobs.
    pub queries: usize,
    /// What each data cluster besides the home one applied (empty with
    /// one cluster).
    pub clusters: Vec<ClusterMigration>,
    /// The clusters that could not be migrated, with the reason; their
    /// tenants are left as they were.
    pub cluster_failures: Vec<ClusterFailure>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ClusterMigration {
    pub cluster: String,
    pub control_applied: Vec<i32>,
    pub template_applied: Vec<i32>,
    pub tenants_migrated: usize,
    pub spares_migrated: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterFailure {
    pub cluster: String,
    pub error: String,
}

/// Brings every data cluster to the newest version: the home database
/// first (the registry, `template`, its tenants), then every other cluster
/// at once, each under its own migration lock. A cluster that fails is
/// reported and the others finish. Each cluster's tenant versions are
/// copied into the home registry afterwards, which is what `migrate
/// status` and `tenant list` read.
pub async fn migrate_fleet(
    fleet: &Fleet,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateReport, MigrationError> {
    let clusters = fleet.clusters();
    let progress = std::sync::Mutex::new(vec![(0usize, 0usize); clusters.len()]);
    let report_progress = |cluster: usize, done: usize, total: usize| {
        let mut all = progress.lock().expect("not poisoned");
        all[cluster] = (done, total);
        let (done, total) = all
            .iter()
            .fold((0, 0), |(d, t), (done, total)| (d + done, t + total));
        on_progress(done, total);
    };
    let home = &fleet.home().admin;
    let moving = {
        let session = home.database().connection().await?;
        match crate::fleet::moving::moving_tenants(&session).await {
            Ok(ids) => ids,
            // A registry older than moves has none.
            Err(e) if sql_state(&e) == Some(&SqlState::UNDEFINED_TABLE) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    };
    let options = &MigrateOptions {
        skip_tenants: moving,
        ..options.clone()
    };
    let mut report = migrate(home, options, &|done, total| {
        report_progress(0, done, total)
    })
    .await?;
    let declared: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    registry::clusters::record(home, &declared)
        .await
        .map_err(|e| anyhow::anyhow!("recording the declared clusters: {e}"))?;
    let home_prefix = {
        let session = home.database().connection().await?;
        registry::role_prefix(&session).await?
    };
    let others = clusters[1..].iter().enumerate().map(|(i, cluster)| {
        let (home_prefix, report_progress) = (&home_prefix, &report_progress);
        async move {
            let migrated = migrate_cluster(home, cluster, home_prefix, options, &|done, total| {
                report_progress(i + 1, done, total)
            })
            .await;
            (cluster, migrated)
        }
    });
    for (cluster, migrated) in futures::future::join_all(others).await {
        match migrated {
            Ok(cluster_report) => {
                report.tenants_migrated += cluster_report.tenants_migrated;
                report.skipped_moving.extend(cluster_report.skipped_moving);
                report.spares_migrated += cluster_report.spares_migrated;
                report.queries += cluster_report.queries;
                report
                    .failures
                    .extend(cluster_report.failures.into_iter().map(|f| TenantFailure {
                        cluster: cluster.name.clone(),
                        ..f
                    }));
                report.clusters.push(ClusterMigration {
                    cluster: cluster.name.clone(),
                    control_applied: cluster_report.control_applied,
                    template_applied: cluster_report.template_applied,
                    tenants_migrated: cluster_report.tenants_migrated,
                    spares_migrated: cluster_report.spares_migrated,
                });
            }
            Err(e) => report.cluster_failures.push(ClusterFailure {
                cluster: cluster.name.clone(),
                error: match e {
                    MigrationError::Other(e) => format!("{e:#}"),
                    other => other.to_string(),
                },
            }),
        }
    }
    Ok(report)
}

/// One data cluster: its own registry tables, `template` and tenants,
/// set up for the home registry's role names on first use, then its
/// tenants' versions copied home. Failures name the home subdomains.
async fn migrate_cluster(
    home: &AdminDatabase,
    cluster: &ClusterDatabases,
    home_prefix: &str,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateReport, MigrationError> {
    let mut report = migrate(&cluster.admin, options, on_progress).await?;
    let session = cluster.admin.database().connection().await?;
    adopt_role_prefix(&session, home_prefix).await?;
    // Its copies of tenant rows name it as their cluster.
    session
        .execute(
            "INSERT INTO public.clusters (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&cluster.name],
        )
        .await?;
    let versions = session
        .query("SELECT id, schema_version FROM public.tenants", &[])
        .await?;
    let (ids, versions): (Vec<i32>, Vec<i32>) = versions
        .iter()
        .map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)))
        .unzip();
    let home_session = home.database().connection().await?;
    home_session
        .execute(
            "UPDATE public.tenants t SET schema_version = v.version
               FROM unnest($1::int[], $2::int[]) AS v(id, version)
              WHERE t.id = v.id AND t.cluster = $3 AND t.schema_version <> v.version",
            &[&ids, &versions, &cluster.name],
        )
        .await?;
    if !report.failures.is_empty() {
        let names: std::collections::HashMap<i32, String> = home_session
            .query(
                "SELECT id, subdomain FROM public.tenants WHERE id = ANY($1)",
                &[&report
                    .failures
                    .iter()
                    .map(|f| f.tenant_id)
                    .collect::<Vec<_>>()],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for failure in &mut report.failures {
            if let Some(name) = names.get(&failure.tenant_id) {
                failure.subdomain = name.clone();
            }
        }
    }
    Ok(report)
}

/// Names a new data cluster's roles as the home registry does: tenant
/// roles are `<prefix>_tenant_<id>` on every cluster, so a tenant keeps
/// its role name wherever it lives. A cluster's control migrations made a
/// prefix of their own; while it has no tenants nor spares, its tenants'
/// group takes the home name (renamed, or, where the home's group already
/// exists on the same server, the policies and grants handed over to it).
async fn adopt_role_prefix(session: &Client, home_prefix: &str) -> Result<(), MigrationError> {
    let own = registry::role_prefix(session).await?;
    if own == home_prefix {
        return Ok(());
    }
    let valid = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.len() <= 32
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !valid(home_prefix) || !valid(&own) {
        return Err(anyhow::anyhow!("unexpected role prefix {home_prefix:?} or {own:?}").into());
    }
    let row = session
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM public.tenants) OR EXISTS (SELECT 1 FROM public.spare_schemas)",
            &[],
        )
        .await?;
    if row.get::<_, bool>(0) {
        return Err(anyhow::anyhow!(
            "this cluster's database already holds tenants of another Atrium registry \
             (role prefix {own}); declare an empty database as a cluster"
        )
        .into());
    }
    let (old_group, new_group) = (format!("{own}_tenants"), format!("{home_prefix}_tenants"));
    session
        .batch_execute(&format!(
            "BEGIN;
             DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{new_group}') THEN
                 ALTER ROLE {old} RENAME TO {new};
               ELSE
                 ALTER POLICY invitations_own_tenant ON public.invitations TO {new};
                 ALTER POLICY outbox_own_tenant ON public.outbox TO {new};
                 GRANT SELECT, INSERT, UPDATE ON public.invitations TO {new};
                 GRANT USAGE ON SEQUENCE public.invitations_id_seq TO {new};
                 GRANT INSERT ON public.outbox TO {new};
                 GRANT USAGE ON SEQUENCE public.outbox_id_seq TO {new};
                 REVOKE ALL ON public.invitations, public.outbox FROM {old};
                 REVOKE ALL ON SEQUENCE public.invitations_id_seq, public.outbox_id_seq FROM {old};
                 DROP ROLE {old};
               END IF;
             END $$;
             UPDATE public.installation SET role_prefix = '{home_prefix}';
             COMMIT;",
            old = quote_ident(&old_group),
            new = quote_ident(&new_group),
        ))
        .await
        .map_err(|e| anyhow::Error::from(e).context("naming the cluster's roles as the home's"))?;
    Ok(())
}

/// Brings the registry, `template` and every tenant to the newest version.
/// One tenant's failure is reported and the rest go on.
pub async fn migrate(
    admin: &AdminDatabase,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateReport, MigrationError> {
    migrate_sets(admin, MigrationSets::embedded(), options, on_progress).await
}

/// [`migrate`] with explicit migration sets.
pub async fn migrate_sets(
    admin: &AdminDatabase,
    sets: MigrationSets,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateReport, MigrationError> {
    let db = admin.database();
    let counter = QueryCounter::default();
    let session = db.dedicated_connection().await?;
    acquire_lock(&session, options.wait_for_lock, &counter).await?;
    let result = migrate_locked(db, &session, sets, options, on_progress, &counter).await;
    // The lock also ends with the session; unlocking is for tidiness.
    let _ = session
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let mut report = result?;
    report.queries = counter.get() + 1;
    Ok(report)
}

async fn acquire_lock(
    session: &Client,
    wait: bool,
    counter: &QueryCounter,
) -> Result<(), MigrationError> {
    counter.add();
    if wait {
        session
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        return Ok(());
    }
    let row = session
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(MigrationError::Locked)
    }
}

async fn migrate_locked(
    db: &Database,
    session: &Client,
    sets: MigrationSets,
    options: &MigrateOptions,
    on_progress: &(dyn Fn(usize, usize) + Sync),
    counter: &QueryCounter,
) -> Result<MigrateReport, MigrationError> {
    let mut report = MigrateReport {
        latest_version: sets.latest_tenant_version(),
        ..Default::default()
    };
    report.control_applied =
        migrate_own_schema(session, "public", "", sets.control, counter).await?;
    report.template_applied = migrate_own_schema(
        session,
        "template",
        "CREATE SCHEMA IF NOT EXISTS template;",
        sets.tenant,
        counter,
    )
    .await?;

    counter.add();
    let (pending, skipped): (Vec<_>, Vec<_>) =
        registry::tenants_below_version(session, report.latest_version)
            .await?
            .into_iter()
            .filter(|t| match &options.only_tenants {
                Some(only) => !t.spare && only.contains(&t.id),
                None => true,
            })
            .partition(|t| t.spare || !options.skip_tenants.contains(&t.id));
    report.skipped_moving = skipped.iter().map(|t| t.id).collect();
    if pending.is_empty() {
        return Ok(report);
    }
    counter.add();
    let role_prefix = registry::role_prefix(session).await?;
    let total = pending.len();
    on_progress(0, total);
    let done = AtomicUsize::new(0);
    let mut results = futures::stream::iter(pending)
        .map(|tenant| {
            let role_prefix = &role_prefix;
            let done = &done;
            async move {
                let result =
                    migrate_tenant_with_retries(db, &tenant, role_prefix, sets, options, counter)
                        .await;
                on_progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                (tenant, result)
            }
        })
        .buffer_unordered(options.jobs.max(1));
    while let Some((tenant, result)) = results.next().await {
        match result {
            Ok(()) if tenant.spare => report.spares_migrated += 1,
            Ok(()) => report.tenants_migrated += 1,
            Err(e) => report.failures.push(TenantFailure {
                cluster: HOME_CLUSTER.to_owned(),
                tenant_id: tenant.id,
                subdomain: tenant.subdomain,
                schema_name: tenant.schema_name,
                error: format!("{e:#}"),
            }),
        }
    }
    report.failures.sort_by_key(|f| f.tenant_id);
    Ok(report)
}

/// Migrates `public` or `template` on the lock-holding session.
async fn migrate_own_schema(
    session: &Client,
    schema: &str,
    setup: &str,
    files: &[MigrationFile],
    counter: &QueryCounter,
) -> Result<Vec<i32>, MigrationError> {
    counter.add();
    session
        .batch_execute(&format!(
            "BEGIN; {setup} SELECT set_config('search_path', '{}, extensions', true); {SCHEMA_MIGRATIONS_DDL};",
            quote_ident(schema)
        ))
        .await?;
    let result = apply_pending(session, schema, files, counter).await;
    counter.add();
    match result {
        Ok(applied) => {
            session.batch_execute("COMMIT").await?;
            Ok(applied)
        }
        Err(e) => {
            let _ = session.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Applies, in the open transaction whose search path starts with `schema`,
/// every file not yet recorded there; checks the recorded ones are intact.
pub(crate) async fn apply_pending(
    client: &Client,
    schema: &str,
    files: &[MigrationFile],
    counter: &QueryCounter,
) -> Result<Vec<i32>, MigrationError> {
    counter.add();
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?;
    let mut applied_versions = Vec::with_capacity(rows.len());
    for row in rows {
        let version: String = row.get(0);
        let checksum: String = row.get(1);
        let version: i32 = version.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{schema}.schema_migrations holds a version that is not a number: {version}"
            )
        })?;
        let Some(file) = files.iter().find(|f| f.version == version) else {
            return Err(MigrationError::Unknown {
                schema: schema.to_owned(),
                version,
            });
        };
        if file.checksum() != checksum.trim() {
            return Err(MigrationError::Edited {
                schema: schema.to_owned(),
                version,
                name: file.name.to_owned(),
            });
        }
        applied_versions.push(version);
    }
    let mut newly_applied = Vec::new();
    for file in files
        .iter()
        .filter(|f| !applied_versions.contains(&f.version))
    {
        counter.add();
        client.batch_execute(file.sql).await.map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "applying migration {} ({}) to {schema}",
                file.version, file.name
            ))
        })?;
        counter.add();
        client
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[
                    &format!("{:04}", file.version),
                    &file.name,
                    &file.checksum(),
                ],
            )
            .await?;
        newly_applied.push(file.version);
    }
    Ok(newly_applied)
}

#[tracing::instrument(name = "migrate_tenant", skip_all, fields(tenant = %tenant.subdomain, schema = %tenant.schema_name))]
async fn migrate_tenant_with_retries(
    db: &Database,
    tenant: &registry::TenantRef,
    role_prefix: &str,
    sets: MigrationSets,
    options: &MigrateOptions,
    counter: &QueryCounter,
) -> Result<(), MigrationError> {
    let mut attempt = 0;
    loop {
        match migrate_tenant(db, tenant, role_prefix, sets, options, counter).await {
            Err(e) if is_lock_timeout(&e) && attempt < options.lock_retries => {
                attempt += 1;
                let backoff = Duration::from_millis(100 * u64::from(attempt.min(20)));
                tracing::info!(schema = %tenant.schema_name, attempt, "lock timeout, retrying");
                tokio::time::sleep(backoff).await;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => return Ok(()),
        }
    }
}

fn is_lock_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(sql_state)
            .is_some_and(|s| *s == SqlState::LOCK_NOT_AVAILABLE)
    })
}

/// One tenant, one transaction, one round trip: the schema is either fully
/// at the new version or untouched.
///
/// The registry says which version the tenant is at (it is updated in the
/// same transaction as the schema), so the tenant's `schema_migrations` is
/// not read first: its primary key refuses a version applied twice, the
/// files' checksums were verified against `template` at the start of the
/// run, and `atrium check` catches a schema that was changed by hand.
///
/// The commit does not wait for the WAL flush (`synchronous_commit = off`):
/// a crash can lose only the last few tenants' migrations, each whole,
/// registry row and schema together, and the next run redoes them.
async fn migrate_tenant(
    db: &Database,
    tenant: &registry::TenantRef,
    role_prefix: &str,
    sets: MigrationSets,
    options: &MigrateOptions,
    counter: &QueryCounter,
) -> anyhow::Result<()> {
    let pending: Vec<&MigrationFile> = sets
        .tenant
        .iter()
        .filter(|f| f.version > tenant.schema_version)
        .collect();
    let mut batch = format!(
        "SET LOCAL lock_timeout = {lock_ms}; SET LOCAL synchronous_commit = off;
         SELECT set_config('search_path', '{schema}, extensions', true);\n",
        lock_ms = options.lock_timeout.as_millis(),
        schema = quote_ident(&tenant.schema_name),
    );
    for file in &pending {
        batch.push_str(file.sql);
        batch.push_str(&format!(
            ";\nINSERT INTO schema_migrations (version, name, checksum) VALUES ('{:04}', '{}', '{}');\n",
            file.version,
            file.name.replace('\'', "''"),
            file.checksum()
        ));
    }
    let (role, registry_table) = if tenant.spare {
        (
            crate::registry::naming::spare_role_name(role_prefix, tenant.id),
            "public.spare_schemas",
        )
    } else {
        (tenant_role_name(role_prefix, tenant.id), "public.tenants")
    };
    if pending.iter().any(|f| f.creates_objects()) {
        batch.push_str(&grant_tenant_role_sql(&tenant.schema_name, &role));
    }
    batch.push_str(&format!(
        "UPDATE {registry_table} SET schema_version = {} WHERE id = {};",
        sets.latest_tenant_version(),
        tenant.id
    ));
    counter.add();
    execute_in_transaction(db, tenant.id, &batch).await
}

/// Data rights, and nothing more, for the tenant role on everything the
/// migrations made; the migrator's own bookkeeping stays out of reach.
pub(crate) fn grant_tenant_role_sql(schema: &str, role: &str) -> String {
    let (schema, role) = (quote_ident(schema), quote_ident(role));
    format!(
        "GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
         REVOKE ALL ON {schema}.schema_migrations FROM {role};"
    )
}

#[cfg(test)]
mod tests {
    use super::MigrationFile;

    fn file(sql: &'static str) -> MigrationFile {
        MigrationFile {
            version: 2,
            name: "t",
            sql,
        }
    }

    #[test]
    fn only_files_that_make_relations_trigger_grants() {
        assert!(!file("ALTER TABLE contacts ADD COLUMN x TEXT;").creates_objects());
        assert!(
            !file("CREATE INDEX i ON contacts (x);\nCREATE UNIQUE INDEX j ON deals (y);")
                .creates_objects()
        );
        assert!(file("-- notes\nCREATE TABLE tags (id int);").creates_objects());
        assert!(file("ALTER TABLE contacts ADD COLUMN n SERIAL;").creates_objects());
        assert!(
            file("alter table x add column i int generated always as identity;").creates_objects()
        );
        assert!(file("CREATE SEQUENCE s;").creates_objects());
        assert!(file("DO $$ BEGIN EXECUTE 'create table t()'; END $$;").creates_objects());
        assert!(
            MigrationFile {
                ..super::MigrationSets::embedded().tenant[0]
            }
            .creates_objects()
        );
    }
}
