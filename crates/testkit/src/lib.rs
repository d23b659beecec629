//! A real PostgreSQL for tests: `ATRIUM_TEST_DATABASE_URL` when set, else a
//! throwaway cluster started once per test process. Every test gets a
//! database of its own, so tests run in parallel without meeting.

use std::sync::OnceLock;

use atrium_store::connection::embedded::ThrowawayCluster;
use atrium_store::fleet::migrate;
use atrium_store::{AdminDatabase, ClusterDatabases, Database, Fleet, ensure_database};

static SERVER: OnceLock<Server> = OnceLock::new();

enum Server {
    Given(String),
    Throwaway(ThrowawayCluster),
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var("ATRIUM_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Server::Given(url),
        _ => Server::Throwaway(
            ThrowawayCluster::start().expect("starting a throwaway PostgreSQL cluster for tests"),
        ),
    })
}

/// URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    match server() {
        Server::Given(url) => with_database(url, name),
        Server::Throwaway(c) => with_database(&c.postgres_database_url(), name),
    }
}

/// The test server's own cluster, when the tests started one.
pub fn throwaway_cluster() -> Option<&'static ThrowawayCluster> {
    match server() {
        Server::Throwaway(c) => Some(c),
        Server::Given(_) => None,
    }
}

/// Replaces the database name in a `postgresql://` URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database of one test, dropped (with the tenant roles its registry
/// made) when the test is done with it. `ATRIUM_TEST_KEEP=1` keeps it to
/// look into, and names it on stderr.
pub struct EmptyDatabase {
    pub url: String,
    name: String,
    /// The server's `postgres` database, to drop this one from.
    postgres_db: String,
}

/// A fresh, empty database (no registry yet).
pub async fn empty_database() -> EmptyDatabase {
    empty_database_at(&database_url("postgres")).await
}

/// A fresh, empty database on the server of `postgres_db` (the URL of its
/// `postgres` database), for a test with a cluster of its own.
pub async fn empty_database_at(postgres_db: &str) -> EmptyDatabase {
    let name = format!("atrium_test_{:016x}", rand::random::<u64>());
    let mut last_error = None;
    // The throwaway server may still be starting.
    for _ in 0..100 {
        match ensure_database(postgres_db, &name).await {
            Ok(()) => {
                return EmptyDatabase {
                    url: with_database(postgres_db, &name),
                    name,
                    postgres_db: postgres_db.to_owned(),
                };
            }
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("creating a test database: {:#}", last_error.unwrap());
}

impl Drop for EmptyDatabase {
    fn drop(&mut self) {
        if std::env::var_os("ATRIUM_TEST_KEEP").is_some_and(|v| !v.is_empty()) {
            eprintln!("kept test database {}", self.name);
            return;
        }
        let (url, name, postgres_db) = (
            self.url.clone(),
            self.name.clone(),
            self.postgres_db.clone(),
        );
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // the clean-up gets a thread and a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let server = Database::connect(&postgres_db, 1).await?;
                let test = Database::connect(&url, 1).await?;
                server.drop_sibling(test, &name).await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e:#}", self.name),
            Err(_) => eprintln!("could not drop test database {}", self.name),
        }
    }
}

/// A fresh database with the registry and `template` migrated, dropped
/// when the test is done with it.
pub struct TestDatabase {
    pub url: String,
    pub db: Database,
    /// The same login as `db`, with the type fleet work asks for.
    pub admin: AdminDatabase,
    /// Declared last: dropped after the pool above is closed.
    _database: EmptyDatabase,
}

pub async fn migrated_database() -> TestDatabase {
    migrated(empty_database().await).await
}

/// As [`migrated_database`], on the server of `postgres_db`.
pub async fn migrated_database_at(postgres_db: &str) -> TestDatabase {
    migrated(empty_database_at(postgres_db).await).await
}

async fn migrated(database: EmptyDatabase) -> TestDatabase {
    let db = Database::connect(&database.url, 8)
        .await
        .expect("connecting");
    let admin = AdminDatabase::new(db.clone());
    migrate::migrate(&admin, &migrate::MigrateOptions::default(), &|_, _| {})
        .await
        .expect("migrating the test database");
    TestDatabase {
        url: database.url.clone(),
        db,
        admin,
        _database: database,
    }
}

/// A data cluster of a test about several clusters: a PostgreSQL server
/// of its own (so the test can stop it), with an empty database `atrium`
/// that `migrate_fleet` sets up. It lives as long as the test process.
pub struct DataCluster {
    pub name: String,
    pub server: ThrowawayCluster,
    pub url: String,
}

impl DataCluster {
    pub async fn start(name: &str) -> Self {
        let server = tokio::task::spawn_blocking(ThrowawayCluster::start)
            .await
            .unwrap()
            .expect("starting a data cluster for a test");
        let database = empty_database_at(&server.postgres_database_url()).await;
        let url = database.url.clone();
        // Nobody drops it: the server goes with the test process.
        std::mem::forget(database);
        Self {
            name: name.to_owned(),
            server,
            url,
        }
    }

    /// Pools to it, connected on first use, as a server declares it.
    pub fn databases(&self) -> ClusterDatabases {
        let db = Database::connect_lazily(&self.url, 8, Default::default()).unwrap();
        ClusterDatabases {
            name: self.name.clone(),
            admin: AdminDatabase::new(db.clone()),
            db,
        }
    }
}

/// The fleet of `home` and `others`, migrated (the other clusters set up
/// for the home registry).
pub async fn migrated_fleet(home: &TestDatabase, others: &[&DataCluster]) -> Fleet {
    let fleet = Fleet::new(
        home.db.clone(),
        home.admin.clone(),
        others.iter().map(|c| c.databases()).collect(),
    );
    let report = migrate::migrate_fleet(&fleet, &Default::default(), &|_, _| {})
        .await
        .expect("migrating the fleet");
    assert!(
        report.cluster_failures.is_empty(),
        "{:?}",
        report.cluster_failures
    );
    fleet
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgresql://u:p@127.0.0.1:5432/postgres", "x"),
            "postgresql://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://postgres@/postgres?host=/tmp/a", "x"),
            "postgresql://postgres@/x?host=/tmp/a"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
