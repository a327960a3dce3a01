//! The kill soak: `strata serve` under the recorded workload, killed with SIGKILL at random
//! moments and started again on the same store, with `strata verify` on the stopped store
//! and the history checked after every restart: what changed since the previous check, and
//! now and then (and at the end) all of it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::checker::{Checked, Report, Violation, check, check_since};
use crate::derived::{Derived, DerivedError, DerivedFigures};
use crate::history::History;
use crate::history::Seen;
use crate::workload::{Workload, WorkloadConfig, WorkloadError};

/// The line prefix `strata serve` prints on stdout once it accepts connections.
const READY_PREFIX: &str = "strata serve: ready on ";
/// How long a server may take to print its ready line (recovery included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server keeps its events.
#[derive(Clone, Debug)]
pub enum Store {
    /// The embedded engine in this directory (checked with `strata verify` after each kill).
    DataDir(PathBuf),
    /// PostgreSQL: this database and schema.
    Postgres { url: String, schema: String },
}

#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// The `strata` binary.
    pub strata: PathBuf,
    pub store: Store,
    /// Kills (each followed by a restart and a check).
    pub cycles: u32,
    /// Load runs for a random time up to this before each kill.
    pub load_ms_max: u64,
    pub workload: WorkloadConfig,
    /// The server's stderr is appended to this file.
    pub server_log: PathBuf,
    /// Every this many kills the whole final order is read and the whole history checked
    /// again (0: only after the last); the other cycles check what changed since the
    /// previous one (`check_since`). Both find the same violations; the whole check costs
    /// what the history has grown to.
    pub full_check_every: u32,
    /// A continuous projection on the workload's category, created before the first kill
    /// and checked after every restart (exactly once: its count and emitted stream).
    pub projection: bool,
    /// A connector publishing the workload's category to NATS JetStream at this URL,
    /// created before the first kill; what it published is checked after every restart,
    /// and at the end that every event got there (at least once, in order per stream).
    pub nats: Option<String>,
}

/// What a finished soak (or run) found.
#[derive(Clone, Debug)]
pub struct SoakOutcome {
    pub cycles: u32,
    pub verify_runs: u32,
    /// The check of the whole history after the last restart.
    pub report: Report,
    /// What the checks of the projection and the connector covered.
    pub derived: DerivedFigures,
    pub history: History,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoakError {
    #[error("strata serve did not start: {0}")]
    Start(String),
    #[error("strata verify found problems after kill {cycle}:\n{output}")]
    Verify { cycle: u32, output: String },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("the history breaks {} rule(s) after kill {cycle}; the first: {}", violations.len(), violations[0])]
    Violations {
        cycle: u32,
        violations: Vec<Violation>,
        history: Box<History>,
    },
    #[error(
        "the persistent group delivered nothing appended after fault {cycle} within {} ms",
        waited.as_millis()
    )]
    GroupStalled { cycle: u32, waited: Duration },
    #[error("after kill {cycle}, {error}")]
    Derived { cycle: u32, error: DerivedError },
}

/// A running `strata serve`.
pub struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    /// Starts `strata serve --insecure` on a free port and waits for its ready line.
    ///
    /// # Errors
    /// When it cannot be spawned, exits, or stays silent for a minute.
    pub async fn start(strata: &Path, store: &Store, log: &Path) -> Result<Self, SoakError> {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|error| SoakError::Start(format!("cannot open {}: {error}", log.display())))?;
        let mut command = Command::new(strata);
        command.args(["serve", "--insecure", "--port", "0"]);
        match store {
            Store::DataDir(dir) => {
                command
                    .arg("--data-dir")
                    .arg(dir)
                    .args(["--segment-size-mib", "32"]);
            }
            Store::Postgres { url, schema } => {
                command.args(["--store", url, "--store-schema", schema]);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| SoakError::Start(format!("{}: {error}", strata.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = ready_port(&line) {
                    return Some(port);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| SoakError::Start(format!("no ready line (stderr in {})", log.display())))?;
        // Keeps draining stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProcess { child, port })
    }

    pub fn url(&self) -> String {
        format!("kdb://127.0.0.1:{}?tls=false", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: no shutdown of any kind.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The port of the first address in `strata serve: ready on 127.0.0.1:PORT, [::1]:PORT`.
fn ready_port(line: &str) -> Option<u16> {
    let addresses = line.trim().strip_prefix(READY_PREFIX)?;
    let first = addresses.split(',').next()?.trim();
    let (_, port) = first.rsplit_once(':')?;
    port.parse().ok()
}

/// `strata verify --data-dir DIR` on a stopped store.
async fn verify(strata: &Path, dir: &Path, cycle: u32) -> Result<(), SoakError> {
    let output = Command::new(strata)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|error| SoakError::Verify {
            cycle,
            output: format!("cannot run {}: {error}", strata.display()),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(SoakError::Verify {
        cycle,
        output: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Where one soak cycle spent its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct CycleTimes {
    pub load: Duration,
    /// The kill, and the calls in flight giving up.
    pub kill: Duration,
    pub verify: Duration,
    pub restart: Duration,
    /// Reading the final order.
    pub read: Duration,
    pub check: Duration,
}

/// Runs the soak: `config.cycles` times load, SIGKILL, verify, restart, check. `progress`
/// hears the check after every restart, what the checks of the projection and the
/// connector covered, and where the cycle's time went.
///
/// # Errors
/// The first failed start, verify, or check (with the violations and the whole history).
pub async fn soak(
    config: &SoakConfig,
    mut progress: impl FnMut(u32, &Report, &DerivedFigures, &CycleTimes),
) -> Result<SoakOutcome, SoakError> {
    let mut rng = StdRng::seed_from_u64(config.workload.seed);
    let mut workload = Workload::new(config.workload.clone());
    let mut server =
        ServerProcess::start(&config.strata, &config.store, &config.server_log).await?;
    let mut derived = Derived::create(
        &config.strata,
        &server.url(),
        server.port(),
        &config.workload.prefix,
        config.projection,
        config.nats.as_deref(),
    )
    .await
    .map_err(|error| SoakError::Derived { cycle: 0, error })?;
    let mut verify_runs = 0;
    // The final order so far, and what the checks covered.
    let mut order: Vec<Seen> = Vec::new();
    let mut checked = Checked::default();
    for cycle in 1..=config.cycles {
        let mut times = CycleTimes::default();
        let mut clock = Instant::now();
        let mut lap = |into: &mut Duration| {
            *into = clock.elapsed();
            clock = Instant::now();
        };
        let phase = workload.start(&server.url())?;
        let load_ms = rng.gen_range(0..=config.load_ms_max);
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        lap(&mut times.load);
        // New calls stop at the kill; the ones in flight meet it.
        phase.signal_stop();
        server.kill().await;
        workload.stop(phase).await?;
        lap(&mut times.kill);
        if let Store::DataDir(dir) = &config.store {
            verify(&config.strata, dir, cycle).await?;
            verify_runs += 1;
        }
        lap(&mut times.verify);
        server = ServerProcess::start(&config.strata, &config.store, &config.server_log).await?;
        lap(&mut times.restart);
        let full = config.full_check_every > 0 && cycle % config.full_check_every == 0;
        let since = if full {
            order = workload.read_final_order(&server.url()).await?;
            Checked::default()
        } else {
            let tail = workload
                .read_order_after(&server.url(), order.last())
                .await?;
            order.extend(tail);
            checked
        };
        lap(&mut times.read);
        let (report, now) = workload.with_history(|history| check_since(history, &order, since));
        checked = now;
        if report.is_clean() {
            derived
                .check(&server.url(), &order, false)
                .await
                .map_err(|error| SoakError::Derived { cycle, error })?;
        }
        lap(&mut times.check);
        progress(cycle, &report, &derived.figures, &times);
        if !report.is_clean() {
            return Err(SoakError::Violations {
                cycle,
                violations: report.violations,
                history: Box::new(workload.history()),
            });
        }
    }
    let url = server.url();
    let (report, order) = finish(&mut workload, &url, &url, config.cycles).await?;
    let cycle = config.cycles;
    derived
        .check(&url, &order, true)
        .await
        .map_err(|error| SoakError::Derived { cycle, error })?;
    let resent_bound = Derived::resend_bound(u64::from(config.cycles));
    if derived.figures.connector_resent > resent_bound {
        return Err(SoakError::Derived {
            cycle,
            error: DerivedError::Connector(format!(
                "{} re-sends after {} kills, over the promised {resent_bound}",
                derived.figures.connector_resent, config.cycles
            )),
        });
    }
    derived.clean_up().await;
    server.kill().await;
    if let Store::DataDir(dir) = &config.store {
        verify(&config.strata, dir, config.cycles).await?;
        verify_runs += 1;
    }
    Ok(SoakOutcome {
        cycles: config.cycles,
        verify_runs,
        report,
        derived: derived.figures,
        history: workload.history(),
    })
}

/// Reads the final order, lets every subscriber catch up with it (and the group's consumers,
/// through `group_url`), and checks everything. Returns the check and the final order.
pub(crate) async fn finish(
    workload: &mut Workload,
    url: &str,
    group_url: &str,
    cycle: u32,
) -> Result<(Report, Vec<Seen>), SoakError> {
    let order = workload.read_final_order(url).await?;
    if let Some(last) = order.last() {
        workload.catch_up(url, last.position).await?;
    }
    workload.catch_up_group(group_url, &order).await?;
    let history = workload.history();
    let report = check(&history, &order);
    if !report.is_clean() {
        return Err(SoakError::Violations {
            cycle,
            violations: report.violations,
            history: Box::new(history),
        });
    }
    Ok((report, order))
}

/// Runs the workload against the server at `url` for `duration` without faults, then lets
/// the subscribers catch up and checks the history.
///
/// # Errors
/// When the final read fails or the history breaks a rule.
pub async fn check_run(
    url: &str,
    config: WorkloadConfig,
    duration: Duration,
) -> Result<SoakOutcome, SoakError> {
    let mut workload = Workload::new(config);
    let phase = workload.start(url)?;
    tokio::time::sleep(duration).await;
    workload.stop(phase).await?;
    let (report, _) = finish(&mut workload, url, url, 0).await?;
    Ok(SoakOutcome {
        cycles: 0,
        verify_runs: 0,
        report,
        derived: DerivedFigures::default(),
        history: workload.history(),
    })
}

#[cfg(test)]
mod tests {
    use super::ready_port;

    #[test]
    fn ready_line_port_parses() {
        assert_eq!(
            ready_port("strata serve: ready on 127.0.0.1:40123, [::1]:40123"),
            Some(40123)
        );
        assert_eq!(ready_port("listening"), None);
    }
}
