//! The project's benchmarks, run as `atrium bench ...`. Each works in a
//! scratch database of its own on the same server, compares Atrium with
//! PostgreSQL doing the same work directly in the same run, and prints a
//! Markdown report.

pub mod api;
pub mod archive;
mod bare;
mod fixtures;
mod fleet;
pub mod import;
mod load;
mod memory;
pub mod migrate;
pub mod moving;
pub mod noisy;
pub mod provision;
pub mod scale;
pub mod soak;
pub mod ui;

use atrium_store::AdminDatabase;
use std::time::Duration;

use atrium_store::Database;

/// A scratch database for one benchmark run, dropped (with its tenant roles)
/// by [`Scratch::finish`].
pub struct Scratch {
    pub db: Database,
    name: String,
    /// An earlier run's database, measured again: never dropped.
    reused: bool,
}

impl Scratch {
    pub async fn create(server: &Database) -> anyhow::Result<Self> {
        let name = format!("atrium_bench_{:08x}", rand_suffix());
        let db = server.create_sibling(&name, 8).await?;
        atrium_store::fleet::migrate::migrate(
            &AdminDatabase::new(db.clone()),
            &Default::default(),
            &|_, _| {},
        )
        .await?;
        Ok(Self {
            db,
            name,
            reused: false,
        })
    }

    /// The scratch database named by `ATRIUM_BENCH_REUSE` (one an earlier
    /// run kept with `ATRIUM_BENCH_KEEP`), if that is set: measuring a
    /// large fleet again without making it again.
    pub async fn reused(server: &Database) -> anyhow::Result<Option<Self>> {
        let Some(name) = std::env::var_os("ATRIUM_BENCH_REUSE") else {
            return Ok(None);
        };
        let name = name
            .into_string()
            .map_err(|_| anyhow::anyhow!("ATRIUM_BENCH_REUSE is not a database name"))?;
        anyhow::ensure!(
            name.starts_with("atrium_bench_"),
            "ATRIUM_BENCH_REUSE names a kept scratch database (atrium_bench_...), not {name}"
        );
        let db = server.sibling(&name, 8).await?;
        Ok(Some(Self {
            db,
            name,
            reused: true,
        }))
    }

    /// Drops the scratch database, unless `ATRIUM_BENCH_KEEP` is set: then
    /// it is left, and named on stderr, for looking into a result.
    pub async fn finish(self, server: &Database) -> anyhow::Result<()> {
        if self.reused {
            return Ok(());
        }
        if std::env::var_os("ATRIUM_BENCH_KEEP").is_some() {
            eprintln!("kept the scratch database {}", self.name);
            return Ok(());
        }
        server.drop_sibling(self.db, &self.name).await
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or_default()
}

/// The server in this process on a random local port, over `server_db`
/// (admin work on `db`), with default settings; stopped by aborting the
/// handle.
pub(crate) async fn serve_in_process(
    server_db: Database,
    db: &Database,
) -> anyhow::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(atrium_http::serve(
        listener,
        server_db,
        AdminDatabase::new(db.clone()),
        atrium_http::ServerSettings::default(),
        std::future::pending(),
    ));
    Ok((addr, server))
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
