//! `strata bench --server URL`: the standard workload through the KurrentDB gRPC protocol
//! against a running server, with the disk baseline measured in the same run when a
//! directory on the server's disk is given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use strata_core::{ExpectedRevision, StreamName};
use strata_grpc::client::{Client, IdFormat};
use tokio::task::JoinSet;

use super::grpc_report::{GrpcReport, GrpcShape};
use super::latency::LatencySummary;
use super::throughput::Throughput;
use super::workload::{Workload, stream_names};
use super::{BenchArgs, baseline, machine, official_client, workers};
use crate::progress;

/// Concurrent single-event appenders when --single-tasks is not given.
const SINGLE_TASKS_DEFAULT: u64 = 64;
/// Events asked for per Read call of `$all`.
const READ_PAGE_EVENTS: u64 = 65_536;
/// Events read between two progress-bar updates.
const PROGRESS_STEP_EVENTS: u64 = 4_096;

/// Appends that went through one phase, with each call's latency.
pub(super) struct Timed {
    pub(super) throughput: Throughput,
    pub(super) latency: LatencySummary,
}

impl Timed {
    /// Waits for the appenders in `set` (each returns its calls' latencies) and times them
    /// from `started`; the first failure stops the others.
    pub(super) async fn collect(
        mut set: JoinSet<anyhow::Result<Vec<Duration>>>,
        started: Instant,
        events_total: u64,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<Timed> {
        let mut latencies = Vec::with_capacity(usize::try_from(events_total).unwrap_or(0));
        while let Some(joined) = set.join_next().await {
            match joined.context("a bench task panicked") {
                Ok(Ok(task_latencies)) => latencies.extend(task_latencies),
                Ok(Err(error)) | Err(error) => {
                    set.abort_all();
                    return Err(error);
                }
            }
        }
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        Ok(Timed {
            throughput: Throughput {
                events: events_total,
                elapsed,
            },
            latency: LatencySummary::from_samples(latencies),
        })
    }
}

pub(super) async fn run(args: &BenchArgs, url: &str) -> anyhow::Result<()> {
    ensure!(
        !args.cleanup,
        "--cleanup applies to the embedded bench only: with --server the data is the server's"
    );
    let client = Client::connect(url)
        .await
        .with_context(|| format!("the bench cannot reach the server at {url}"))?;
    let baseline = match &args.data_dir {
        Some(dir) => Some(measure_baseline(args, dir).await?),
        None => None,
    };
    let single_tasks = args.single_tasks.unwrap_or(SINGLE_TASKS_DEFAULT);
    let workload = Arc::new(Workload::new(args.streams, args.event_bytes)?);
    let phases = async {
        let batched = batch_append(&client, &workload, args).await?;
        let single = append_single(&client, &workload, args.events_single, single_tasks).await?;
        let written = batched.throughput.events + single.throughput.events;
        let read_all = read_all(&client, written).await?;
        let official_read_all = official_client::read_all(url, written).await?;
        let official = match args.official_appends {
            0 => None,
            appends => Some(official_client::run(url, args.event_bytes, appends).await?),
        };
        anyhow::Ok((batched, single, read_all, official_read_all, official))
    };
    let (batched, single, read_all, official_read_all, official) = phases
        .await
        .with_context(|| format!("the bench against {url} stopped"))?;
    let report = GrpcReport {
        shape: GrpcShape {
            server: url.to_owned(),
            event_bytes: args.event_bytes,
            streams: args.streams,
            batch_events: args.batch_events,
            batched_tasks: args.batched_tasks,
            single_tasks,
        },
        machine: machine::Machine::read(),
        baseline,
        batched,
        single,
        read_all,
        official_read_all,
        official,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
    Ok(())
}

/// The disk baseline in `dir`, which should be on the server's disk. Only scratch files
/// are written there, and deleted.
async fn measure_baseline(
    args: &BenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<baseline::Baseline> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} for the disk baseline", dir.display()))?;
    let settings = args.baseline_settings(0);
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || baseline::measure(&dir, &settings))
        .await
        .context("the baseline measurement panicked")?
}

/// BatchAppend calls of `--batch-events` events from `--batched-tasks` tasks, all over one
/// bidirectional call, streams taken round-robin.
async fn batch_append(
    client: &Client,
    workload: &Arc<Workload>,
    args: &BenchArgs,
) -> anyhow::Result<Timed> {
    let (events_total, batch_events) = (args.events_batched, args.batch_events);
    let appender = Arc::new(
        client
            .clone()
            .with_id_format(IdFormat::Structured)
            .batch_appender()
            .await?,
    );
    let bar = progress::bar("grpc batch appends", events_total, "events");
    let (workload, task_bar) = (Arc::clone(workload), bar.clone());
    let started = Instant::now();
    let latencies = workers::run(
        args.batched_tasks,
        events_total.div_ceil(batch_events),
        move |index| {
            let (appender, workload, bar) = (
                Arc::clone(&appender),
                Arc::clone(&workload),
                task_bar.clone(),
            );
            async move {
                let count = batch_events.min(events_total - index * batch_events);
                let stream = workload.stream_round_robin(index);
                appender
                    .append(stream, ExpectedRevision::Any, workload.events(count))
                    .await
                    .with_context(|| {
                        format!("a batch append of {count} events to {stream} failed")
                    })?;
                bar.inc(count);
                Ok(())
            }
        },
    )
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Timed {
        throughput: Throughput {
            events: events_total,
            elapsed,
        },
        latency: LatencySummary::from_samples(latencies),
    })
}

/// One event per Append call from `tasks` tasks, each appending to its own stream.
async fn append_single(
    client: &Client,
    workload: &Arc<Workload>,
    events_total: u64,
    tasks: u64,
) -> anyhow::Result<Timed> {
    let tasks = tasks.min(events_total);
    let streams = stream_names("bench-single", tasks)?;
    let bar = progress::bar("grpc single appends", events_total, "events");
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (task, stream) in (0..tasks).zip(streams) {
        let events = events_total / tasks + u64::from(task < events_total % tasks);
        let (client, workload, bar) = (client.clone(), Arc::clone(workload), bar.clone());
        set.spawn(
            async move { append_one_by_one(&client, &workload, &stream, events, &bar).await },
        );
    }
    Timed::collect(set, started, events_total, &bar).await
}

async fn append_one_by_one(
    client: &Client,
    workload: &Workload,
    stream: &StreamName,
    events: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
    for _ in 0..events {
        let started = Instant::now();
        client
            .append(stream, ExpectedRevision::Any, vec![workload.event()])
            .await
            .with_context(|| format!("a single-event append to {stream} failed"))?;
        latencies.push(started.elapsed());
        bar.inc(1);
    }
    Ok(latencies)
}

/// Reads the whole of `$all` forwards, which holds at least the `written` events of this
/// run (the server may hold more).
async fn read_all(client: &Client, written: u64) -> anyhow::Result<Throughput> {
    let bar = progress::bar("grpc read $all", written, "events");
    let task_bar = bar.clone();
    let mut uncounted = 0u64;
    let started = Instant::now();
    let events = client
        .read_all_forwards(READ_PAGE_EVENTS, move |_event| {
            // The bar is told in steps: a million updates a second would cost the reader.
            uncounted += 1;
            if uncounted == PROGRESS_STEP_EVENTS {
                task_bar.inc(uncounted);
                uncounted = 0;
            }
        })
        .await
        .context("reading $all failed")?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if events < written {
        bail!(
            "$all holds {events} events but this run alone appended {written}: the server lost \
             acknowledged events; run `strata verify` on its data directory"
        );
    }
    Ok(Throughput { events, elapsed })
}
