//! The data clusters one process reaches: the home database (cluster
//! `default`, which also keeps the registry) and the clusters the operator
//! declared, each with the application's pool and the operator's.
//!
//! A tenant's row in the home registry names its cluster; every tenant
//! transaction runs on that cluster's pool. A data cluster is a database
//! set up like the home one (the same control migrations, `template`, the
//! home's role prefix), whose own `public.tenants` keeps a bookkeeping copy
//! of the rows of the tenants placed there: its counters, invitations and
//! migration runs refer to them. The home registry alone says where a
//! tenant is.

use std::sync::Arc;

use crate::{AdminDatabase, Database};

/// The name of the home database as a data cluster.
pub const HOME_CLUSTER: &str = "default";

/// One cluster's pools.
#[derive(Clone, Debug)]
pub struct ClusterDatabases {
    pub name: String,
    /// The application's login: tenant work.
    pub db: Database,
    /// The operator's login: migrations, provisioning, moves.
    pub admin: AdminDatabase,
}

/// Every cluster this process knows, the home one first.
#[derive(Clone, Debug)]
pub struct Fleet {
    clusters: Arc<[ClusterDatabases]>,
}

impl Fleet {
    /// The home database alone.
    pub fn single(db: Database, admin: AdminDatabase) -> Self {
        Self::new(db, admin, Vec::new())
    }

    /// The home database and the declared clusters (named other than
    /// `default`, each once: the settings check that).
    pub fn new(db: Database, admin: AdminDatabase, others: Vec<ClusterDatabases>) -> Self {
        let home = ClusterDatabases {
            name: HOME_CLUSTER.to_owned(),
            db,
            admin,
        };
        let mut clusters = vec![home];
        clusters.extend(others.into_iter().filter(|c| c.name != HOME_CLUSTER));
        clusters[1..].sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            clusters: clusters.into(),
        }
    }

    /// The home database: the registry, and the `default` cluster.
    pub fn home(&self) -> &ClusterDatabases {
        &self.clusters[0]
    }

    /// The cluster called `name`, if this process knows it.
    pub fn cluster(&self, name: &str) -> Option<&ClusterDatabases> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Every cluster, the home one first, the others by name.
    pub fn clusters(&self) -> &[ClusterDatabases] {
        &self.clusters
    }

    /// Closes every pool.
    pub fn close(&self) {
        for cluster in self.clusters.iter() {
            cluster.db.close();
            cluster.admin.close();
        }
    }
}
