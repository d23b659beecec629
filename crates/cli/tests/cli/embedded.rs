use std::path::Path;
use std::process::Output;

use crate::helpers::{Serving, command, json, stderr};

fn atrium_in(data_dir: &Path, args: &[&str]) -> Output {
    command(data_dir.parent().unwrap())
        .env("ATRIUM_DATA_DIR", data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn postmaster_running(data_dir: &Path) -> bool {
    data_dir.join("postgres/data/postmaster.pid").exists()
}

#[test]
fn the_embedded_default_starts_from_nothing_keeps_its_data_and_stops_after_use() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let out = atrium_in(
        &data_dir,
        &[
            "tenant",
            "create",
            "--name",
            "Acme",
            "--subdomain",
            "acme",
            "--admin-email",
            "a@acme.com",
            "--admin-password",
            "a-long-password",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !postmaster_running(&data_dir),
        "the cluster stops when the command that started it ends"
    );

    // A second process starts the same cluster again and finds the tenant.
    let list = json(&atrium_in(&data_dir, &["tenant", "list", "--json"]));
    assert_eq!(list[0]["subdomain"], "acme");

    // Each backend may keep as many files open as the limits allow, not
    // PostgreSQL's default 1,000: a lane of a large fleet touches tens of
    // thousands of tables and indexes.
    let options = std::fs::read_to_string(data_dir.join("postgres/data/postmaster.opts")).unwrap();
    let files: u64 = options
        .split("max_files_per_process=")
        .nth(1)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no max_files_per_process in {options}"))
        .parse()
        .unwrap();
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert_eq!(files, hard.min(65_536).max(soft).max(1_000));

    if nix::unistd::Uid::effective().is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(data_dir.join("postgres/data"))
            .unwrap()
            .uid();
        assert_ne!(
            owner, 0,
            "as root, the cluster belongs to the postgres user"
        );
    }
}

#[test]
fn without_server_programs_it_says_what_to_install() {
    let root = tempfile::tempdir().unwrap();
    let out = command(root.path())
        .env("ATRIUM_DATA_DIR", root.path().join("other"))
        .env("ATRIUM_PG_BINDIR", root.path())
        .args(["tenant", "list"])
        .output()
        .unwrap();
    crate::helpers::assert_fails(&out, 1, "ATRIUM_PG_BINDIR");
}

#[test]
fn commands_run_while_serve_is_up_share_its_cluster() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let server = Serving::start(
        command(root.path())
            .env("ATRIUM_DATA_DIR", &data_dir)
            .env("ATRIUM_CONNECTION_MAX_TENANTS", "3")
            .args(["serve", "--bind", "127.0.0.1:0"]),
    );
    assert!(
        server.announced.contains("http://127.0.0.1:"),
        "{}",
        server.announced
    );

    let listed = atrium_in(&data_dir, &["tenant", "list", "--json"]);
    assert_eq!(json(&listed), serde_json::json!([]));
    assert!(
        postmaster_running(&data_dir),
        "a command leaves serve's cluster running"
    );

    server.stop();
    assert!(
        !postmaster_running(&data_dir),
        "serve stops the cluster it started"
    );
}

#[test]
fn serve_refuses_a_session_bound_of_zero_tenants() {
    let root = tempfile::tempdir().unwrap();
    let out = command(root.path())
        .env("ATRIUM_DATA_DIR", root.path().join("data"))
        .args(["serve", "--connection-max-tenants", "0"])
        .output()
        .unwrap();
    crate::helpers::assert_fails(&out, 2, "connection-max-tenants");
    assert!(
        !root.path().join("data").exists(),
        "nothing was started or written"
    );
}

#[test]
fn serve_demo_creates_a_varied_demo_tenant_once() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let run = |expect: &str| {
        let mut server = Serving::start(
            command(root.path())
                .env("ATRIUM_DATA_DIR", &data_dir)
                .args(["serve", "--bind", "127.0.0.1:0", "--demo"]),
        );
        let line = server.wait_for("demo tenant");
        assert!(
            line.contains(expect) && line.contains("admin@demo.example"),
            "{line}"
        );
        let shown = json(&atrium_in(&data_dir, &["tenant", "show", "demo", "--json"]));
        // Logs to a pipe: no colour codes, and no PostgreSQL NOTICEs from
        // idempotent DDL at every start.
        let logs = server.stop().join("\n");
        assert!(!logs.contains('\u{1b}'), "ANSI codes in {logs}");
        // The application's login may do what serving needs (its row
        // among the live servers, its tenant figures).
        assert!(!logs.contains("permission denied"), "{logs}");
        assert!(!logs.contains("NOTICE"), "{logs}");
        shown
    };
    let first = run("created");
    assert!(first["company_count"].as_i64().unwrap() >= 24, "{first}");
    assert!(first["contact_count"].as_i64().unwrap() >= 200, "{first}");
    assert!(first["deal_count"].as_i64().unwrap() >= 60, "{first}");
    assert!(first["activity_count"].as_i64().unwrap() >= 100, "{first}");
    let second = run("ready");
    assert_eq!(second["contact_count"], first["contact_count"], "made once");
}

#[test]
fn serve_demo_on_a_taken_port_fails_before_writing_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let out = command(root.path())
        .env("ATRIUM_DATA_DIR", &data_dir)
        .args(["serve", "--bind", &address, "--demo"])
        .output()
        .unwrap();
    crate::helpers::assert_fails(&out, 1, "listening on");
    assert!(
        !data_dir.exists(),
        "no cluster was made and no demo tenant written"
    );
}

#[tokio::test]
async fn serve_refuses_a_privileged_database_login_unless_told_it_is_for_development() {
    let t = atrium_testkit::migrated_database().await;
    let root = tempfile::tempdir().unwrap();
    // The test database's login is a superuser.
    let out = command(root.path())
        .env("ATRIUM_DATABASE_URL", &t.url)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    crate::helpers::assert_fails(&out, 1, "is a superuser");
    assert!(stderr(&out).contains("--unsafe-allow-privileged-login"));

    Serving::start(
        command(root.path())
            .env("ATRIUM_DATABASE_URL", &t.url)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--unsafe-allow-privileged-login",
            ]),
    )
    .stop();
}
