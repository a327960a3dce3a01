//! A private PostgreSQL server for tests that stop, restart or reconfigure it (never the
//! shared one other tests use): `initdb` into a temporary directory, `postgres` on a free
//! loopback port, stopped and removed when the guard goes, also when the test fails.
//!
//! The server binaries are found in `STRATA_TEST_POSTGRES_BINDIR`, else `pg_config
//! --bindir`, else the newest `/usr/lib/postgresql/*/bin`; missing binaries fail the
//! test with a message saying how to install them. As root, the server runs as the
//! `postgres` user (PostgreSQL refuses to run as root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTALL_HINT: &str = "install the PostgreSQL server (scripts/ensure-postgres.sh does) or \
                            set STRATA_TEST_POSTGRES_BINDIR to the directory holding initdb \
                            and pg_ctl";

/// A running private server; stopped and deleted on drop.
pub struct PrivateCluster {
    bin: PathBuf,
    /// Runs the server binaries as this user (when the tests run as root).
    run_as: Option<String>,
    directory: tempfile::TempDir,
    pub port: u16,
}

impl PrivateCluster {
    /// Creates and starts a fresh server.
    pub fn start() -> Self {
        let bin = server_binaries();
        let run_as = is_root().then(|| "postgres".to_owned());
        let directory = tempfile::Builder::new()
            .prefix("strata-pg-")
            .tempdir()
            .expect("a temporary directory");
        if let Some(user) = &run_as {
            let owner = format!("{user}:");
            run(
                Command::new("chown").arg(&owner).arg(directory.path()),
                "chown",
            );
        }
        let port = free_port();
        let cluster = Self {
            bin,
            run_as,
            directory,
            port,
        };
        let data = cluster.data_directory();
        cluster.run_server_binary(
            "initdb",
            &[
                "-D",
                path_text(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.start_server();
        cluster
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again).
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=40 \
             -c shared_buffers=16MB",
            self.port,
            path_text(self.directory.path()),
        );
        let log = self.directory.path().join("server.log");
        self.run_server_binary(
            "pg_ctl",
            &[
                "-D",
                path_text(&self.data_directory()),
                "-l",
                path_text(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash would (committed work survives in the WAL).
    pub fn stop_immediately(&self) {
        self.run_server_binary(
            "pg_ctl",
            &[
                "-D",
                path_text(&self.data_directory()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn data_directory(&self) -> PathBuf {
        self.directory.path().join("data")
    }

    fn command(&self, binary: &str) -> Command {
        let program = self.bin.join(binary);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run_server_binary(&self, binary: &str, arguments: &[&str]) {
        let output = self
            .command(binary)
            .args(arguments)
            .current_dir(self.directory.path())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {binary}: {error}; {INSTALL_HINT}"));
        if !output.status.success() {
            let log = std::fs::read_to_string(self.directory.path().join("server.log"))
                .unwrap_or_default();
            panic!(
                "{binary} {arguments:?} failed: {}\nserver log:\n{log}",
                describe(&output)
            );
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data_directory();
        if data.join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", path_text(&data), "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn server_binaries() -> PathBuf {
    let has_server =
        |directory: &Path| directory.join("initdb").is_file() && directory.join("pg_ctl").is_file();
    if let Ok(directory) = std::env::var("STRATA_TEST_POSTGRES_BINDIR") {
        let directory = PathBuf::from(directory);
        assert!(
            has_server(&directory),
            "STRATA_TEST_POSTGRES_BINDIR={} holds no initdb and pg_ctl",
            directory.display()
        );
        return directory;
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let directory = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&directory) {
            return directory;
        }
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let directory = entry.path().join("bin");
            has_server(&directory).then_some((version, directory))
        })
        .collect();
    installed.sort();
    match installed.pop() {
        Some((_, directory)) => directory,
        None => panic!("PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}"),
    }
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
    listener.local_addr().expect("has an address").port()
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(&output)
    );
}

fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
