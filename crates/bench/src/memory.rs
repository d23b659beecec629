//! Memory of this process and of the PostgreSQL backends serving a
//! database, from `/proc` (PostgreSQL on this machine, readable by us).

use atrium_store::Database;

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// This process (server and load generator), resident.
    pub process_rss_kib: u64,
    /// Private memory (`Private_Clean + Private_Dirty` of
    /// `smaps_rollup`) of each backend connected to the database; RSS
    /// would count shared buffers.
    pub backends_private_kib: Vec<u64>,
}

impl Snapshot {
    pub fn max_backend_mib(&self) -> f64 {
        self.backends_private_kib.iter().copied().max().unwrap_or(0) as f64 / 1024.0
    }

    pub fn median_backend_mib(&self) -> f64 {
        let mut all = self.backends_private_kib.clone();
        all.sort_unstable();
        all.get(all.len() / 2).copied().unwrap_or(0) as f64 / 1024.0
    }

    pub fn process_mib(&self) -> f64 {
        self.process_rss_kib as f64 / 1024.0
    }
}

fn field_kib(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn snapshot(db: &Database) -> anyhow::Result<Snapshot> {
    let session = db.session().await?;
    let pids: Vec<i32> = session
        .query(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND backend_type = 'client backend'
                AND pid <> pg_backend_pid()",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut backends_private_kib = Vec::new();
    for pid in pids {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            backends_private_kib
                .push(field_kib(&text, "Private_Clean") + field_kib(&text, "Private_Dirty"));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    Ok(Snapshot {
        process_rss_kib: field_kib(&status, "VmRSS"),
        backends_private_kib,
    })
}
