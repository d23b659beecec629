//! Turning settings into database connections: a server the operator runs,
//! or the private cluster under the data directory.

use std::path::PathBuf;

use anyhow::Context;
use atrium_services::operator::{self, MigrateOptions, sealing};
use atrium_store::connection::embedded::{EMBEDDED_DATABASE, EmbeddedCluster};
use atrium_store::{
    AdminDatabase, ClusterDatabases, ConnectionLimits, Database, Fleet, ensure_database,
};

use crate::cli::GlobalArgs;
use crate::settings::{DatabaseTarget, DeclaredCluster, FileSettings};

pub const DEFAULT_DATA_DIR: &str = "./atrium-data";
pub use atrium_store::DEFAULT_POOL_SIZE;

pub fn database_target(global: &GlobalArgs, file: &FileSettings) -> DatabaseTarget {
    let url = global
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .or_else(|| file.database_url.clone());
    match url {
        Some(url) => DatabaseTarget::Url {
            url,
            admin_url: global
                .admin_database_url
                .clone()
                .or_else(|| file.admin_database_url.clone()),
        },
        None => DatabaseTarget::Embedded {
            data_dir: global
                .data_dir
                .clone()
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        },
    }
}

/// Open connections, and the embedded cluster if this process uses one.
pub struct Connected {
    pub db: Database,
    /// Connections with rights to change the schema: `db`'s own login
    /// unless an admin URL was given.
    admin: AdminDatabase,
    /// Whether this process may migrate on its own: the embedded default, or
    /// an admin URL was given.
    pub may_migrate: bool,
    cluster: Option<EmbeddedCluster>,
    /// The declared data clusters besides the home database, connected
    /// lazily: one that is down stops only the work that needs it.
    others: Vec<ClusterDatabases>,
}

/// Sessions of a declared cluster's operator pool.
const CLUSTER_ADMIN_POOL: usize = 8;

impl Connected {
    /// Connects pools of `pool_size` sessions, retired by `limits`, to the
    /// home database and to each declared cluster.
    pub async fn open(
        target: &DatabaseTarget,
        declared: &[DeclaredCluster],
        pool_size: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        let others = declared
            .iter()
            .map(|cluster| {
                let urls = &cluster.urls;
                let app_url = urls
                    .database_url
                    .as_ref()
                    .or(urls.admin_database_url.as_ref());
                let admin_url = urls
                    .admin_database_url
                    .as_ref()
                    .or(urls.database_url.as_ref());
                let (Some(app_url), Some(admin_url)) = (app_url, admin_url) else {
                    anyhow::bail!("cluster {}: no database URL", cluster.name);
                };
                let context = || format!("cluster {}: reading its database URL", cluster.name);
                Ok(ClusterDatabases {
                    name: cluster.name.clone(),
                    db: Database::connect_lazily(app_url, pool_size, limits)
                        .with_context(context)?,
                    admin: AdminDatabase::new(
                        Database::connect_lazily(admin_url, CLUSTER_ADMIN_POOL, limits)
                            .with_context(context)?,
                    ),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut connected = Self::open_home(target, pool_size, limits).await?;
        connected.others = others;
        Ok(connected)
    }

    async fn open_home(
        target: &DatabaseTarget,
        pool_size: usize,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        match target {
            DatabaseTarget::Url { url, admin_url } => {
                let db = Database::connect_with_limits(url, pool_size, limits).await?;
                let admin = match admin_url {
                    Some(u) => Some(
                        Database::connect(u, 8)
                            .await
                            .context("connecting with the admin database URL")?,
                    ),
                    None => None,
                };
                Ok(Self {
                    may_migrate: admin.is_some(),
                    admin: AdminDatabase::new(admin.unwrap_or_else(|| db.clone())),
                    db,
                    cluster: None,
                    others: Vec::new(),
                })
            }
            DatabaseTarget::Embedded { data_dir } => {
                let dir = data_dir.clone();
                let cluster =
                    tokio::task::spawn_blocking(move || EmbeddedCluster::start(&dir)).await??;
                ensure_database(&cluster.postgres_database_url(), EMBEDDED_DATABASE).await?;
                if !sealing::seals() {
                    std::fs::create_dir_all(data_dir)?;
                    sealing::use_key(sealing::key_in_file(&data_dir.join("secret.key"))?);
                }
                let db = Database::connect_with_limits(&cluster.database_url(), pool_size, limits)
                    .await?;
                Ok(Self {
                    admin: AdminDatabase::new(db.clone()),
                    db,
                    may_migrate: true,
                    cluster: Some(cluster),
                    others: Vec::new(),
                })
            }
        }
    }

    /// The connections that may change the schema.
    pub fn admin(&self) -> &AdminDatabase {
        &self.admin
    }

    /// Every data cluster's pools, the home database's first.
    pub fn fleet(&self) -> Fleet {
        self.fleet_serving_with(self.db.clone())
    }

    /// [`Connected::fleet`] with `app_db` as the home database's
    /// application pool (see [`Connected::application_db`]).
    pub fn fleet_serving_with(&self, app_db: Database) -> Fleet {
        Fleet::new(app_db, self.admin.clone(), self.others.clone())
    }

    /// Makes sure the database is at this program's version: migrates it
    /// when allowed (waiting for a running migrator), else refuses to work
    /// on an older database and says what to run.
    pub async fn ensure_current(&self) -> anyhow::Result<()> {
        if self.may_migrate {
            let options = MigrateOptions {
                wait_for_lock: true,
                ..Default::default()
            };
            let report = operator::migrate(&self.fleet(), &options, &|_, _| {}).await?;
            // A data cluster that is down stops only its own tenants: the
            // command (or the server) goes on, and says so.
            for failure in &report.cluster_failures {
                tracing::warn!(
                    cluster = %failure.cluster,
                    error = %failure.error,
                    "a data cluster could not be brought up to date"
                );
            }
            if let Some(failure) = report.failures.first() {
                anyhow::bail!(
                    "{} tenant(s) failed to migrate, first {} ({}): {}; run `atrium migrate` for the full list",
                    report.failures.len(),
                    failure.subdomain,
                    failure.schema_name,
                    failure.error
                );
            }
            return Ok(());
        }
        if operator::migrations_pending(&self.db).await? {
            anyhow::bail!(
                "the database is older than this atrium (or has no Atrium registry yet): run `atrium migrate` with a database URL that may change the schema"
            );
        }
        Ok(())
    }

    /// The pool the server's requests use. In the embedded default that is
    /// the `atrium_application` login, made (or brought up to date) here as
    /// `atrium db roles` would; against a URL it is the URL's own login.
    pub async fn application_db(&self, pool_size: usize) -> anyhow::Result<Database> {
        if self.cluster.is_none() {
            return Ok(self.db.clone());
        }
        operator::ensure_roles(self.admin()).await?;
        self.db.as_user(operator::APPLICATION_ROLE, pool_size).await
    }

    /// Closes the pools and leaves the embedded cluster (stopping it if no
    /// other process uses it).
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.fleet().close();
        if let Some(cluster) = self.cluster.take() {
            tokio::task::spawn_blocking(move || cluster.leave()).await??;
        }
        Ok(())
    }
}
