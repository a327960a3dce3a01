//! `strata bench`: the standard embedded workload, run against a fresh store, with the
//! disk's own speed measured in the same run on the same directory as the baseline. With
//! `--server`, the gRPC workload against a running server instead (`grpc.rs`), or with an
//! `http://` URL the HTTP API's appends and NDJSON reads (`http.rs`).

mod append_batched;
mod append_single;
mod auth;
mod baseline;
mod data_dir;
mod grpc;
mod grpc_report;
mod http;
mod latency;
mod machine;
mod memory;
mod official_client;
mod postgres;
mod read_all;
mod read_stream;
mod reopen;
mod report;
mod stream_fixture;
mod throughput;
mod workers;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use strata_core::EventStore;
use strata_engine::{Config, Durability, Store};

use self::report::{BenchReport, WorkloadShape};
use self::workload::Workload;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Directory for the bench's store; must be empty or absent. With --server: a directory
    /// on the server's disk to measure the disk baseline in (optional).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["server", "store"])]
    data_dir: Option<PathBuf>,
    /// Bench Strata on PostgreSQL instead, beside raw INSERTs into the same database:
    /// postgres://USER@HOST[:PORT]/DB (`postgres.rs`).
    #[arg(long, value_name = "URL", conflicts_with_all = ["server", "data_dir"])]
    store: Option<String>,
    /// Bench a running server over gRPC instead, e.g. kdb://127.0.0.1:2113?tls=false
    /// (also kurrentdb:// and esdb://); or its HTTP API with http://127.0.0.1:2113
    /// (single appends and an NDJSON read of `$all`).
    #[arg(long, value_name = "URL", env = "STRATA_SERVER")]
    server: Option<String>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Delete the data directory after a successful run.
    #[arg(long)]
    cleanup: bool,
    /// Whether an append waits for fdatasync before it is acknowledged.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Fsync)]
    durability: DurabilityArg,
    /// Events written by appends of --batch-events events each.
    #[arg(long, value_name = "N", default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events_batched: u64,
    /// Events per batched append.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_events: u64,
    /// Concurrent tasks issuing batched appends.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4_096))]
    batched_tasks: u64,
    /// Events written one per append.
    #[arg(long, value_name = "N", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    events_single: u64,
    /// Concurrent tasks issuing single-event appends [default: 256; 64 with --server, each
    /// task appending to its own stream].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    single_tasks: Option<u64>,
    /// With --server: single appends from one writer through the official Rust client, per
    /// variant (Nagle on, then forced off; each stops after 5 s); 0 skips the phase.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    official_appends: u64,
    /// Streams the appends are spread over.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    streams: u64,
    /// Size of each event's JSON body.
    #[arg(long, value_name = "BYTES", default_value_t = 200, value_parser = clap::value_parser!(u64).range(32..=1_048_576))]
    event_bytes: u64,
    /// Streams of exactly 100 events written for the stream-read phase.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    read_streams: u64,
    /// Whole-stream reads in the stream-read phase.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    stream_reads: u64,
    /// New streams that get one event each before resident memory is read.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    memory_streams: u64,
    /// Concurrent tasks issuing stream reads.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=4_096))]
    read_tasks: u64,
    /// How long the fdatasync baseline runs.
    #[arg(long, value_name = "MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..))]
    baseline_fsync_ms: u64,
    /// Bytes the disk-write baseline writes at least, in MiB; the embedded bench writes at
    /// least the batched phase's event bytes too, so that both go on for as long.
    #[arg(long, value_name = "MIB", default_value_t = 2_048, value_parser = clap::value_parser!(u64).range(1..))]
    baseline_write_mib: u64,
    /// Bytes per write of the disk-write baseline, in KiB, each followed by `fdatasync` as a
    /// group commit is.
    #[arg(long, value_name = "KIB", default_value_t = 2_048, value_parser = clap::value_parser!(u64).range(4..=262_144))]
    baseline_group_kib: u64,
}

impl BenchArgs {
    /// The baseline's settings; `log_bytes_at_least` is what the bench's own writes will
    /// amount to at least (zero when the bench measures a server's disk).
    fn baseline_settings(&self, log_bytes_at_least: u64) -> baseline::Settings {
        baseline::Settings {
            fsync_duration: std::time::Duration::from_millis(self.baseline_fsync_ms),
            write_bytes: (self.baseline_write_mib * 1024 * 1024).max(log_bytes_at_least),
            write_group_bytes: usize::try_from(self.baseline_group_kib * 1024)
                .expect("--baseline-group-kib is at most 256 MiB"),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// Every acknowledged append is on disk (fdatasync per group commit).
    Fsync,
    /// Appends are acknowledged once written to the OS; a power loss may lose them.
    None,
}

impl DurabilityArg {
    fn engine(self) -> Durability {
        match self {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::None => Durability::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DurabilityArg::Fsync => "fsync",
            DurabilityArg::None => "none",
        }
    }
}

/// Runs the bench on a fresh multi-threaded runtime.
pub(crate) fn run_blocking(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime; check the process may create threads")?;
    // An empty STRATA_SERVER means no server, as an unset one does.
    if let Some(url) = args.store.clone() {
        return runtime.block_on(postgres::run(&args, &url));
    }
    match args.server.clone().filter(|url| !url.is_empty()) {
        Some(url) if url.starts_with("http://") => runtime.block_on(http::run(&args, &url)),
        Some(url) => runtime.block_on(grpc::run(&args, &url)),
        None => runtime.block_on(run(args)),
    }
}

/// Concurrent single-event appenders of the embedded bench when --single-tasks is not given.
const SINGLE_TASKS_DEFAULT: u64 = 256;

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let Some(dir) = args.data_dir.clone() else {
        anyhow::bail!("give --data-dir DIR for the embedded bench, or --server URL");
    };
    data_dir::prepare(&dir)?;
    let baseline_dir = dir.clone();
    let baseline_settings =
        args.baseline_settings(args.events_batched.saturating_mul(args.event_bytes));
    let baseline =
        tokio::task::spawn_blocking(move || baseline::measure(&baseline_dir, &baseline_settings))
            .await
            .context("the baseline measurement panicked")??;

    let config = Config {
        durability: args.durability.engine(),
        ..Config::default()
    };
    let store = open_store(&dir, config.clone())?;
    let workload = Arc::new(Workload::new(args.streams, args.event_bytes)?);
    let report = run_phases(&args, &dir, store, &workload, baseline, config)
        .await
        .with_context(|| {
            format!(
                "the bench stopped; the store it wrote is left in {0} for                  `strata verify --data-dir {0}`",
                dir.display()
            )
        })?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print_table(&dir);
    }
    if args.cleanup {
        std::fs::remove_dir_all(&dir).with_context(|| {
            format!(
                "the bench finished but {} could not be deleted; remove it by hand",
                dir.display()
            )
        })?;
    }
    Ok(())
}

async fn run_phases(
    args: &BenchArgs,
    dir: &std::path::Path,
    store: Arc<Store>,
    workload: &Arc<Workload>,
    baseline: baseline::Baseline,
    config: Config,
) -> anyhow::Result<BenchReport> {
    let single_tasks = args.single_tasks.unwrap_or(SINGLE_TASKS_DEFAULT);
    let log_end_before = log_end(&store);
    let batched = append_batched::run(
        &store,
        workload,
        args.events_batched,
        args.batch_events,
        args.batched_tasks,
    )
    .await?;
    let batched_bytes = log_end(&store).saturating_sub(log_end_before);
    let single = append_single::run(&store, workload, args.events_single, single_tasks).await?;
    let fixture = stream_fixture::write(&store, workload, args.read_streams).await?;
    let memory = memory::run(&store, workload, args.memory_streams).await?;
    let events_total =
        batched.events + single.throughput.events + fixture.written.events + memory.written.events;
    let read_all = read_all::run(&store, events_total).await?;
    let read_stream =
        read_stream::run(&store, &fixture, args.stream_reads, args.read_tasks).await?;
    let reopen = reopen::run(store, dir, config, events_total).await?;
    let auth = auth::run(dir).await?;
    Ok(BenchReport {
        shape: WorkloadShape {
            durability: args.durability.name(),
            event_bytes: args.event_bytes,
            streams: args.streams,
            batch_events: args.batch_events,
            single_tasks,
        },
        machine: machine::Machine::read(),
        baseline,
        batched,
        batched_bytes,
        single,
        fixture: fixture.written,
        read_all,
        read_stream,
        memory,
        reopen,
        auth,
        events_total,
    })
}

/// The durable end of the log: positions are log offsets, so differences are log bytes.
fn log_end(store: &Store) -> u64 {
    store.watch_log_end().borrow().0
}

fn open_store(dir: &std::path::Path, config: Config) -> anyhow::Result<Arc<Store>> {
    Store::open(dir, config).with_context(|| {
        format!(
            "cannot open a store in {}; check the directory is writable and on a local disk",
            dir.display()
        )
    })
}
