//! `strata bench --server http://HOST:PORT`: the HTTP API's share of the workload against a
//! running server — single-event appends (`POST /v1/streams/{stream}`) from concurrent
//! keep-alive clients, each appending to its own stream, then the whole of `$all` read as
//! NDJSON (`GET /v1/all`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::grpc::Timed;
use super::latency::micros;
use super::machine::Machine;
use super::report::{gibibytes, group, round, round1, row};
use super::throughput::Throughput;
use super::workload::{Workload, stream_names};
use super::{BenchArgs, machine};
use crate::progress;

/// Concurrent single-event appenders (one keep-alive connection each) when --single-tasks
/// is not given.
const SINGLE_TASKS_DEFAULT: u64 = 64;
/// Bytes received between two progress-bar updates of the `$all` read.
const PROGRESS_STEP_BYTES: usize = 1 << 20;

pub(super) async fn run(args: &BenchArgs, url: &str) -> anyhow::Result<()> {
    ensure!(
        !args.cleanup,
        "--cleanup applies to the embedded bench only: with --server the data is the server's"
    );
    let base = url.trim_end_matches('/').to_owned();
    let single_tasks = args.single_tasks.unwrap_or(SINGLE_TASKS_DEFAULT);
    let client = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::try_from(single_tasks).unwrap_or(usize::MAX))
        .build()
        .context("cannot build the HTTP client")?;
    let live = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .with_context(|| format!("the bench cannot reach the server at {base}"))?;
    ensure!(
        live.status().is_success(),
        "{base}/health/live answered {}; is it a Strata server?",
        live.status()
    );
    let workload = Arc::new(Workload::new(args.streams, args.event_bytes)?);
    let phases = async {
        let single =
            append_single(&client, &base, &workload, args.events_single, single_tasks).await?;
        let read_all = read_all(&client, &base, single.throughput.events).await?;
        anyhow::Ok((single, read_all))
    };
    let (single, read_all) = phases
        .await
        .with_context(|| format!("the bench against {base} stopped"))?;
    let report = HttpReport {
        server: base,
        event_bytes: args.event_bytes,
        single_tasks,
        machine: machine::Machine::read(),
        single,
        read_all,
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
    Ok(())
}

/// One event per request from `tasks` tasks, each appending to its own stream over its own
/// keep-alive connection (the client's pool holds one per task).
async fn append_single(
    client: &reqwest::Client,
    base: &str,
    workload: &Arc<Workload>,
    events_total: u64,
    tasks: u64,
) -> anyhow::Result<Timed> {
    let tasks = tasks.min(events_total);
    let streams = stream_names("bench-http-single", tasks)?;
    let bar = progress::bar("http single appends", events_total, "events");
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (task, stream) in (0..tasks).zip(streams) {
        let events = events_total / tasks + u64::from(task < events_total % tasks);
        let url = format!("{base}/v1/streams/{stream}");
        let (client, workload, bar) = (client.clone(), Arc::clone(workload), bar.clone());
        set.spawn(async move { append_one_by_one(&client, &url, &workload, events, &bar).await });
    }
    Timed::collect(set, started, events_total, &bar).await
}

async fn append_one_by_one(
    client: &reqwest::Client,
    url: &str,
    workload: &Workload,
    events: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
    for _ in 0..events {
        let event = workload.event();
        let data = std::str::from_utf8(&event.data).context("the bench body is not UTF-8")?;
        // The body is built by hand: the data is already JSON and goes in as it is.
        let body = format!(
            r#"{{"expectedRevision":"any","events":[{{"id":"{}","type":"{}","data":{data}}}]}}"#,
            event.id.0, event.event_type
        );
        let started = Instant::now();
        let response = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("a single-event append to {url} failed"))?;
        let status = response.status();
        // Reading the answer to its end lets the connection carry the next request.
        let answer = response
            .bytes()
            .await
            .with_context(|| format!("the answer of an append to {url} was cut short"))?;
        latencies.push(started.elapsed());
        if !status.is_success() {
            bail!(
                "an append to {url} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        bar.inc(1);
    }
    Ok(latencies)
}

/// Reads the whole of `$all` forwards as NDJSON in one request, counting lines (one per
/// event); `$all` holds at least the `written` events of this run.
async fn read_all(
    client: &reqwest::Client,
    base: &str,
    written: u64,
) -> anyhow::Result<Throughput> {
    let bar = progress::bar("http read $all", written, "events");
    let started = Instant::now();
    let mut response = client
        .get(format!("{base}/v1/all?count={}", u64::MAX))
        .header(reqwest::header::ACCEPT, "application/x-ndjson")
        .send()
        .await
        .context("reading $all failed")?;
    let status = response.status();
    if !status.is_success() {
        let answer = response.text().await.unwrap_or_default();
        bail!("reading $all answered {status}: {answer}");
    }
    let (mut events, mut uncounted_bytes, mut uncounted_events) = (0u64, 0usize, 0u64);
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the NDJSON answer of $all was cut short")?
    {
        let lines = chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
        events += lines;
        uncounted_events += lines;
        uncounted_bytes += chunk.len();
        // The bar is told in steps: updates per chunk would cost the reader.
        if uncounted_bytes >= PROGRESS_STEP_BYTES {
            bar.inc(uncounted_events);
            (uncounted_bytes, uncounted_events) = (0, 0);
        }
    }
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

struct HttpReport {
    server: String,
    event_bytes: u64,
    single_tasks: u64,
    machine: Machine,
    single: Timed,
    read_all: Throughput,
}

impl HttpReport {
    fn to_json(&self) -> Value {
        let single = &self.single;
        json!({
            "server": self.server,
            "event_bytes": self.event_bytes,
            "single_tasks": self.single_tasks,
            "machine_cores": self.machine.cores,
            "machine_memory_bytes": self.machine.memory_bytes,
            "http_append_single_events": single.throughput.events,
            "http_append_single_events_per_sec": round(single.throughput.events_per_sec()),
            "http_append_single_p50_us": round1(micros(single.latency.p50)),
            "http_append_single_p99_us": round1(micros(single.latency.p99)),
            "http_append_single_max_us": round1(micros(single.latency.max)),
            "http_read_all_ndjson_events": self.read_all.events,
            "http_read_all_ndjson_events_per_sec": round(self.read_all.events_per_sec()),
        })
    }

    fn print_table(&self) {
        println!(
            "strata bench --server {}: {}-byte events, single appends from {} keep-alive \
             HTTP/1.1 clients",
            self.server, self.event_bytes, self.single_tasks
        );
        println!(
            "machine: {} cores, {} memory (client and server share them)\n",
            self.machine.cores,
            self.machine
                .memory_bytes
                .map_or("unknown".to_owned(), gibibytes),
        );
        let single = &self.single;
        let rows = [
            row("metric", "figure".to_owned(), "target", "note".to_owned()),
            row(
                "http_append_single_events_per_sec",
                group(single.throughput.events_per_sec()),
                ">= 25,000",
                format!(
                    "request p50 {:.0} us, p99 {:.0} us",
                    micros(single.latency.p50),
                    micros(single.latency.p99)
                ),
            ),
            row(
                "http_read_all_ndjson_events_per_sec",
                group(self.read_all.events_per_sec()),
                ">= 800,000",
                format!("{} events in $all", group(self.read_all.events as f64)),
            ),
        ];
        for row in rows {
            let line = format!("{:<36} {:>16}  {:<14} {}", row[0], row[1], row[2], row[3]);
            println!("{}", line.trim_end());
        }
    }
}
