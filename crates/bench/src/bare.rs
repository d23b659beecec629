//! The API measured from outside by `wrk` against the bare query as
//! PostgreSQL runs it under `pgbench`: the ratio the project's throughput
//! targets are stated in. Both generators are small C programs, so neither
//! side pays for a load generator written in this process; they share the
//! machine's cores with the server and PostgreSQL as the in-process table
//! does.
//!
//! The bare query is one transaction of what a client of PostgreSQL alone
//! would send for the same answer, prepared: `BEGIN`, the tenant's
//! `search_path`, the record query with no session check, `COMMIT`.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use atrium_store::Database;

use crate::fixtures::{BenchTenant, CONTACTS_PER_TENANT};

/// The workloads of this table: the API path's pattern and the bare query
/// it is compared with.
const WORKLOADS: [(&str, Workload); 3] = [
    ("GET /api/v1/me", Workload::Me),
    ("GET /api/v1/contacts/{id}", Workload::ContactById),
    ("GET /api/v1/contacts?q=", Workload::Search),
];

#[derive(Clone, Copy)]
enum Workload {
    Me,
    ContactById,
    Search,
}

/// One measurement: requests or transactions a second, the mean latency,
/// the failures.
#[derive(Clone, Copy)]
struct Measured {
    per_second: f64,
    mean: Duration,
    errors: u64,
}

/// Whether both generators are on this machine.
pub(crate) fn available() -> bool {
    ["wrk", "pgbench"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// The table's header, with what each side runs.
pub(crate) fn header(
    report: &mut String,
    clients: usize,
    seconds: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    writeln!(
        report,
        "\n### Against the bare query (`wrk` and `pgbench`)\n\n\
         *API*: `wrk` with {clients} connections for {seconds} s, each request to a random tenant \
         with its session's bearer token. *Bare query*: `pgbench -M prepared` with {clients} \
         connections, each transaction `BEGIN`, the random tenant's `search_path` by \
         `set_config`, the record query with no session check (the user by id; the contact by \
         id; the contacts whose search vector matches the words as prefixes, best `ts_rank` \
         first, 50 of them), `COMMIT`. Latencies are means. The two take turns, {rounds} \
         times per workload; the row is the round whose ratio is the median, and the last \
         column gives every round's ratio.\n"
    )?;
    writeln!(
        report,
        "| tenants | workload | API req/s | API mean | bare tx/s | bare mean | API / bare | rounds |"
    )?;
    writeln!(
        report,
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    )?;
    Ok(())
}

/// Measures every workload over `tenants` through the server at `addr` and
/// directly on `db`, `rounds` times in turn (the API, then the bare query),
/// and adds a row each to `report`: the round whose ratio is the median,
/// so that a burst of other work on the machine, which falls on one side
/// of one round, does not decide the figure.
pub(crate) async fn rows(
    report: &mut String,
    db: &Database,
    addr: std::net::SocketAddr,
    tenants: &Arc<Vec<BenchTenant>>,
    clients: usize,
    seconds: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let ids = tenant_id_range(tenants)?;
    let dir = tempfile::tempdir()?;
    let lua = dir.path().join("tenants.lua");
    let sql_file = dir.path().join("bare.sql");
    for (label, workload) in WORKLOADS {
        std::fs::write(&lua, wrk_script(tenants, workload))?;
        std::fs::write(&sql_file, pgbench_script(ids, workload))?;
        let mut pairs = Vec::new();
        for _ in 0..rounds.max(1) {
            let api = wrk(addr, &lua, clients, seconds).await?;
            let bare = pgbench(db, &sql_file, clients, seconds).await?;
            pairs.push((api, bare));
        }
        let ratios: Vec<String> = pairs
            .iter()
            .map(|(api, bare)| format!("{:.2}", api.per_second / bare.per_second))
            .collect();
        pairs.sort_by(|(a, b), (c, d)| {
            (a.per_second / b.per_second).total_cmp(&(c.per_second / d.per_second))
        });
        let (api, bare) = pairs[pairs.len() / 2];
        writeln!(
            report,
            "| {} | {label} | {:.0} | {} | {:.0} | {} | {:.2}× | {} |",
            tenants.len(),
            api.per_second,
            crate::ms(api.mean),
            bare.per_second,
            crate::ms(bare.mean),
            api.per_second / bare.per_second,
            ratios.join(", "),
        )?;
        let errors: u64 = pairs.iter().map(|(a, b)| a.errors + b.errors).sum();
        if errors > 0 {
            writeln!(report, "|  | ({errors} errors) | | | | | | |")?;
        }
    }
    Ok(())
}

/// The first and last tenant id: pgbench picks a tenant by number, so the
/// schemas must be `tenant_<id>` for every id between them.
fn tenant_id_range(tenants: &[BenchTenant]) -> anyhow::Result<(i64, i64)> {
    let ids: Vec<i64> = tenants
        .iter()
        .map(|t| t.schema.trim_start_matches("tenant_").parse())
        .collect::<Result<_, _>>()
        .context("a bench tenant's schema is not tenant_<id>")?;
    let (first, last) = (ids.iter().min().copied(), ids.iter().max().copied());
    let (Some(first), Some(last)) = (first, last) else {
        anyhow::bail!("no tenants to measure");
    };
    anyhow::ensure!(
        last - first + 1 == ids.len() as i64,
        "the bench tenants' ids are not contiguous"
    );
    Ok((first, last))
}

/// A wrk script sending each request to a random tenant with its token.
fn wrk_script(tenants: &[BenchTenant], workload: Workload) -> String {
    let mut lua = String::from("local tenants = {\n");
    for t in tenants {
        // Subdomains and tokens are the bench's own: letters, digits, '-'.
        let _ = writeln!(
            lua,
            "  {{\"{}.localhost\", \"Bearer {}\"}},",
            t.subdomain, t.token
        );
    }
    lua.push_str("}\n");
    let searches: Vec<String> = crate::api::SEARCHES
        .iter()
        .map(|q| format!("\"/api/v1/contacts?q={}\"", q.replace(' ', "+")))
        .collect();
    let _ = writeln!(lua, "local searches = {{{}}}", searches.join(", "));
    let path = match workload {
        Workload::Me => "\"/api/v1/me\"".to_owned(),
        Workload::ContactById => {
            format!("\"/api/v1/contacts/\" .. math.random(1, {CONTACTS_PER_TENANT})")
        }
        Workload::Search => "searches[math.random(#searches)]".to_owned(),
    };
    let _ = write!(
        lua,
        "local next_seed = 1
setup = function(thread)
  thread:set(\"seed\", next_seed)
  next_seed = next_seed + 1
end
init = function(args)
  math.randomseed(os.time() * 100 + seed)
end
request = function()
  local t = tenants[math.random(#tenants)]
  return wrk.format(\"GET\", {path}, {{[\"Host\"] = t[1], [\"Authorization\"] = t[2]}})
end
"
    );
    lua
}

/// The bare transaction for pgbench, over tenants `first..=last`.
fn pgbench_script((first, last): (i64, i64), workload: Workload) -> String {
    let contact = atrium_store::records::record_json(&atrium_domain::records::CONTACT);
    let (variables, query) = match workload {
        Workload::Me => (
            String::new(),
            "SELECT id, email, first_name, last_name, role, permissions, active, \
             email_verified, last_login, created_at, updated_at FROM users WHERE id = 1 \
             AND deleted_at IS NULL;"
                .to_owned(),
        ),
        Workload::ContactById => (
            format!("\\set id random(1, {CONTACTS_PER_TENANT})\n"),
            format!("SELECT {contact} FROM contacts t WHERE t.id = :id AND t.deleted_at IS NULL;"),
        ),
        Workload::Search => {
            let queries: Vec<String> = crate::api::SEARCHES
                .iter()
                .map(|q| format!("'{}'", crate::api::tsquery_of(q).replace('\'', "''")))
                .collect();
            (
                format!("\\set q random(1, {})\n", queries.len()),
                format!(
                    "SELECT {contact} FROM contacts t, to_tsquery('simple', \
                     (ARRAY[{}])[:q]) query WHERE t.search_vector @@ query \
                     AND t.deleted_at IS NULL ORDER BY ts_rank(t.search_vector, query) DESC, \
                     t.id DESC LIMIT 50;",
                    queries.join(", ")
                ),
            )
        }
    };
    format!(
        "\\set t random({first}, {last})\n{variables}BEGIN;\n\
         SELECT set_config('search_path', 'tenant_' || :t || ', extensions', true);\n\
         {query}\nCOMMIT;\n"
    )
}

async fn wrk(
    addr: std::net::SocketAddr,
    script: &std::path::Path,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let output = tokio::process::Command::new("wrk")
        .args(["-t", "2", "-c", &clients.to_string()])
        .args(["-d", &format!("{seconds}s")])
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/"))
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    let requests: f64 = value_after(&text, "Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))?;
    let mean = text
        .lines()
        .find(|l| l.trim_start().starts_with("Latency"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(wrk_duration)
        .unwrap_or_default();
    let errors = value_after(&text, "Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + value_after(&text, "Socket errors:").map_or(0, |_| 1);
    Ok(Measured {
        per_second: requests,
        mean,
        errors,
    })
}

async fn pgbench(
    db: &Database,
    script: &std::path::Path,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let output = tokio::process::Command::new("pgbench")
        .envs(db.libpq_env())
        .args(["-n", "-M", "prepared", "-j", "2"])
        .args(["-c", &clients.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(script)
        .output()
        .await
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tps = value_after(&text, "tps =")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench's output: {text}"))?;
    let mean_ms: f64 = value_after(&text, "latency average =")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let errors = value_after(&text, "number of failed transactions:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Measured {
        per_second: tps,
        mean: Duration::from_secs_f64(mean_ms / 1000.0),
        errors,
    })
}

/// The first word after `label` on the line that holds it.
fn value_after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let line = text.lines().find(|l| l.contains(label))?;
    line.split_once(label)?.1.split_whitespace().next()
}

/// wrk's durations: `812.00us`, `1.23ms`, `1.01s`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_and_pgbench_figures() {
        let wrk = "  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.23ms  300.00us   9.00ms   80.00%\n  Non-2xx or 3xx responses: 7\nRequests/sec:   4321.50\n";
        assert_eq!(value_after(wrk, "Requests/sec:"), Some("4321.50"));
        assert_eq!(value_after(wrk, "Non-2xx or 3xx responses:"), Some("7"));
        assert_eq!(
            wrk_duration("812.00us"),
            Some(Duration::from_secs_f64(0.000812))
        );
        assert_eq!(wrk_duration("1.5s"), Some(Duration::from_millis(1500)));
        let pgbench =
            "latency average = 0.950 ms\ntps = 8412.345678 (without initial connection time)\n";
        assert_eq!(value_after(pgbench, "tps ="), Some("8412.345678"));
        assert_eq!(value_after(pgbench, "latency average ="), Some("0.950"));
    }
}
