//! The embedded default: a private PostgreSQL cluster started from the
//! machine's own server binaries when no database URL is given.
//!
//! One cluster serves every `atrium` process that uses the same data
//! directory. Each process holds a shared lock on `cluster.users` while it
//! uses the cluster; whoever leaves last (takes the exclusive lock) stops it.
//! Start and stop decisions are serialised by an exclusive lock on
//! `cluster.lock`, so two processes never race to `initdb` or `pg_ctl start`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, User};

/// The database every embedded cluster serves Atrium from.
pub const EMBEDDED_DATABASE: &str = "atrium";
const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL server programs are, and whom they must run as.
#[derive(Debug, Clone)]
pub struct ServerBinaries {
    bin_dir: PathBuf,
    /// PostgreSQL refuses to run as root: as root we run it as `postgres`.
    run_as: Option<(Uid, Gid)>,
}

impl ServerBinaries {
    /// Finds `initdb` and `pg_ctl`: in `ATRIUM_PG_BINDIR` if set, else on
    /// `PATH`, then `pg_config --bindir`, then the newest
    /// `/usr/lib/postgresql/*/bin`.
    pub fn locate() -> anyhow::Result<Self> {
        let bin_dir = match std::env::var_os("ATRIUM_PG_BINDIR").filter(|d| !d.is_empty()) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if !has_server_tools(&dir) {
                    bail!(
                        "ATRIUM_PG_BINDIR is {}, which holds no initdb and pg_ctl: point it at \
                         PostgreSQL's bin directory (pg_config --bindir) or set \
                         ATRIUM_DATABASE_URL to a running server",
                        dir.display()
                    );
                }
                dir
            }
            None => locate_bin_dir().ok_or_else(|| {
                anyhow::anyhow!(
                    "no PostgreSQL server programs (initdb, pg_ctl) found on PATH, via pg_config \
                     or under /usr/lib/postgresql/*/bin: install PostgreSQL 15 or newer \
                     (Debian/Ubuntu: apt-get install postgresql), set ATRIUM_PG_BINDIR to its bin \
                     directory, or set ATRIUM_DATABASE_URL to a running server"
                )
            })?,
        };
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")?.ok_or_else(|| {
                anyhow::anyhow!(
                    "running as root, and PostgreSQL refuses to run as root, but there is no \
                     `postgres` system user to run it as: create one (useradd --system postgres) \
                     or set ATRIUM_DATABASE_URL"
                )
            })?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        Ok(Self { bin_dir, run_as })
    }

    fn command(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(cwd)
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// A new cluster in `pgdata`: the superuser trusted on the socket, UTF-8,
    /// no locale.
    fn initdb(&self, cwd: &Path, pgdata: &Path, extra: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command("initdb", cwd)
            .args(["--username", SUPERUSER, "--auth", "trust"])
            .args(["--encoding", "UTF8", "--no-locale"])
            .args(extra)
            .arg("--pgdata")
            .arg(pgdata)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn give_to_server_user(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", path.display()))?;
        }
        Ok(())
    }

    /// Whether the server user can reach `path` (every ancestor searchable).
    fn can_traverse(&self, path: &Path) -> bool {
        let Some((uid, gid)) = self.run_as else {
            return true;
        };
        path.ancestors().skip(1).all(|dir| match fs::metadata(dir) {
            Ok(meta) => {
                let mode = meta.mode();
                (meta.uid() == uid.as_raw() && mode & 0o100 != 0)
                    || (meta.gid() == gid.as_raw() && mode & 0o010 != 0)
                    || mode & 0o001 != 0
            }
            Err(_) => true, // not created yet: we create it searchable
        })
    }
}

/// A PostgreSQL client program (`pg_dump`, `pg_restore`) of the same
/// installation the embedded default would use: `ATRIUM_PG_BINDIR`, else
/// the directory found on `PATH`, via `pg_config` or under
/// `/usr/lib/postgresql` (the newest, which can dump any older server).
pub fn client_program(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("ATRIUM_PG_BINDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(locate_bin_dir);
    match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => bail!(
            "no {name} found (in ATRIUM_PG_BINDIR, on PATH, via pg_config or under \
             /usr/lib/postgresql/*/bin): install PostgreSQL's client programs or set \
             ATRIUM_PG_BINDIR to their directory"
        ),
    }
}

fn has_server_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

fn locate_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server_tools(&dir) {
                // Debian links /usr/local/bin/initdb to the real directory;
                // resolve it so sibling programs (postgres) are found too.
                let real = fs::canonicalize(dir.join("initdb")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server_tools(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// A private cluster in use by this process. Dropping it stops the server
/// if no other `atrium` process is still using it.
pub struct EmbeddedCluster {
    binaries: ServerBinaries,
    data_dir: PathBuf,
    cluster_dir: PathBuf,
    users_lock: Option<File>,
}

impl EmbeddedCluster {
    /// Starts (or joins) the cluster for `data_dir`, creating it on first use.
    /// Blocking: call from a blocking thread.
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let binaries = ServerBinaries::locate()?;
        fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let data_dir = fs::canonicalize(data_dir)?;
        let cluster_dir = cluster_dir_for(&binaries, &data_dir)?;

        let start_lock = lock_file(&data_dir.join("cluster.lock"))?;
        start_lock.lock().context("locking cluster.lock")?;
        let users_lock = lock_file(&data_dir.join("cluster.users"))?;
        users_lock.lock_shared().context("locking cluster.users")?;

        let cluster = Self {
            binaries,
            data_dir,
            cluster_dir,
            users_lock: Some(users_lock),
        };
        cluster.init_if_new()?;
        if !cluster.is_running() {
            cluster.pg_ctl_start()?;
        }
        drop(start_lock);
        Ok(cluster)
    }

    /// The connection URL of the Atrium database in this cluster (over the
    /// Unix socket; it listens on no TCP port).
    pub fn database_url(&self) -> String {
        socket_url(&self.socket_dir(), EMBEDDED_DATABASE)
    }

    /// URL of the `postgres` database, for creating the Atrium database.
    pub fn postgres_database_url(&self) -> String {
        socket_url(&self.socket_dir(), "postgres")
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    fn pgdata(&self) -> PathBuf {
        self.cluster_dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.cluster_dir.clone()
    }

    fn init_if_new(&self) -> anyhow::Result<()> {
        if self.pgdata().join("PG_VERSION").is_file() {
            return Ok(());
        }
        fs::create_dir_all(&self.cluster_dir)?;
        fs::set_permissions(&self.cluster_dir, fs::Permissions::from_mode(0o700))?;
        self.binaries.give_to_server_user(&self.cluster_dir)?;
        let _ = fs::remove_dir_all(self.pgdata()); // a half-made earlier attempt
        let made = self.binaries.initdb(&self.cluster_dir, &self.pgdata(), &[]);
        if made.is_err() {
            let _ = fs::remove_dir_all(self.pgdata());
        }
        made
    }

    fn is_running(&self) -> bool {
        self.binaries
            .command("pg_ctl", &self.cluster_dir)
            .arg("status")
            .arg("--pgdata")
            .arg(self.pgdata())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=300 \
             -c max_files_per_process={}",
            self.socket_dir().display(),
            open_files_for_postgres(),
        );
        let out = self
            .binaries
            .command("pg_ctl", &self.cluster_dir)
            .args(["start", "--wait", "--timeout", "60", "--pgdata"])
            .arg(self.pgdata())
            .arg("--log")
            .arg(self.cluster_dir.join("server.log"))
            .args(["-o", &options])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "the embedded PostgreSQL did not start ({}); see {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.cluster_dir.join("server.log").display()
            );
        }
        Ok(())
    }

    /// Leaves the cluster; stops it if no other process uses it.
    pub fn leave(mut self) -> anyhow::Result<()> {
        self.leave_inner()
    }

    fn leave_inner(&mut self) -> anyhow::Result<()> {
        let Some(users_lock) = self.users_lock.take() else {
            return Ok(());
        };
        let start_lock = lock_file(&self.data_dir.join("cluster.lock"))?;
        start_lock.lock()?;
        drop(users_lock);
        let users = lock_file(&self.data_dir.join("cluster.users"))?;
        if users.try_lock().is_ok() && self.is_running() {
            let out = self
                .binaries
                .command("pg_ctl", &self.cluster_dir)
                .args(["stop", "--wait", "--mode", "fast", "--pgdata"])
                .arg(self.pgdata())
                .output()?;
            if !out.status.success() {
                bail!(
                    "stopping the embedded PostgreSQL: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        if let Err(e) = self.leave_inner() {
            eprintln!("atrium: {e:#}");
        }
    }
}

/// The cluster lives in `<data-dir>/postgres` unless the server user cannot
/// reach that path (a data directory under `/root`, say); then it goes under
/// `/var/lib/atrium/`, and a note in the data directory says where.
fn cluster_dir_for(binaries: &ServerBinaries, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let inside = data_dir.join("postgres");
    let pointer = data_dir.join("cluster-location");
    if let Ok(recorded) = fs::read_to_string(&pointer) {
        return Ok(PathBuf::from(recorded.trim()));
    }
    // Unix socket paths are limited to 107 bytes.
    let socket_len = inside.join(".s.PGSQL.5432").as_os_str().len();
    if binaries.can_traverse(&inside) && socket_len < 100 {
        return Ok(inside);
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(
        data_dir.as_os_str().as_encoded_bytes(),
    ));
    let base = Path::new("/var/lib/atrium");
    fs::create_dir_all(base)?;
    fs::set_permissions(base, fs::Permissions::from_mode(0o755))?;
    let outside = base.join(&digest[..16]);
    fs::write(&pointer, format!("{}\n", outside.display()))?;
    eprintln!(
        "atrium: the postgres user cannot reach {}, so the embedded cluster lives in {}",
        data_dir.display(),
        outside.display()
    );
    Ok(outside)
}

fn lock_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn socket_url(socket_dir: &Path, database: &str) -> String {
    format!(
        "postgresql://{SUPERUSER}@/{database}?host={}",
        socket_dir.display()
    )
}

/// A cluster for one test process: created in a temporary directory, tuned
/// for speed (no fsync), and stopped by the kernel when the process exits —
/// the server gets SIGINT (fast shutdown) when its parent thread dies, and
/// that thread lives as long as the process.
pub struct ThrowawayCluster {
    pub dir: PathBuf,
    binaries: ServerBinaries,
    /// Set when the cluster also listens on TCP with TLS.
    tls_port: Option<u16>,
}

impl ThrowawayCluster {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// A cluster that also listens on `127.0.0.1` with TLS, presenting
    /// `cert_pem` (and its `key_pem`); for tests of `sslmode`.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    /// The TCP port of a cluster started with TLS.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    fn start_with(tls: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let binaries = ServerBinaries::locate()?;
        remove_stale_throwaways();
        let dir = std::env::temp_dir().join(format!(
            "atrium-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        binaries.give_to_server_user(&dir)?;
        let pgdata = dir.join("data");
        // A throwaway cluster is never kept: no need to wait for the disk.
        binaries.initdb(&dir, &pgdata, &["--no-sync"])?;
        let tls_port = match tls {
            None => None,
            Some((cert, key)) => {
                for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                    let path = pgdata.join(name);
                    fs::write(&path, pem)?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
                    binaries.give_to_server_user(&path)?;
                }
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                Some(port)
            }
        };
        run_postmaster(binaries.clone(), &dir, tls_port)?;
        Ok(Self {
            dir,
            binaries,
            tls_port,
        })
    }

    /// Stops the server (fast shutdown: sessions are cut) and starts it
    /// again on the same data: for tests of what clients see when the
    /// database restarts.
    pub fn restart(&self, down_for: std::time::Duration) -> anyhow::Result<()> {
        self.stop()?;
        std::thread::sleep(down_for);
        self.start_again()
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&self) -> anyhow::Result<()> {
        let out = self
            .binaries
            .command("pg_ctl", &self.dir)
            .args(["stop", "--mode", "fast", "--wait", "--pgdata"])
            .arg(self.pgdata())
            .output()
            .context("running pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Starts the server again after [`ThrowawayCluster::stop`].
    pub fn start_again(&self) -> anyhow::Result<()> {
        run_postmaster(self.binaries.clone(), &self.dir, self.tls_port)
    }
    /// URL of the cluster's `postgres` database.
    pub fn postgres_database_url(&self) -> String {
        socket_url(&self.dir, "postgres")
    }

    pub fn pgdata(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts Debian's PgBouncer in transaction mode in front of this
    /// cluster, on a free port of 127.0.0.1, with `server_sessions` server
    /// sessions per database (fewer than the clients, so that clients
    /// really share them). Returns the port; the process ends with the
    /// test process. Its admin console is database `pgbouncer`.
    pub fn start_pgbouncer(&self, server_sessions: usize) -> anyhow::Result<u16> {
        let program = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                anyhow::anyhow!("no pgbouncer: apt-get install pgbouncer (the tests need it)")
            })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = &self.dir;
        let userlist = dir.join("pgbouncer-users.txt");
        fs::write(&userlist, format!("\"{SUPERUSER}\" \"\"\n"))?;
        let ini = dir.join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]\n* = host={dir} port=5432\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
                 admin_users = {SUPERUSER}\npool_mode = transaction\n\
                 default_pool_size = {server_sessions}\nmax_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {dir}/pgbouncer.log\n",
                dir = dir.display(),
                users = userlist.display(),
            ),
        )?;
        for path in [&userlist, &ini] {
            self.binaries.give_to_server_user(path)?;
        }
        let mut cmd = Command::new(program);
        cmd.arg(&ini).current_dir(dir).stdin(Stdio::null());
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = self.binaries.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // SAFETY: as for postgres above: async-signal-safe, after the fork.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().context("starting pgbouncer")?;
        // Reaped by a thread that lives as long as the process.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "pgbouncer did not start listening (see {})",
                    dir.join("pgbouncer.log").display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(port)
    }
}

/// Starts postgres from a thread that lives as long as the process, so the
/// server gets SIGINT when the process ends; returns once it accepts
/// connections.
fn run_postmaster(
    binaries: ServerBinaries,
    dir: &Path,
    tls_port: Option<u16>,
) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let postgres_dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("throwaway-postgres".into())
        .spawn(
            move || match spawn_postgres(&binaries, &postgres_dir, tls_port) {
                Ok(child) => {
                    let _ = tx.send(Ok(()));
                    // Keep the parent thread alive for the process's life.
                    let _child: Child = child;
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
        )?;
    rx.recv()?
}

fn spawn_postgres(
    binaries: &ServerBinaries,
    dir: &Path,
    tls_port: Option<u16>,
) -> anyhow::Result<Child> {
    let log = File::create(dir.join("server.log"))?;
    let mut cmd = binaries.command("postgres", dir);
    cmd.arg("-D").arg(dir.join("data")).arg("-k").arg(dir);
    match tls_port {
        None => cmd.args(["-c", "listen_addresses="]),
        Some(port) => cmd
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={port}"))
            .args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt"])
            .args(["-c", "ssl_key_file=server.key"]),
    };
    cmd.args(["-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=300"])
        // Tenants move between clusters by logical replication.
        .args(["-c", "wal_level=logical"])
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork
    // and exec, after the uid switch, so the setting survives into postgres.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGINT)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().context("starting postgres")
}

/// Throwaway clusters of test processes that have ended.
fn remove_stale_throwaways() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("atrium-test-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// How many files each PostgreSQL backend may keep open, raising this
/// process's soft limit (which the cluster inherits) to its hard limit.
/// A backend opens a file per table and index it touches; past its limit
/// it closes and reopens them, and a lane serving a few hundred tenants
/// touches some 20,000 (docs/operations.md, "PostgreSQL for a large
/// fleet"). PostgreSQL's default of 1,000 makes every request of a
/// large fleet reopen files.
fn open_files_for_postgres() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANTED: u64 = 65_536;
    const DEFAULT: u64 = 1_000;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return DEFAULT;
    };
    let raised = hard.min(WANTED).max(soft);
    if raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_err() {
        return soft.max(DEFAULT);
    }
    raised.max(DEFAULT)
}
