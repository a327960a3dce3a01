//! `strata-check`: the kill soak and the checked mixed run, from the command line
//! (`scripts/soak.sh` drives it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use strata_check::{
    ClusterConfig, DerivedFigures, Fault, History, PrivatePostgres, Report, SoakConfig, SoakError,
    SoakOutcome, Store, WorkloadConfig, check_run, cluster_soak, error_counts, soak,
};

#[derive(Parser)]
#[command(
    name = "strata-check",
    about = "Strata's kill soak and history checker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs `strata serve` under load, SIGKILLs and restarts it CYCLES times, and checks
    /// the history after every restart (and `strata verify` after every kill).
    Soak(SoakArgs),
    /// Runs the workload against a running server for a while and checks the history.
    Run(RunArgs),
    /// Runs several `strata serve` nodes on one PostgreSQL schema under the workload,
    /// terminates their PostgreSQL sessions and restarts a private PostgreSQL mid-run,
    /// CYCLES faults in all, and checks the history after each.
    Cluster(ClusterArgs),
}

#[derive(Args)]
struct ClusterArgs {
    /// Faults, each followed by a check.
    #[arg(long, default_value_t = 20)]
    cycles: u32,
    /// The `strata` binary to run.
    #[arg(long, value_name = "PATH")]
    strata: PathBuf,
    /// Nodes sharing the schema.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// A PostgreSQL URL to use (sessions terminated only); without it a private PostgreSQL
    /// is started in a temporary directory, and restarts join the faults.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Load runs up to this many milliseconds before each fault, and again after it.
    #[arg(long, default_value_t = 1000)]
    load_ms_max: u64,
    /// How long PostgreSQL stays down in a restart.
    #[arg(long, default_value_t = 1000)]
    outage_ms: u64,
    /// After each fault the persistent group must deliver an event appended after it
    /// within this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    group_resume_ms: u64,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[derive(Args)]
struct WorkloadArgs {
    /// Concurrent appending and reading clients.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Catch-up subscribers to `$all`.
    #[arg(long, default_value_t = 2)]
    subscribers: u32,
    /// Streams the clients share.
    #[arg(long, default_value_t = 6)]
    streams: u32,
    /// Seed of the workload's choices (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Writes the whole history here as JSON at the end.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
}

#[derive(Args)]
struct SoakArgs {
    /// Kills, each followed by a restart and a check.
    #[arg(long, default_value_t = 25)]
    cycles: u32,
    /// The `strata` binary to run.
    #[arg(long, value_name = "PATH")]
    strata: PathBuf,
    /// The data directory of the embedded engine (kept afterwards).
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL URL instead of a data directory.
    #[arg(long, value_name = "URL", requires = "store_schema")]
    store: Option<String>,
    /// The PostgreSQL schema (created by the server; use a fresh one).
    #[arg(long, value_name = "NAME")]
    store_schema: Option<String>,
    /// Load runs for a random time up to this many milliseconds before each kill.
    #[arg(long, default_value_t = 600)]
    load_ms_max: u64,
    /// Every this many kills, read the whole final order and check the whole history again
    /// (0: only at the end); the other kills check what changed since the one before.
    #[arg(long, default_value_t = 100)]
    full_check_every: u32,
    /// Leave out the continuous projection (created before the first kill, its count and
    /// emitted stream checked after every restart).
    #[arg(long)]
    no_projection: bool,
    /// Run a connector publishing the workload's category to NATS JetStream here (e.g.
    /// `nats://127.0.0.1:4222`), and check what it published after every restart.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The server, e.g. `kdb://127.0.0.1:2113?tls=false`.
    #[arg(long, value_name = "URL")]
    server: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[command(flatten)]
    workload: WorkloadArgs,
}

fn workload_config(args: &WorkloadArgs) -> WorkloadConfig {
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("seed {seed}");
    WorkloadConfig {
        clients: args.clients,
        subscribers: args.subscribers,
        streams: args.streams,
        ..WorkloadConfig::new(seed)
    }
}

fn summary(report: &Report) -> String {
    let figures = report.figures;
    format!(
        "{} events in $all; {} appends ({} events) acknowledged, {} refused, {} unanswered \
         ({} of them applied); {} reads, {} subscription sessions, {} deliveries checked; \
         group: {} deliveries ({} again); {} violations",
        figures.events_in_final_order,
        figures.appends_acknowledged,
        figures.events_acknowledged,
        figures.appends_refused,
        figures.appends_unanswered,
        figures.appends_unanswered_applied,
        figures.reads_checked,
        figures.sessions_checked,
        figures.deliveries_checked,
        figures.group_deliveries,
        figures.group_redeliveries,
        report.violations.len()
    )
}

fn derived_summary(figures: &DerivedFigures) -> String {
    format!(
        "projection: counted {}, {} emitted checked; connector: {} messages ({} re-sent), \
         {} events published at the last wait",
        figures.projection_counted,
        figures.projection_emitted,
        figures.connector_messages,
        figures.connector_resent,
        figures.connector_events
    )
}

fn conclude(
    result: Result<SoakOutcome, SoakError>,
    history_path: Option<&PathBuf>,
) -> anyhow::Result<()> {
    match result {
        Ok(outcome) => {
            if let Some(path) = history_path {
                write_history(path, &outcome.history)?;
            }
            println!(
                "done: {} kills, {} verify runs clean; {}; {}",
                outcome.cycles,
                outcome.verify_runs,
                summary(&outcome.report),
                derived_summary(&outcome.derived)
            );
            Ok(())
        }
        Err(SoakError::Violations {
            cycle,
            violations,
            history,
        }) => {
            for violation in &violations {
                eprintln!("violation: {violation}");
            }
            if let Some(path) = history_path {
                write_history(path, &history)?;
            }
            bail!("{} violations after kill {cycle}", violations.len())
        }
        Err(error) => Err(error.into()),
    }
}

fn write_history(path: &PathBuf, history: &History) -> anyhow::Result<()> {
    let json = serde_json::to_vec(history).context("history serializes")?;
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("history written to {}", path.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Soak(args) => {
            let store = match (&args.data_dir, &args.store, &args.store_schema) {
                (Some(dir), None, _) => Store::DataDir(dir.clone()),
                (None, Some(url), Some(schema)) => Store::Postgres {
                    url: url.clone(),
                    schema: schema.clone(),
                },
                _ => bail!("pass --data-dir DIR, or --store URL with --store-schema NAME"),
            };
            let server_log = match &store {
                Store::DataDir(dir) => dir.with_extension("server.log"),
                Store::Postgres { schema, .. } => {
                    std::env::temp_dir().join(format!("strata-soak-{schema}.log"))
                }
            };
            println!("server log: {}", server_log.display());
            let config = SoakConfig {
                strata: args.strata,
                store,
                cycles: args.cycles,
                load_ms_max: args.load_ms_max,
                workload: workload_config(&args.workload),
                server_log,
                full_check_every: args.full_check_every,
                projection: !args.no_projection,
                nats: args.nats.clone(),
            };
            let started = Instant::now();
            let result = soak(&config, |cycle, report, derived, times| {
                println!(
                    "kill {cycle}/{} at {:.0} s: {}; {}; took: load {:.2} s, kill {:.2} s, \
                     verify {:.2} s, restart {:.2} s, read {:.2} s, check {:.2} s",
                    config.cycles,
                    started.elapsed().as_secs_f64(),
                    summary(report),
                    derived_summary(derived),
                    times.load.as_secs_f64(),
                    times.kill.as_secs_f64(),
                    times.verify.as_secs_f64(),
                    times.restart.as_secs_f64(),
                    times.read.as_secs_f64(),
                    times.check.as_secs_f64(),
                );
            })
            .await;
            conclude(result, args.workload.history.as_ref())
        }
        Command::Cluster(args) => run_cluster(args).await,
        Command::Run(args) => {
            let config = workload_config(&args.workload);
            let result = check_run(&args.server, config, Duration::from_secs(args.seconds)).await;
            conclude(result, args.workload.history.as_ref())
        }
    }
}

async fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let private = match &args.store {
        Some(_) => None,
        None => Some(PrivatePostgres::start().context("cannot start a private PostgreSQL")?),
    };
    let (url, faults) = match (&args.store, &private) {
        (Some(url), _) => (url.clone(), vec![Fault::TerminateBackends]),
        (None, Some(postgres)) => {
            println!("private PostgreSQL in {}", postgres.dir().display());
            (
                postgres.url(),
                vec![Fault::TerminateBackends, Fault::RestartPostgres],
            )
        }
        (None, None) => unreachable!("a private server when no URL is given"),
    };
    let schema = format!("strata_cluster_{}", std::process::id());
    let server_log = std::env::temp_dir().join(format!("strata-cluster-{schema}.log"));
    println!("schema {schema}, node logs: {}", server_log.display());
    let config = ClusterConfig {
        strata: args.strata,
        url,
        schema,
        nodes: args.nodes,
        faults,
        cycles: args.cycles,
        load_ms_max: args.load_ms_max,
        outage: Duration::from_millis(args.outage_ms),
        group_resume_max: Duration::from_millis(args.group_resume_ms),
        workload: workload_config(&args.workload),
        server_log,
    };
    let started = Instant::now();
    let result = cluster_soak(
        &config,
        private.as_ref(),
        |cycle, fault, report, resumed| {
            println!(
                "fault {cycle}/{} ({fault:?}) at {:.0} s: group resumed after {:.2} s; {}",
                config.cycles,
                started.elapsed().as_secs_f64(),
                resumed.as_secs_f64(),
                summary(report)
            );
        },
    )
    .await;
    match result {
        Ok(outcome) => {
            if let Some(path) = &args.workload.history {
                write_history(path, &outcome.history)?;
            }
            for (error, count) in error_counts(&outcome.history) {
                println!("{count:>6} calls failed: {error}");
            }
            println!(
                "done: {} faults ({} sessions terminated, {} PostgreSQL restarts) in {:.0} s; \
                 the group resumed within {:.2} s of each; {}",
                outcome.cycles,
                outcome.backends_terminated,
                outcome.restarts,
                started.elapsed().as_secs_f64(),
                outcome.group_resume_longest.as_secs_f64(),
                summary(&outcome.report)
            );
            Ok(())
        }
        Err(error) => conclude(Err(error), args.workload.history.as_ref()),
    }
}
