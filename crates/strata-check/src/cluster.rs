//! Several `strata serve` nodes on one PostgreSQL schema under the recorded workload, with
//! faults in PostgreSQL rather than in Strata: the nodes' sessions terminated
//! (`pg_terminate_backend`) and, on a private server, PostgreSQL itself restarted, while
//! calls are in flight. No node is killed; after each fault the nodes must recover by
//! themselves, and the whole history is checked.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::{Report, check};
use crate::history::{Action, AppendOutcome, History, Micros, ReadResult};
use crate::private_postgres::PrivatePostgres;
use crate::soak::{ServerProcess, SoakError, Store, finish};
use crate::workload::{Workload, WorkloadConfig};

/// A fault a cycle injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `pg_terminate_backend` of every session of this schema's nodes.
    TerminateBackends,
    /// PostgreSQL stopped at once (`-m immediate`) and started again after an outage.
    RestartPostgres,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// The database (a private server's, for [`Fault::RestartPostgres`]).
    pub url: String,
    /// A fresh schema the nodes share.
    pub schema: String,
    pub nodes: u32,
    /// Faults, one per cycle, taken in turn.
    pub faults: Vec<Fault>,
    pub cycles: u32,
    /// Load runs up to this long before each fault, and again up to this long after it.
    pub load_ms_max: u64,
    /// How long PostgreSQL stays down in a restart.
    pub outage: Duration,
    pub workload: WorkloadConfig,
    /// Every node's stderr is appended here.
    pub server_log: PathBuf,
    /// After each fault the persistent group must deliver an event appended after the
    /// fault within this (the load goes on until it does).
    pub group_resume_max: Duration,
}

/// What a finished cluster run found.
#[derive(Clone, Debug)]
pub struct ClusterOutcome {
    pub cycles: u32,
    pub backends_terminated: u64,
    pub restarts: u32,
    /// The check of the whole history once everyone caught up.
    pub report: Report,
    /// The longest time the persistent group took, after a fault, to deliver an event
    /// appended after it.
    pub group_resume_longest: Duration,
    pub history: History,
}

/// How long the nodes have, after a fault, to answer the final read.
const RECOVERY: Duration = Duration::from_secs(60);

/// When the group first delivered an event that an append sent at or after `since` (on the
/// history's clock).
fn group_resumed_at(history: &History, since: Micros) -> Option<Micros> {
    let sent_since: HashSet<uuid::Uuid> = history
        .operations
        .iter()
        .filter(|operation| operation.invoked_at >= since)
        .filter_map(|operation| match &operation.action {
            Action::Append { event_ids, .. } => Some(event_ids.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    history
        .group_deliveries
        .iter()
        .filter(|delivery| sent_since.contains(&delivery.event.id))
        .map(|delivery| delivery.at)
        .min()
}

/// Lets the load run until the group has delivered an event appended after `since`, at
/// most `bound` after `since`; returns how long after `since` it did.
async fn wait_for_group(
    workload: &Workload,
    since: Micros,
    bound: Duration,
    cycle: u32,
) -> Result<Duration, SoakError> {
    loop {
        if let Some(at) = group_resumed_at(&workload.history(), since) {
            return Ok(Duration::from_micros(at - since));
        }
        let waited = Duration::from_micros(workload.now().saturating_sub(since));
        if waited > bound {
            return Err(SoakError::GroupStalled { cycle, waited });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `pg_terminate_backend` of every session whose `application_name` names a node registered
/// in `schema` (`strata-<first 12 hex digits of its id> <role>`): other schemas' sessions,
/// other tests', are left alone. Returns how many were terminated.
///
/// # Errors
/// When PostgreSQL cannot be reached or the query fails.
pub async fn terminate_node_sessions(url: &str, schema: &str) -> Result<u64, SoakError> {
    let failed = |what: String| SoakError::Start(format!("pg_terminate_backend: {what}"));
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| failed(format!("{e}")))?;
    let driver = tokio::spawn(connection);
    let schema = schema.replace('"', "\"\"");
    let query = format!(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE split_part(application_name, ' ', 1) IN \
         (SELECT 'strata-' || left(replace(node_id::text, '-', ''), 12) \
          FROM \"{schema}\".cluster_nodes)"
    );
    let row = client
        .query_one(&query, &[])
        .await
        .map_err(|e| failed(format!("{e}")))?;
    drop(client);
    driver.abort();
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Starts `nodes` servers on the schema, one after the other (the first becomes leader).
async fn start_nodes(config: &ClusterConfig) -> Result<Vec<ServerProcess>, SoakError> {
    let store = Store::Postgres {
        url: config.url.clone(),
        schema: config.schema.clone(),
    };
    let mut nodes = Vec::new();
    for _ in 0..config.nodes {
        nodes.push(ServerProcess::start(&config.strata, &store, &config.server_log).await?);
    }
    Ok(nodes)
}

/// The seeds of every node, for a client that must find the leader.
fn seeds(nodes: &[ServerProcess]) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port()))
        .collect();
    format!("kdb://{}?tls=false", hosts.join(","))
}

/// Reads the final order from `url`, trying again while the nodes recover.
async fn read_final_order_recovering(
    workload: &Workload,
    url: &str,
) -> Result<Vec<crate::Seen>, SoakError> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        match workload.read_final_order(url).await {
            Ok(order) => return Ok(order),
            Err(error) if Instant::now() > deadline => return Err(error.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Runs the cluster under faults: every cycle, load, a fault (in turn from
/// `config.faults`), more load while the nodes recover, then the whole history checked
/// against the final order read from a node. At the end the subscribers and the group catch
/// up and everything is checked once more. `postgres` is the private server when the faults
/// restart PostgreSQL. After each fault, the load runs on until the persistent group has
/// delivered an event appended after the fault, or `config.group_resume_max` passed (an
/// error). `progress` hears every cycle's check and how soon the group resumed.
///
/// # Errors
/// The first failed start or fault, or a broken rule (with the violations and the history).
pub async fn cluster_soak(
    config: &ClusterConfig,
    postgres: Option<&PrivatePostgres>,
    mut progress: impl FnMut(u32, Fault, &Report, Duration),
) -> Result<ClusterOutcome, SoakError> {
    let mut rng = StdRng::seed_from_u64(config.workload.seed);
    let mut workload = Workload::new(config.workload.clone());
    let nodes = start_nodes(config).await?;
    let urls: Vec<String> = nodes.iter().map(ServerProcess::url).collect();
    let group_url = seeds(&nodes);
    let mut backends_terminated = 0;
    let mut restarts = 0;
    let mut group_resume_longest = Duration::ZERO;
    for cycle in 1..=config.cycles {
        let fault = config.faults[(cycle as usize - 1) % config.faults.len()];
        let phase = workload.start_on(&urls, &group_url)?;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=config.load_ms_max))).await;
        match (fault, postgres) {
            (Fault::TerminateBackends, _) => {
                backends_terminated += terminate_node_sessions(&config.url, &config.schema).await?;
            }
            (Fault::RestartPostgres, Some(postgres)) => {
                postgres
                    .restart(config.outage)
                    .await
                    .map_err(|e| SoakError::Start(format!("{e}")))?;
                restarts += 1;
            }
            (Fault::RestartPostgres, None) => {
                return Err(SoakError::Start(
                    "restarting PostgreSQL needs a private server".to_owned(),
                ));
            }
        }
        let fault_over = workload.now();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=config.load_ms_max))).await;
        let resumed = if config.workload.group_consumers > 0 {
            wait_for_group(&workload, fault_over, config.group_resume_max, cycle).await?
        } else {
            Duration::ZERO
        };
        group_resume_longest = group_resume_longest.max(resumed);
        phase.signal_stop();
        workload.stop(phase).await?;
        let order =
            read_final_order_recovering(&workload, &urls[cycle as usize % urls.len()]).await?;
        let history = workload.history();
        let report = check(&history, &order);
        progress(cycle, fault, &report, resumed);
        if !report.is_clean() {
            return Err(SoakError::Violations {
                cycle,
                violations: report.violations,
                history: Box::new(history),
            });
        }
    }
    // Let the nodes settle (a leader elected again) before the catch-up.
    read_final_order_recovering(&workload, &urls[0]).await?;
    let (report, _) = finish(&mut workload, &urls[0], &group_url, config.cycles).await?;
    for node in nodes {
        node.kill().await;
    }
    Ok(ClusterOutcome {
        cycles: config.cycles,
        backends_terminated,
        restarts,
        report,
        group_resume_longest,
        history: workload.history(),
    })
}

/// The errors of failed calls (appends without an answer, failed reads, dropped
/// subscriptions), counted by message: what clients saw during the faults.
pub fn error_counts(history: &History) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for operation in &history.operations {
        let error = match &operation.action {
            Action::Append {
                outcome: AppendOutcome::Unknown { error },
                ..
            }
            | Action::ReadStream {
                result: ReadResult::Failed { error },
                ..
            }
            | Action::ReadAll {
                result: ReadResult::Failed { error },
                ..
            } => error,
            _ => continue,
        };
        // The client adds the answer's details and headers (request id, date): not the error.
        let error = error.split(", details:").next().unwrap_or(error);
        *counts.entry(error.to_owned()).or_default() += 1;
    }
    counts
}
