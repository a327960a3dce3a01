//! A real `strata serve` process on a free loopback port, owned by one test.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kurrentdb::{Client, ClientSettings};
use tempfile::TempDir;

/// The `strata` binary of this test build.
const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// The `strata` binary servers run: `STRATA_TEST_BIN` (say, a release build) when set, else
/// this test build's.
pub fn strata_bin() -> PathBuf {
    match std::env::var_os("STRATA_TEST_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(STRATA),
    }
}

/// What servers run and where they keep their events, for a test's printed figures.
pub fn server_kind() -> String {
    let store = if postgres_requested() {
        "PostgreSQL"
    } else {
        "the embedded engine"
    };
    format!("{} on {store}", strata_bin().display())
}

/// The line prefix `strata serve` prints on stdout once it accepts connections.
const READY_PREFIX: &str = "strata serve: ready on ";

/// How long a server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long any single client call may take before the test calls it a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The test database of PostgreSQL runs (`STRATA_TEST_POSTGRES_URL`).
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn postgres_url() -> String {
    std::env::var("STRATA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// True when `STRATA_TEST_STORE=postgres`: servers keep their events in PostgreSQL.
pub fn postgres_requested() -> bool {
    std::env::var("STRATA_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// A new schema of the test database; dropped (with everything in it) when this is.
pub struct PostgresSchema {
    pub name: String,
}

impl PostgresSchema {
    pub fn new() -> Self {
        Self {
            name: format!("strata_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for PostgresSchema {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // May be dropped inside a test's runtime, which cannot be blocked on: use a thread.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            if let Err(error) =
                runtime.block_on(strata_postgres::drop_schema(&postgres_url(), &name))
            {
                eprintln!("cannot drop test schema {name}: {error}");
            }
        });
        let _ = cleanup.join();
    }
}

/// A running server with its own data directory (or PostgreSQL schema); killed and reaped
/// on drop.
pub struct Server {
    child: Child,
    port: u16,
    stderr_path: PathBuf,
    _temp: TempDir,
    /// How the server was told where its store is: started again the same way.
    store: Vec<String>,
    /// Dropped after the child is killed (fields drop in order after `drop`).
    _schema: Option<PostgresSchema>,
}

impl Server {
    /// Starts `strata serve --port 0 --insecure` on a fresh data directory and waits until it
    /// says it is ready, failing the test with its stderr if it exits or stays silent.
    pub fn start() -> Server {
        Server::start_with(&["--insecure"])
    }

    /// Like [`Server::start`], with `extra` arguments instead of `--insecure`. With
    /// `STRATA_TEST_STORE=postgres` the server uses a fresh PostgreSQL schema instead.
    pub fn start_with(extra: &[&str]) -> Server {
        if postgres_requested() {
            let schema = PostgresSchema::new();
            let mut server = Server::spawn(&store_args(&schema.name), extra);
            server._schema = Some(schema);
            return server;
        }
        Server::spawn(&[], extra)
    }

    /// `strata serve --insecure` on `schema` of the test database, which other servers
    /// may share; the caller owns the schema.
    pub fn start_on_postgres(schema: &PostgresSchema) -> Server {
        Server::spawn(&store_args(&schema.name), &["--insecure"])
    }

    /// Starts `strata serve` with `store` arguments (a data directory when empty).
    fn spawn(store: &[String], extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let (child, lines) = spawn(&temp, store, extra);
        let mut server = Server {
            child,
            port: 0,
            stderr_path: temp.path().join("server.stderr"),
            _temp: temp,
            store: store.to_vec(),
            _schema: None,
        };
        server.await_ready(&lines);
        server
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and starts it again, insecure,
    /// on the same store; the port changes.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.start_again();
    }

    /// Stops the server with SIGTERM (a clean stop), waits for it to exit and starts it
    /// again, insecure, on the same store; the port changes.
    #[allow(
        dead_code,
        reason = "used by some of the test crates that share this module"
    )]
    pub fn stop_and_restart(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(stopped.success(), "SIGTERM delivered");
        let status = self.child.wait().expect("server exits");
        assert!(
            status.success(),
            "a clean stop exits 0: {status:?}\n{}",
            self.stderr()
        );
        self.start_again();
    }

    fn start_again(&mut self) {
        let (child, lines) = spawn(&self._temp, &self.store, &["--insecure"]);
        self.child = child;
        self.await_ready(&lines);
    }

    /// Kills this server (as a crash would) and starts a new one on the same store, on a new
    /// free port.
    #[allow(
        dead_code,
        reason = "used by some of the test crates that share this module"
    )]
    pub fn restart(mut self) -> Server {
        self.kill_and_restart();
        self
    }

    /// The connection string of this server, in plain text.
    #[allow(
        dead_code,
        reason = "used by some of the test crates that share this module"
    )]
    pub fn url(&self) -> String {
        format!("kdb://127.0.0.1:{}?tls=false", self.port)
    }

    /// The data directory the server holds.
    #[allow(
        dead_code,
        reason = "used by some of the test crates that share this module"
    )]
    pub fn data_dir(&self) -> PathBuf {
        self._temp.path().join("data")
    }

    fn await_ready(&mut self, lines: &mpsc::Receiver<String>) {
        let mut seen = Vec::new();
        loop {
            match lines.recv_timeout(READY_TIMEOUT) {
                Ok(line) => match parse_ready_port(&line) {
                    Some(port) => {
                        self.port = port;
                        return;
                    }
                    None => seen.push(line),
                },
                Err(error) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "strata serve did not print its ready line ({error:?}; exit status \
                         {status:?})\nstdout so far: {seen:?}\nstderr:\n{}",
                        self.stderr()
                    );
                }
            }
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (at most `READY_TIMEOUT`) for the server to exit on its own, as after an
    /// operator's Shutdown; its exit status.
    #[allow(
        dead_code,
        reason = "used by some of the test crates that share this module"
    )]
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the server can be waited for") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The server's process id (to read its `/proc/PID/status`).
    #[allow(
        dead_code,
        reason = "used by some of the test crates that share this module"
    )]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port the server listens on (on 127.0.0.1 and ::1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server wrote to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A client over `esdb://127.0.0.1:PORT?tls=false`. Needs a tokio runtime.
    pub fn client(&self) -> Client {
        self.client_with_scheme("esdb")
    }

    /// A client for the given connection-string scheme (`esdb`, `kurrentdb`, `kdb`).
    pub fn client_with_scheme(&self, scheme: &str) -> Client {
        let settings: ClientSettings = format!("{scheme}://127.0.0.1:{}?tls=false", self.port)
            .parse()
            .expect("connection string parses");
        Client::new(settings).expect("client builds")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `strata serve` with `store` arguments (`temp`'s data directory when empty),
/// appending its stderr to a file in `temp`; returns the child and its stdout lines.
fn spawn(temp: &TempDir, store: &[String], extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let data_dir = temp.path().join("data");
    let stderr_path = temp.path().join("server.stderr");
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(&stderr_path)
        .expect("stderr file");
    let mut command = Command::new(strata_bin());
    command.arg("serve").args(["--port", "0"]);
    if store.is_empty() {
        // Small segments: every server zero-fills two, and a run starts dozens.
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--segment-size-mib", "32"]);
    } else {
        command.args(store);
    }
    let mut child = command
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("strata serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_sender, lines) = mpsc::channel();
    // Keeps draining stdout after the ready line so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

fn store_args(schema: &str) -> Vec<String> {
    vec![
        "--store".to_owned(),
        postgres_url(),
        "--store-schema".to_owned(),
        schema.to_owned(),
    ]
}

/// The port of the first address in `strata serve: ready on 127.0.0.1:PORT, [::1]:PORT`.
fn parse_ready_port(line: &str) -> Option<u16> {
    let addresses = line.trim().strip_prefix(READY_PREFIX)?;
    let first = addresses.split(',').next()?.trim();
    let (_, port) = first.rsplit_once(':')?;
    port.parse().ok()
}

/// Awaits `future`, failing the test if it has not finished within a generous bound: a guard
/// against hangs, not a timing assertion.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {CALL_TIMEOUT:?} (the server hangs?)"),
    }
}

#[test]
fn ready_line_port_parses() {
    assert_eq!(
        parse_ready_port("strata serve: ready on 127.0.0.1:40123, [::1]:40123"),
        Some(40123)
    );
    assert_eq!(
        parse_ready_port("strata serve: ready on 127.0.0.1:7"),
        Some(7)
    );
    assert_eq!(parse_ready_port("listening"), None);
}
