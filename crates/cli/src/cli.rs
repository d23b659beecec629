//! The command line, as CLI.md fixes it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "atrium",
    version,
    about = "Atrium: a multi-tenant CRM server on PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn log_json(&self) -> bool {
        matches!(&self.command, Command::Serve(args) if args.log_json)
    }

    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL (else ATRIUM_DATABASE_URL, else DATABASE_URL, else the
    /// private cluster under --data-dir).
    #[arg(
        long,
        global = true,
        env = "ATRIUM_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// A URL with rights to change the schema, used for migrations and
    /// provisioning when --database-url is the application's login.
    #[arg(
        long,
        global = true,
        env = "ATRIUM_ADMIN_DATABASE_URL",
        hide_env_values = true
    )]
    pub admin_database_url: Option<String>,
    /// Where the private PostgreSQL cluster lives when no URL is given.
    #[arg(long, global = true, env = "ATRIUM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Settings file (default: ./atrium.toml when it exists).
    #[arg(long, global = true, env = "ATRIUM_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Bring the registry, the template and every tenant to the newest version.
    Migrate(MigrateArgs),
    /// Create, inspect and change tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The data clusters tenants are placed on.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// System-wide totals: tenants, users, contacts, deals, companies, activities.
    Stats(JsonArg),
    /// Compare every tenant schema with `template`; exit 1 on any difference.
    Check(JsonArg),
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
    /// The emails queued or sent (invitations, password resets), newest first.
    Outbox(OutboxArgs),
    /// Remove expired invitations, tokens and sessions, purge records
    /// soft-deleted longer ago than the retention, and with --vacuum run
    /// VACUUM ANALYZE on the schemas written since the last run.
    Maintain(MaintainArgs),
    /// The busiest tenants of the last hour across every running server:
    /// requests, errors, p50/p99 latency, database time.
    Top(TopArgs),
    /// Index usage by tenant (scans, size; unused indexes flagged); with a
    /// subdomain, that tenant's indexes one by one.
    Indexes(IndexesArgs),
    /// Open database connections grouped by tenant and state.
    Connections(JsonArg),
    /// Tenant statements running now, longest first, on every cluster;
    /// `queries cancel` stops them.
    Queries(QueriesArgs),
    /// Each tenant's size (tables, indexes, TOAST), its growth over 7 and
    /// 30 days, and when each cluster's disk fills at that rate; with a
    /// subdomain, that tenant table by table.
    Capacity(CapacityArgs),
    /// The project's benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// How many tenants to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IndexesArgs {
    pub subdomain: Option<String>,
    /// Each B-tree index's estimated bloat (from the statistics, reading
    /// no table), only the bloated ones (30% and 1 MiB or more): what
    /// `maintain --reindex` rebuilds. With SUB, every index of that
    /// tenant with its estimate.
    #[arg(long)]
    pub bloated: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueriesArgs {
    /// Only statements that have run at least this many seconds.
    #[arg(long, default_value_t = 0.0, value_parser = parse_seconds)]
    pub over: f64,
    /// Also after `cancel`: `{"cancelled": N}` on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<QueriesAction>,
}

#[derive(Debug, Subcommand)]
pub enum QueriesAction {
    /// Cancel one running tenant statement by its backend PID, or every
    /// running statement of one tenant.
    Cancel {
        #[arg(required_unless_present = "tenant", conflicts_with = "tenant")]
        pid: Option<i32>,
        /// The tenant (subdomain) whose statements to cancel.
        #[arg(long)]
        tenant: Option<String>,
        /// The cluster the PID is on.
        #[arg(long, default_value = "default")]
        cluster: String,
    },
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    pub subdomain: Option<String>,
    /// The size of a cluster's disk, for the projection when Atrium cannot
    /// see it from this machine: SIZE for every cluster (500GiB, 2TB) or
    /// NAME=SIZE for one; repeatable.
    #[arg(long, value_name = "[NAME=]SIZE", value_parser = parse_disk_size)]
    pub disk_size: Vec<(Option<String>, u64)>,
    #[arg(long)]
    pub json: bool,
}

fn parse_disk_size(text: &str) -> Result<(Option<String>, u64), String> {
    let (cluster, size) = match text.split_once('=') {
        Some((name, size)) => (Some(name.trim().to_owned()), size),
        None => (None, text),
    };
    let bytes = size
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|_| format!("give a size such as 500GiB or 2TB, not {size:?}"))?
        .as_u64();
    if bytes == 0 {
        return Err("a disk size must be more than 0".into());
    }
    Ok((cluster, bytes))
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds >= 0.0 && seconds.is_finite() => Ok(seconds),
        _ => Err("give a number of seconds, 0 or more".into()),
    }
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or update the roles atrium_application, atrium_readonly,
    /// atrium_backup and atrium_admin and their grants.
    Roles(JsonArg),
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// Also VACUUM ANALYZE the tenant schemas written since they were last
    /// vacuumed or analyzed.
    #[arg(long)]
    pub vacuum: bool,
    /// Also rebuild the bloated tenant indexes (`atrium indexes
    /// --bloated`) with REINDEX INDEX CONCURRENTLY, two tables at a time;
    /// writes go on meanwhile.
    #[arg(long)]
    pub reindex: bool,
    /// Purge records soft-deleted more than this many days ago (default 30).
    #[arg(long, env = "ATRIUM_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub retention_days: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// How many emails to show.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10000))]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ATRIUM_BIND")]
    pub bind: Option<SocketAddr>,
    /// Tenants answer on <subdomain>.<base-domain>.
    #[arg(long, env = "ATRIUM_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// Bearer token of the platform API (without it that API answers 404).
    #[arg(long, env = "ATRIUM_PLATFORM_TOKEN", hide_env_values = true)]
    pub platform_token: Option<String>,
    /// Public URL of the server, for links in emails; may hold
    /// `{subdomain}` (default: http://<subdomain>.<base-domain>:<port>).
    #[arg(long, env = "ATRIUM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Proxies (addresses or CIDR ranges, comma-separated) whose
    /// X-Forwarded-For names the client and whose X-Forwarded-Proto says
    /// whether it used HTTPS.
    #[arg(long, env = "ATRIUM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Deliver queued emails through this SMTP server
    /// (smtp://user:pass@host:587, smtps://...); without it they stay in
    /// the outbox (`atrium outbox`).
    #[arg(long, env = "ATRIUM_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of emails (default: Atrium <no-reply@BASE_DOMAIN>).
    #[arg(long, env = "ATRIUM_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Run `atrium maintain --vacuum` this often, once across all servers;
    /// 0 turns it off (default 60). Needs the rights to change the schema
    /// (the embedded default or an admin URL). The old name
    /// `--maintenance-interval-minutes` (and its variable) still works.
    #[arg(
        long,
        alias = "maintenance-interval-minutes",
        env = "ATRIUM_MAINTAIN_INTERVAL_MINUTES"
    )]
    pub maintain_interval_minutes: Option<u32>,
    /// Purge records soft-deleted more than this many days ago (default 30).
    #[arg(long, env = "ATRIUM_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub retention_days: Option<u32>,
    /// Spare tenant schemas kept made and migrated, so creating a tenant
    /// is a rename (default 4; 0 turns the pool off). Needs the rights to
    /// change the schema.
    #[arg(long, env = "ATRIUM_SPARE_SCHEMAS", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub spare_schemas: Option<u32>,
    /// Retire a pooled database connection once it has served this many
    /// distinct tenants (default 500). Bounds each PostgreSQL backend's
    /// catalog memory, about 230 KiB per tenant it has served. The old
    /// name `--session-max-tenants` (and `ATRIUM_SESSION_MAX_TENANTS`)
    /// still works.
    #[arg(long, alias = "session-max-tenants", env = "ATRIUM_CONNECTION_MAX_TENANTS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connection_max_tenants: Option<u32>,
    /// A tenant statement that runs this many milliseconds or longer is
    /// logged (with its request id) and counted for its tenant in
    /// /metrics and `atrium top` (default 1000).
    #[arg(long, env = "ATRIUM_SLOW_STATEMENT_MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub slow_statement_ms: Option<u64>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain
    /// (PEM); reloaded on SIGHUP. Needs --tls-key.
    #[arg(
        long,
        env = "ATRIUM_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM). Needs --tls-cert.
    #[arg(
        long,
        env = "ATRIUM_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// Rebuild bloated tenant indexes (REINDEX CONCURRENTLY) this often,
    /// as part of the scheduled maintain; 0 turns it off (default 7).
    #[arg(long, env = "ATRIUM_REINDEX_INTERVAL_DAYS", value_parser = clap::value_parser!(u32).range(0..=365))]
    pub reindex_interval_days: Option<u32>,
    /// Also create (once) a `demo` tenant with sample data, and say how
    /// to sign in.
    #[arg(long)]
    pub demo: bool,
    /// Serve even when the database login is a superuser, has CREATEROLE
    /// or owns the tenant tables. For development only: such a login
    /// turns a query mistake into a reach across tenants.
    #[arg(long)]
    pub unsafe_allow_privileged_login: bool,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "ATRIUM_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    /// Tenants migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Migrate this tenant's schema only (after the registry and
    /// `template`): for a migration that needs the tenant quiet, run while
    /// it is in maintenance.
    #[arg(long, value_name = "SUB")]
    pub tenant: Option<String>,
    /// Change nothing: copy tenant SUB (the largest tenant without SUB)
    /// into a scratch schema, run the pending migrations on the copy in a
    /// transaction, report how long each took and the locks it took, roll
    /// back and drop the copy.
    #[arg(long, value_name = "SUB", num_args = 0..=1, default_missing_value = "", conflicts_with = "tenant")]
    pub rehearse: Option<String>,
    #[arg(long, requires = "rehearse")]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<MigrateAction>,
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// The newest version and how many tenants are at each version.
    Status(JsonArg),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Provision a tenant with its first admin.
    Create(TenantCreateArgs),
    /// Every tenant with id, subdomain, schema, status, tier, version, users.
    List(JsonArg),
    /// One tenant with its record counts.
    Show {
        subdomain: String,
        #[arg(long)]
        json: bool,
    },
    /// Refuse the tenant's requests until resumed.
    Suspend { subdomain: String },
    /// Serve a suspended tenant again.
    Resume { subdomain: String },
    /// Change a tenant's subdomain; its schema stays.
    Rename {
        subdomain: String,
        new_subdomain: String,
    },
    /// Write a self-describing archive of the tenant's data (owner-only
    /// file permissions: it holds password hashes and personal data).
    Export {
        subdomain: String,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Create a new tenant from an archive; ids and relations are kept.
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        subdomain: String,
        /// The source tenant's name when not given.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A `pg_dump` backup of the tenant's schema and registry row
    /// (owner-only file permissions).
    Backup {
        subdomain: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup as the tenant it was (same id, subdomain and
    /// schema); refuses while that tenant exists.
    Restore {
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Drop the tenant's schema, its role and its registry row.
    Delete {
        subdomain: String,
        /// Confirm: the tenant's data is gone for good.
        #[arg(long)]
        yes: bool,
    },
    /// Take the tenant out of service for work that needs it quiet (its
    /// API answers 503 `maintenance`, its pages say so, on every server
    /// within a second), or put it back.
    Maintenance {
        subdomain: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// What the tenant's people are told (with `on`).
        #[arg(long)]
        message: Option<String>,
    },
    /// Move the tenant to another cluster while it keeps serving: copy
    /// and catch up with logical replication, pause its writes briefly,
    /// flip the registry. Progress on stderr.
    Move(TenantMoveArgs),
}

#[derive(Debug, Args)]
pub struct TenantMoveArgs {
    pub subdomain: String,
    /// The cluster to move it to.
    #[arg(long, required_unless_present = "abort")]
    pub to: Option<String>,
    /// The longest the tenant's writes may wait at the cut-over, in
    /// seconds; a cut-over that would take longer backs off and retries.
    #[arg(long, default_value_t = 2.0, value_parser = parse_max_pause)]
    pub max_pause: f64,
    /// Drop the source schema at once instead of keeping it renamed
    /// (`moved_<id>_<timestamp>`) until `atrium maintain` removes it.
    #[arg(long)]
    pub drop_source: bool,
    /// Stop an unfinished move and remove what it made; the tenant stays
    /// where it is.
    #[arg(long, conflicts_with_all = ["to", "drop_source"])]
    pub abort: bool,
    #[arg(long)]
    pub json: bool,
}

fn parse_max_pause(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.05..=60.0).contains(&seconds) => Ok(seconds),
        _ => Err("give seconds between 0.05 and 60".into()),
    }
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub subdomain: String,
    #[arg(long)]
    pub admin_email: String,
    /// Without it a strong password is generated and printed once.
    #[arg(long, env = "ATRIUM_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    #[arg(long, default_value = "Admin")]
    pub admin_first_name: String,
    #[arg(long, default_value = "User")]
    pub admin_last_name: String,
    #[arg(long, value_parser = ["small", "medium", "large"], default_value = "small")]
    pub tier: String,
    /// The data cluster to place it on, instead of the accepting one with
    /// the fewest tenants.
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every data cluster: name, accepting new tenants or not, reachable
    /// or not, version, tenant count, size.
    List(JsonArg),
    /// Let new tenants be placed on the cluster.
    Accept { name: String },
    /// Stop placing new tenants on the cluster (its tenants stay).
    Refuse { name: String },
    /// Stop placing tenants on the cluster and move its tenants to the
    /// others, one at a time (each where a new tenant would go).
    Drain {
        name: String,
        /// Say which tenant would go where, and move nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Provisioning one tenant against the same DDL run directly.
    Provision(BenchProvisionArgs),
    /// An additive migration across many tenants against a raw loop, and a
    /// no-op migrate's query count at 10 and at N tenants.
    Migrate(BenchMigrateArgs),
    /// API throughput and latency against direct SQL for the same work.
    Api(BenchApiArgs),
    /// A large contact CSV import through the API against `COPY`.
    Import(BenchImportArgs),
    /// Tenant export and import against plain `COPY` of the same tables.
    Archive(BenchArchiveArgs),
    /// A small-tier tenant flooding the server beside a quiet one.
    Noisy(BenchNoisyArgs),
    /// Memory over time under a steady load with nobody scraping /metrics.
    Soak(BenchSoakArgs),
    /// The whole fleet at N tenants: provisioning, migration, commands,
    /// API spread and memory, in one report.
    Fleet(BenchFleetArgs),
    /// The web application's pages against the JSON API for the same
    /// data, and the pages of a large tenant against their targets.
    Ui(BenchUiArgs),
    /// A tenant moved between two clusters under a writer, against
    /// pg_dump | pg_restore of the same schema.
    Move(BenchMoveArgs),
}

#[derive(Debug, Args)]
pub struct BenchMoveArgs {
    /// Contacts of the moved tenant (the other tables in proportion).
    #[arg(long, default_value_t = 100_000)]
    pub contacts: u32,
    /// The move's --max-pause, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub max_pause_ms: u64,
    /// Tenants per cluster for the two-clusters-against-one throughput.
    #[arg(long, default_value_t = 40)]
    pub tenants: u32,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct BenchUiArgs {
    /// Small tenants the side-by-side measurements spread over.
    #[arg(long, default_value_t = 100)]
    pub tenants: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Contacts in the large tenant (with a tenth as many companies, a
    /// fifth as many deals and half as many activities).
    #[arg(long, default_value_t = 100_000)]
    pub contacts: u32,
}

#[derive(Debug, Args)]
pub struct BenchFleetArgs {
    #[arg(long, default_value_t = 1000)]
    pub tenants: u32,
    /// Concurrent clients (and database connections on each side).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds per API measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Tenants provisioned and filled at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
}

#[derive(Debug, Args)]
pub struct BenchSoakArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// How long to run.
    #[arg(long, default_value_t = 300)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct BenchNoisyArgs {
    /// Concurrent connections of the flooding tenant.
    #[arg(long, default_value_t = 32)]
    pub flood_clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct BenchArchiveArgs {
    /// Contacts in the tenant (with a tenth as many companies, a fifth as
    /// many deals and half as many activities).
    #[arg(long, default_value_t = 100_000)]
    pub contacts: u32,
}

#[derive(Debug, Args)]
pub struct BenchImportArgs {
    /// Rows in the generated CSV file.
    #[arg(long, default_value_t = 100_000)]
    pub rows: u32,
    /// Rounds of an import and a `COPY` of the file, each into fresh
    /// tenants; the report gives each round and the median ratio.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

#[derive(Debug, Args)]
pub struct BenchApiArgs {
    /// Tenant counts to measure at, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub tenants: Vec<u32>,
    /// Concurrent clients (and database connections on each side).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Distinct tenants after which the server's pooled connections
    /// retire (as `serve --connection-max-tenants`; default 500).
    #[arg(long, alias = "session-max-tenants", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connection_max_tenants: Option<u32>,
    /// Measurements of each workload on each side, taking turns; the
    /// median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
}

#[derive(Debug, Args)]
pub struct BenchProvisionArgs {
    /// Tenants created before the second round of measurements.
    #[arg(long, default_value_t = 1000)]
    pub existing: u32,
    /// Samples per measurement (the median is reported).
    #[arg(long, default_value_t = 30)]
    pub samples: u32,
}

#[derive(Debug, Args)]
pub struct BenchMigrateArgs {
    #[arg(long, default_value_t = 1000)]
    pub tenants: u32,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    #[test]
    fn the_old_flag_of_connection_max_tenants_still_works() {
        for flag in ["--connection-max-tenants", "--session-max-tenants"] {
            let cli = Cli::try_parse_from(["atrium", "serve", flag, "7"]).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("serve expected");
            };
            assert_eq!(args.connection_max_tenants, Some(7), "{flag}");
        }
    }

    #[test]
    fn the_old_flag_of_the_maintain_interval_still_works() {
        for flag in [
            "--maintain-interval-minutes",
            "--maintenance-interval-minutes",
        ] {
            let cli = Cli::try_parse_from(["atrium", "serve", flag, "5"]).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("serve expected");
            };
            assert_eq!(args.maintain_interval_minutes, Some(5), "{flag}");
        }
    }
}
