//! Append throughput of 1, 2, ... N cluster nodes on one PostgreSQL database, beside the raw
//! INSERT baselines measured in the same run on the same database (docs/BENCHMARKS.md,
//! "Cluster on PostgreSQL"). A node is a `PostgresStore` (its own pool, writer session and
//! group commit, as each `strata serve` process has); the N nodes live in this process and
//! share one fresh schema, dropped at the end. Append `i` goes through node `i % N`; the
//! tasks are the same whatever N (64 for single-event appends, 8 for appends of 1,000), so
//! the figures say what spreading one load over more nodes does to the schema's one append
//! lock (`pg_advisory_xact_lock`, docs/POSTGRES.md).
//!
//! Raw baselines: single-row INSERTs (each its own commit) and 100-row INSERTs from 8
//! connections into a table with the columns and indexes of `events`.
//!
//! `cargo run --release -p strata-postgres --example cluster_append_rate -- URL [SINGLE] [BATCHED] [NODES]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_postgres::{PostgresConfig, PostgresStore, drop_schema};
use tokio_postgres::NoTls;

const STREAMS: u64 = 10_000;
const SINGLE_TASKS: u64 = 64;
const BATCH_TASKS: u64 = 8;
const BATCH_EVENTS: u64 = 1_000;
const BASELINE_CLIENTS: u64 = 8;
const BASELINE_BATCH_ROWS: u64 = 100;

const BASELINE_TABLE_SQL: &str = "CREATE TABLE baseline_events (
        position BIGSERIAL PRIMARY KEY,
        stream TEXT NOT NULL,
        revision BIGINT NOT NULL,
        event_id UUID NOT NULL,
        event_type TEXT NOT NULL,
        is_json BOOLEAN NOT NULL,
        data BYTEA NOT NULL,
        metadata BYTEA NOT NULL,
        created_nanos BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX baseline_stream_revision ON baseline_events (stream, revision)
        INCLUDE (event_id);";

const BASELINE_INSERT_SQL: &str = "INSERT INTO baseline_events
     (stream, revision, event_id, event_type, is_json, data, metadata, created_nanos)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::uuid[], $4::text[], $5::bool[],
         $6::bytea[], $7::bytea[], $8::int8[])";

fn body() -> String {
    format!(r#"{{"payload":"{}"}}"#, "x".repeat(186))
}

fn event() -> ProposedEvent {
    ProposedEvent::json("BenchEvent", body())
}

fn stream(index: u64) -> StreamName {
    // A multiplicative hash spreads consecutive appends over the streams.
    let slot = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) % STREAMS;
    StreamName::new(format!("bench-{slot}")).expect("a valid name")
}

/// `tasks` tasks take the next append number until `appends` are done, append `i` through
/// `nodes[i % nodes.len()]`; returns events per second.
async fn run(nodes: &[Arc<PostgresStore>], tasks: u64, appends: u64, events_each: u64) -> f64 {
    let nodes: Arc<Vec<Arc<PostgresStore>>> = Arc::new(nodes.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (nodes, next) = (Arc::clone(&nodes), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= appends {
                        return;
                    }
                    let node = &nodes[usize::try_from(index).expect("fits") % nodes.len()];
                    let events = (0..events_each).map(|_| event()).collect();
                    node.append(&stream(index), ExpectedRevision::Any, events)
                        .await
                        .expect("appends");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker ends");
    }
    (appends * events_each) as f64 / started.elapsed().as_secs_f64()
}

/// Samples, every 10 ms until `stop` is set, how many sessions wait for an advisory lock
/// of `schema` (`pg_locks`: the append lock's second key is `hashtext(schema)`); returns
/// the mean. Near the node count: every writer is queued on
/// the append lock, the lock is the bottleneck; near 0: the writers do not meet there.
async fn advisory_waiters(
    url: String,
    schema: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> f64 {
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let (mut samples, mut waiting) = (0_u64, 0_i64);
    while !stop.load(Ordering::Relaxed) {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_locks
                  WHERE locktype = 'advisory' AND NOT granted AND objsubid = 2
                    AND objid::text::bigint = (hashtext($1)::bigint & 4294967295)",
                &[&schema],
            )
            .await
            .expect("samples");
        waiting += row.get::<_, i64>(0);
        samples += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    waiting as f64 / samples.max(1) as f64
}

/// [`run`], with the mean number of sessions waiting for the append lock meanwhile.
async fn run_sampled(
    url: &str,
    schema: &str,
    nodes: &[Arc<PostgresStore>],
    tasks: u64,
    appends: u64,
    events_each: u64,
) -> (f64, f64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(advisory_waiters(
        url.to_owned(),
        schema.to_owned(),
        Arc::clone(&stop),
    ));
    let rate = run(nodes, tasks, appends, events_each).await;
    stop.store(true, Ordering::Relaxed);
    (rate, sampler.await.expect("the sampler ends"))
}

async fn connect(url: &str, schema: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .expect("sets the search path");
    client
}

/// `rows_total` rows in INSERTs of `rows_each` rows (each its own commit) from
/// [`BASELINE_CLIENTS`] connections; returns rows per second.
async fn raw_inserts(url: &str, schema: &str, rows_total: u64, rows_each: u64) -> f64 {
    let inserts = rows_total.div_ceil(rows_each);
    let mut clients = Vec::new();
    for _ in 0..BASELINE_CLIENTS {
        clients.push(connect(url, schema).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(client_index, client)| {
            tokio::spawn(async move {
                let statement = client.prepare(BASELINE_INSERT_SQL).await.expect("prepares");
                let data = body().into_bytes();
                let mut insert = client_index as u64;
                while insert < inserts {
                    let stream = format!("baseline{rows_each}-{client_index}-{insert}");
                    let rows = usize::try_from(rows_each).expect("fits");
                    let streams = vec![stream.as_str(); rows];
                    let revisions: Vec<i64> = (0..rows_each as i64).collect();
                    let ids: Vec<uuid::Uuid> = (0..rows).map(|_| uuid::Uuid::new_v4()).collect();
                    let types = vec!["BenchEvent"; rows];
                    let json = vec![true; rows];
                    let datas = vec![&data[..]; rows];
                    let metadata = vec![&b""[..]; rows];
                    let created = vec![0_i64; rows];
                    client
                        .execute(
                            &statement,
                            &[
                                &streams, &revisions, &ids, &types, &json, &datas, &metadata,
                                &created,
                            ],
                        )
                        .await
                        .expect("inserts");
                    insert += BASELINE_CLIENTS;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a baseline client ends");
    }
    (inserts * rows_each) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let single: u64 = args.next().map_or(20_000, |n| n.parse().expect("a count"));
    let batched: u64 = args.next().map_or(200_000, |n| n.parse().expect("a count"));
    let max_nodes: usize = args.next().map_or(3, |n| n.parse().expect("a count"));
    let schema = format!("strata_cluster_rate_{}", std::process::id());
    let mut nodes = Vec::new();
    for _ in 0..max_nodes {
        let config = PostgresConfig::new(url.clone()).with_schema(schema.clone());
        nodes.push(PostgresStore::open(config).await.expect("opens"));
    }
    connect(&url, &schema)
        .await
        .batch_execute(BASELINE_TABLE_SQL)
        .await
        .expect("creates the baseline table");
    let raw_single = raw_inserts(&url, &schema, single, 1).await;
    let raw_batched = raw_inserts(&url, &schema, batched, BASELINE_BATCH_ROWS).await;
    println!("raw single-row INSERTs, {BASELINE_CLIENTS} clients: {raw_single:.0} rows/s");
    println!(
        "raw {BASELINE_BATCH_ROWS}-row INSERTs, {BASELINE_CLIENTS} clients: {raw_batched:.0} rows/s"
    );
    for count in 1..=max_nodes {
        let (single_rate, single_waiting) =
            run_sampled(&url, &schema, &nodes[..count], SINGLE_TASKS, single, 1).await;
        let (batched_rate, batched_waiting) = run_sampled(
            &url,
            &schema,
            &nodes[..count],
            BATCH_TASKS,
            batched / BATCH_EVENTS,
            BATCH_EVENTS,
        )
        .await;
        println!(
            "{count} node(s): single-event appends, {SINGLE_TASKS} tasks: {single_rate:.0} events/s \
             ({:.2}x raw single-row, {single_waiting:.2} sessions waiting for the lock); \
             appends of {BATCH_EVENTS} events, {BATCH_TASKS} tasks: {batched_rate:.0} events/s \
             ({:.2}x raw {BASELINE_BATCH_ROWS}-row, {batched_waiting:.2} waiting)",
            single_rate / raw_single,
            batched_rate / raw_batched
        );
    }
    for node in &nodes {
        node.close().await;
    }
    drop(nodes);
    drop_schema(&url, &schema).await.expect("drops the schema");
}
