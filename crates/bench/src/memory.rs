//! Memory of this process and of the PostgreSQL backends serving a
//! database, from `/proc` (PostgreSQL on this machine, readable by us).

use atrium_store::Database;

/// The `application_name` of the in-process server's sessions, by which
/// its backends are told from the benchmark's own.
pub(crate) const SERVER_APPLICATION: &str = "atrium-bench-server";

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// This process (server and load generator), resident.
    pub process_rss_kib: u64,
    /// Private memory (`Private_Clean + Private_Dirty` of
    /// `smaps_rollup`) of each backend of the server's pool; RSS would
    /// count shared buffers.
    pub server_backends_kib: Vec<u64>,
    /// The same for the benchmark's own backends of the database.
    pub other_backends_kib: Vec<u64>,
    /// The last statement of the largest of those, to say what grew it.
    pub largest_other_query: Option<String>,
}

/// The median and the largest, in MiB.
pub(crate) fn median_and_max_mib(kib: &[u64]) -> (f64, f64) {
    let mut all = kib.to_vec();
    all.sort_unstable();
    let mib = |k: Option<&u64>| k.copied().unwrap_or(0) as f64 / 1024.0;
    (mib(all.get(all.len() / 2)), mib(all.last()))
}

impl Snapshot {
    pub fn process_mib(&self) -> f64 {
        self.process_rss_kib as f64 / 1024.0
    }
}

/// A figure (`VmRSS`, `VmHWM`) of this process from `/proc/self/status`,
/// in KiB.
pub(crate) fn own_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    match field_kib(&status, field) {
        0 => anyhow::bail!("no {field} in /proc/self/status"),
        kib => Ok(kib),
    }
}

fn field_kib(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn snapshot(db: &Database) -> anyhow::Result<Snapshot> {
    let session = db.connection().await?;
    let backends = session
        .query(
            "SELECT pid, application_name, left(query, 100) FROM pg_stat_activity
              WHERE datname = current_database() AND backend_type = 'client backend'
                AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    let (mut server_backends_kib, mut other_backends_kib) = (Vec::new(), Vec::new());
    let mut largest_other: Option<(u64, String)> = None;
    for backend in backends {
        let (pid, application, query): (i32, String, String) =
            (backend.get(0), backend.get(1), backend.get(2));
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            let private = field_kib(&text, "Private_Clean") + field_kib(&text, "Private_Dirty");
            if application == SERVER_APPLICATION {
                server_backends_kib.push(private);
            } else {
                other_backends_kib.push(private);
                if largest_other.as_ref().is_none_or(|(kib, _)| private > *kib) {
                    largest_other = Some((private, query));
                }
            }
        }
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    Ok(Snapshot {
        process_rss_kib: field_kib(&status, "VmRSS"),
        server_backends_kib,
        other_backends_kib,
        largest_other_query: largest_other.map(|(_, query)| query),
    })
}
