use std::path::Path;
use std::process::{Command, Output};

/// Runs `atrium` against `database_url` in an empty working directory.
pub fn atrium(database_url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    command(dir.path())
        .env("ATRIUM_DATABASE_URL", database_url)
        .args(args)
        .output()
        .expect("running atrium")
}

/// An `atrium` command with a clean environment, run in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrium"));
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("ATRIUM_DATABASE_URL")
        .env_remove("ATRIUM_ADMIN_DATABASE_URL")
        .env_remove("ATRIUM_DATA_DIR")
        .env_remove("ATRIUM_CONFIG")
        .env_remove("ATRIUM_ADMIN_PASSWORD");
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command failed with `code` and one line on stderr
/// containing `needle`.
#[track_caller]
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
}

#[track_caller]
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", stdout(out)))
}
