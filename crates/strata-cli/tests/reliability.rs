//! The reliability harness (`strata-check`) against the real `strata serve`, briefly, as CI
//! runs it (`scripts/soak.sh` runs it at length; docs/RELIABILITY.md has the figures):
//! - the kill soak: load from several clients of the official client, SIGKILL at random
//!   moments, restart on the same store, `strata verify` after every kill, and the whole
//!   history checked after every restart (persistent-group deliveries included);
//! - a mixed run without faults, its history checked;
//! - three nodes on one PostgreSQL schema with their PostgreSQL sessions terminated, and
//!   with a private PostgreSQL restarted, mid-run, the history checked after each fault.
//!
//! Both on the embedded engine and on PostgreSQL. `STRATA_CHECK_SEED` replays a seed.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use strata_check::{
    ClusterConfig, ClusterOutcome, Fault, Figures, PrivatePostgres, Rule, ServerProcess,
    SoakConfig, SoakError, SoakOutcome, Store, Workload, WorkloadConfig, check, check_run,
    cluster_soak, error_counts, soak,
};
use support::{PostgresSchema, Server, postgres_url};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Kills of the CI soak on the engine.
const ENGINE_KILLS: u32 = 25;
/// Kills of the CI soak on PostgreSQL.
const POSTGRES_KILLS: u32 = 25;
/// After each PostgreSQL fault, the persistent group delivers an event appended after it
/// within this: the node regains the leader lock within a lease or two (2 s each) and
/// starts the group then.
const GROUP_RESUME_MAX: Duration = Duration::from_secs(10);
/// Load before each kill, at most.
const LOAD_MS_MAX: u64 = 400;

fn nats_url() -> String {
    std::env::var("STRATA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn workload() -> WorkloadConfig {
    let seed = std::env::var("STRATA_CHECK_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand_seed);
    eprintln!("workload seed {seed} (STRATA_CHECK_SEED={seed} replays its choices)");
    WorkloadConfig::new(seed)
}

fn rand_seed() -> u64 {
    u64::from(uuid::Uuid::new_v4().as_fields().0)
}

fn unwrap_outcome(result: Result<SoakOutcome, SoakError>, log: &PathBuf) -> SoakOutcome {
    result.unwrap_or_else(|error| {
        if let SoakError::Violations { violations, .. } = &error {
            for violation in violations {
                eprintln!("violation: {violation}");
            }
        }
        panic!(
            "{error}\nserver stderr:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// The run did what it is meant to exercise: acknowledged appends, refusals for a wrong
/// expected revision, reads, subscription and persistent-group deliveries.
fn assert_exercised(figures: Figures) {
    assert!(figures.appends_acknowledged > 0, "{figures:?}");
    assert!(figures.appends_refused > 0, "{figures:?}");
    assert!(figures.reads_checked > 0, "{figures:?}");
    assert!(figures.deliveries_checked > 0, "{figures:?}");
    // The checker wants every event delivered to the group once its consumers caught up.
    assert!(
        figures.group_deliveries >= figures.events_in_final_order,
        "{figures:?}"
    );
    assert!(
        figures.events_in_final_order >= figures.events_acknowledged,
        "{figures:?}"
    );
}

async fn run_soak(store: Store, kills: u32, log: PathBuf) -> SoakOutcome {
    let config = SoakConfig {
        strata: PathBuf::from(STRATA),
        store,
        cycles: kills,
        load_ms_max: LOAD_MS_MAX,
        workload: workload(),
        server_log: log.clone(),
        // Both kinds of check: what changed since the kill before, and everything.
        full_check_every: 10,
        projection: true,
        nats: Some(nats_url()),
    };
    let outcome = unwrap_outcome(soak(&config, |_, _, _, _| {}).await, &log);
    let figures = outcome.report.figures;
    let derived = outcome.derived;
    eprintln!("{kills} kills: {figures:?} {derived:?}");
    assert_exercised(figures);
    // Kills land while appends are in flight.
    assert!(figures.appends_unanswered > 0, "{figures:?}");
    // The projection emitted one event per event, and the connector published every one.
    assert_eq!(
        derived.projection_counted, figures.events_in_final_order,
        "{derived:?}"
    );
    assert_eq!(
        derived.projection_emitted, figures.events_in_final_order,
        "{derived:?}"
    );
    assert_eq!(
        derived.connector_events, figures.events_in_final_order,
        "{derived:?}"
    );
    assert!(
        derived.connector_messages >= figures.events_in_final_order,
        "{derived:?}"
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_soak_on_the_engine_loses_no_acknowledged_append() {
    let temp = tempfile::tempdir().expect("temp dir");
    let outcome = run_soak(
        Store::DataDir(temp.path().join("data")),
        ENGINE_KILLS,
        temp.path().join("server.log"),
    )
    .await;
    assert_eq!(
        outcome.verify_runs,
        ENGINE_KILLS + 1,
        "verify ran after every kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_soak_on_postgres_loses_no_acknowledged_append() {
    let temp = tempfile::tempdir().expect("temp dir");
    let schema = PostgresSchema::new();
    run_soak(
        Store::Postgres {
            url: postgres_url(),
            schema: schema.name.clone(),
        },
        POSTGRES_KILLS,
        temp.path().join("server.log"),
    )
    .await;
}

async fn check_mixed_run(server: &Server) {
    let result = check_run(&server.url(), workload(), Duration::from_secs(3)).await;
    let outcome = result.unwrap_or_else(|error| {
        if let SoakError::Violations { violations, .. } = &error {
            for violation in violations {
                eprintln!("violation: {violation}");
            }
        }
        panic!("{error}\nserver stderr:\n{}", server.stderr())
    });
    let figures = outcome.report.figures;
    eprintln!("mixed run: {figures:?}");
    assert_exercised(figures);
    assert_eq!(
        figures.appends_unanswered, 0,
        "every call is answered when nothing fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_run_on_the_engine_is_consistent() {
    let server = Server::start();
    check_mixed_run(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_run_on_postgres_is_consistent() {
    let schema = PostgresSchema::new();
    let server = Server::start_on_postgres(&schema);
    check_mixed_run(&server).await;
}

/// The harness is not blind: a server restarted on an empty store (as if it lost its
/// disk) is reported as having lost acknowledged appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_forgets_acknowledged_appends_is_caught() {
    let temp = tempfile::tempdir().expect("temp dir");
    let log = temp.path().join("server.log");
    let strata = PathBuf::from(STRATA);
    let first = Store::DataDir(temp.path().join("first"));
    let server = ServerProcess::start(&strata, &first, &log)
        .await
        .expect("server starts");
    let mut workload = Workload::new(workload());
    let phase = workload.start(&server.url()).expect("workload starts");
    tokio::time::sleep(Duration::from_millis(500)).await;
    workload.stop(phase).await.expect("workload stops");
    server.kill().await;

    let empty = Store::DataDir(temp.path().join("second"));
    let server = ServerProcess::start(&strata, &empty, &log)
        .await
        .expect("server starts");
    let order = workload
        .read_final_order(&server.url())
        .await
        .expect("final read");
    server.kill().await;
    let report = check(&workload.history(), &order);
    assert!(
        report.figures.appends_acknowledged > 0,
        "{:?}",
        report.figures
    );
    assert!(
        report
            .violations
            .iter()
            .any(|violation| violation.rule == Rule::AcknowledgedLost),
        "{:?}",
        report.violations
    );
}

/// Nodes of the cluster runs.
const NODES: u32 = 3;

async fn run_cluster(
    url: String,
    schema: String,
    faults: Vec<Fault>,
    cycles: u32,
    postgres: Option<&PrivatePostgres>,
    log: PathBuf,
) -> ClusterOutcome {
    let config = ClusterConfig {
        strata: PathBuf::from(STRATA),
        url,
        schema,
        nodes: NODES,
        faults,
        cycles,
        load_ms_max: 800,
        outage: Duration::from_millis(700),
        workload: workload(),
        server_log: log.clone(),
        group_resume_max: GROUP_RESUME_MAX,
    };
    let result = cluster_soak(&config, postgres, |cycle, fault, report, resumed| {
        eprintln!(
            "fault {cycle} ({fault:?}): group resumed after {resumed:?}; {:?}",
            report.figures
        );
    })
    .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            if let SoakError::Violations { violations, .. } = &error {
                for violation in violations {
                    eprintln!("violation: {violation}");
                }
            }
            let postgres_log = postgres
                .map(|postgres| std::fs::read_to_string(postgres.log()).unwrap_or_default())
                .unwrap_or_default();
            panic!(
                "{error}\nnode stderr:\n{}\nPostgreSQL log:\n{postgres_log}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        }
    };
    for (error, count) in error_counts(&outcome.history) {
        eprintln!("{count} calls failed: {error}");
    }
    eprintln!(
        "{} faults, {} sessions terminated, {} restarts: {:?}",
        outcome.cycles, outcome.backends_terminated, outcome.restarts, outcome.report.figures
    );
    assert_exercised(outcome.report.figures);
    outcome
}

/// Three nodes on one schema of the shared test server; every cycle the sessions of this schema's nodes (and no one else's) are terminated mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_nothing_when_their_postgres_sessions_are_terminated() {
    const CYCLES: u32 = 6;
    let temp = tempfile::tempdir().expect("temp dir");
    let schema = PostgresSchema::new();
    let outcome = run_cluster(
        postgres_url(),
        schema.name.clone(),
        vec![Fault::TerminateBackends],
        CYCLES,
        None,
        temp.path().join("nodes.log"),
    )
    .await;
    // Each node holds at least its cluster session and its listener at every fault.
    assert!(
        outcome.backends_terminated >= u64::from(CYCLES * NODES * 2),
        "{} sessions terminated",
        outcome.backends_terminated
    );
}

/// Three nodes on a private PostgreSQL that is restarted (stopped at once, down for 0.7 s)
/// mid-run, and whose node sessions are terminated in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_nothing_when_postgres_restarts() {
    const CYCLES: u32 = 4;
    let temp = tempfile::tempdir().expect("temp dir");
    let postgres = PrivatePostgres::start().expect("a private PostgreSQL starts");
    let outcome = run_cluster(
        postgres.url(),
        "strata_restart".to_owned(),
        vec![Fault::RestartPostgres, Fault::TerminateBackends],
        CYCLES,
        Some(&postgres),
        temp.path().join("nodes.log"),
    )
    .await;
    assert_eq!(outcome.restarts, CYCLES / 2);
}
