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

/// Creates tenant `subdomain`, its admin `boss@<subdomain>.com` with the
/// password `a-long-password`.
pub fn create_tenant(database_url: &str, subdomain: &str) {
    let email = format!("boss@{subdomain}.com");
    let created = atrium(
        database_url,
        &[
            "tenant",
            "create",
            "--name",
            "Acme Inc",
            "--subdomain",
            subdomain,
            "--admin-email",
            &email,
            "--admin-password",
            "a-long-password",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
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

/// A running `atrium serve`, its stderr read line by line in the
/// background.
pub struct Serving {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// The line that announced the address.
    pub announced: String,
    pub port: u16,
}

/// A test that fails half-way leaves no server behind (it would hold the
/// test's output pipe open, and the test run with it).
impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serving {
    /// Starts `serve` from `cmd` (its arguments given) and waits until it
    /// announces its address.
    pub fn start(cmd: &mut Command) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting atrium serve");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut serving = Self {
            child,
            lines,
            announced: String::new(),
            port: 0,
        };
        serving.announced = serving.wait_for("serving on");
        serving.port = serving
            .announced
            .split("://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no address in {:?}", serving.announced));
        serving
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of stderr that contains `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("serve never said {needle:?}: {e}"),
            }
        }
    }

    /// Stops the server with SIGTERM, asserts it ended well, and returns
    /// what it printed after the lines already read.
    pub fn stop(mut self) -> Vec<String> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(self.child.wait().unwrap().success(), "serve ends cleanly");
        self.lines.iter().collect()
    }
}
