//! A PostgreSQL server of our own, in a temporary directory on a free loopback port, that a
//! run may stop and start again at will (the shared test server must not be touched: other
//! tests use it). Debian's binaries (`initdb`, `pg_ctl` under `/usr/lib/postgresql/*/bin`,
//! or `STRATA_PG_BIN`); as root they run as the `postgres` user, which owns the directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

#[derive(Debug, thiserror::Error)]
#[error("private PostgreSQL: {0}")]
pub struct PrivatePostgresError(String);

/// A running private PostgreSQL; stopped (immediately) and removed on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    as_postgres: bool,
}

fn error(what: impl Into<String>) -> PrivatePostgresError {
    PrivatePostgresError(what.into())
}

/// The newest `/usr/lib/postgresql/N/bin` with `initdb`, unless `STRATA_PG_BIN` names one.
fn bin_dir() -> Result<PathBuf, PrivatePostgresError> {
    if let Ok(dir) = std::env::var("STRATA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| error(format!("no /usr/lib/postgresql ({e}); set STRATA_PG_BIN")))?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| error("no initdb under /usr/lib/postgresql/*/bin; set STRATA_PG_BIN"))
}

fn is_root() -> bool {
    // The owner of our own /proc entry is our effective user.
    std::fs::metadata("/proc/self").is_ok_and(|meta| {
        use std::os::unix::fs::MetadataExt;
        meta.uid() == 0
    })
}

fn free_port() -> Result<u16, PrivatePostgresError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| error(format!("no free port: {e}")))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| error(format!("no free port: {e}")))
}

impl PrivatePostgres {
    /// `initdb` (trust authentication, user `postgres`) and start, waiting until it accepts
    /// connections.
    ///
    /// # Errors
    /// When the binaries are missing or a step fails (its output is in the message).
    pub fn start() -> Result<Self, PrivatePostgresError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("strata-pg.")
            .tempdir()
            .map_err(|e| error(format!("temp dir: {e}")))?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()))?;
        }
        let server = PrivatePostgres {
            bin,
            dir,
            port: free_port()?,
            as_postgres,
        };
        let data = server.data_dir();
        server.pg("initdb", |command| {
            command
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data);
        })?;
        server.start_again()?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's own log (kept in its directory while this lives).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs `name` from the binaries, as `postgres` when we are root.
    fn pg(
        &self,
        name: &str,
        arguments: impl FnOnce(&mut Command),
    ) -> Result<Output, PrivatePostgresError> {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.current_dir(self.dir.path());
        arguments(&mut command);
        run(&mut command)
    }

    /// Starts the stopped server (on the same port), waiting until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub fn start_again(&self) -> Result<(), PrivatePostgresError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (self.data_dir(), self.log());
        self.pg("pg_ctl", |command| {
            command
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &options]);
        })
        .map(drop)
    }

    /// Stops the server at once (`-m immediate`: every session cut, as in a crash; recovery
    /// replays the WAL on the next start).
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<(), PrivatePostgresError> {
        let data = self.data_dir();
        self.pg("pg_ctl", |command| {
            command
                .args(["stop", "-w", "-m", "immediate", "-D"])
                .arg(&data);
        })
        .map(drop)
    }

    /// Stops the server, waits `outage`, and starts it again.
    ///
    /// # Errors
    /// When a step fails.
    pub async fn restart(&self, outage: Duration) -> Result<(), PrivatePostgresError> {
        tokio::task::block_in_place(|| self.stop())?;
        tokio::time::sleep(outage).await;
        tokio::task::block_in_place(|| self.start_again())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run(command: &mut Command) -> Result<Output, PrivatePostgresError> {
    let output = command
        .output()
        .map_err(|e| error(format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        return Ok(output);
    }
    Err(error(format!(
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}
