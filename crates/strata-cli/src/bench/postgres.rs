//! `strata bench --store postgres://...`: Strata on PostgreSQL beside the database's own
//! speed, measured in the same run on the same database: single-row INSERTs (one commit
//! each) from 8 clients, and 100-row INSERTs, into a table shaped like Strata's `events`.
//! Everything runs in a fresh schema, dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use strata_postgres::{PostgresConfig, PostgresStore, drop_schema};
use tokio_postgres::{Client, NoTls};

use super::BenchArgs;
use super::throughput::Throughput;
use super::workload::Workload;
use super::{append_batched, append_single};

/// Clients of the raw baselines.
const BASELINE_CLIENTS: u64 = 8;
/// Rows per INSERT of the batch baseline.
const BASELINE_BATCH_ROWS: u64 = 100;

/// The baseline's table: the columns and indexes of Strata's `events`.
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

pub(crate) async fn run(args: &BenchArgs, url: &str) -> anyhow::Result<()> {
    let schema = format!("strata_bench_{}", std::process::id());
    let outcome = run_in_schema(args, url, &schema).await;
    drop_schema(url, &schema)
        .await
        .with_context(|| format!("the bench finished but schema {schema} could not be dropped"))?;
    let report = outcome?;
    report.print(args);
    Ok(())
}

struct PostgresReport {
    raw_single: Throughput,
    raw_batched: Throughput,
    /// Single-event appends with one transaction each: the design without group commit.
    ungrouped: Throughput,
    single: Throughput,
    batched: Throughput,
    single_tasks: u64,
}

impl PostgresReport {
    fn print(&self, args: &BenchArgs) {
        let raw_single = self.raw_single.events_per_sec();
        let raw_batched = self.raw_batched.events_per_sec();
        let single = self.single.events_per_sec();
        let ungrouped = self.ungrouped.events_per_sec();
        let batched = self.batched.events_per_sec();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "raw_single_row_inserts_per_sec": raw_single,
                    "raw_batch_insert_rows_per_sec": raw_batched,
                    "strata_single_appends_per_sec": single,
                    "strata_single_appends_without_group_commit_per_sec": ungrouped,
                    "strata_batched_events_per_sec": batched,
                    "single_tasks": self.single_tasks,
                    "batch_events": args.batch_events,
                    "event_bytes": args.event_bytes,
                })
            );
            return;
        }
        println!(
            "strata bench --store postgres (event body {} B)",
            args.event_bytes
        );
        println!(
            "  raw single-row INSERTs, {BASELINE_CLIENTS} clients: {raw_single:>12.0} rows/s ({} rows)",
            self.raw_single.events
        );
        println!(
            "  raw {BASELINE_BATCH_ROWS}-row INSERTs, {BASELINE_CLIENTS} clients: {raw_batched:>12.0} rows/s ({} rows)",
            self.raw_batched.events
        );
        println!(
            "  strata single-event appends, {} tasks, one transaction each: {ungrouped:>9.0} events/s ({} events; {:.2}x raw single-row)",
            self.single_tasks,
            self.ungrouped.events,
            ungrouped / raw_single.max(f64::MIN_POSITIVE)
        );
        println!(
            "  strata single-event appends, {} tasks: {single:>9.0} events/s ({} events; {:.2}x raw single-row)",
            self.single_tasks,
            self.single.events,
            single / raw_single.max(f64::MIN_POSITIVE)
        );
        println!(
            "  strata appends of {} events, {} tasks: {batched:>9.0} events/s ({} events; {:.2}x raw batches)",
            args.batch_events,
            args.batched_tasks,
            self.batched.events,
            batched / raw_batched.max(f64::MIN_POSITIVE)
        );
    }
}

async fn run_in_schema(
    args: &BenchArgs,
    url: &str,
    schema: &str,
) -> anyhow::Result<PostgresReport> {
    let config = PostgresConfig::new(url).with_schema(schema);
    let store = PostgresStore::open(config)
        .await
        .with_context(|| format!("cannot open a store in schema {schema} of {url}"))?;
    let client = connect(url, schema).await?;
    client
        .batch_execute(BASELINE_TABLE_SQL)
        .await
        .context("cannot create the baseline table")?;
    let workload = Arc::new(Workload::new(args.streams, args.event_bytes)?);
    let raw_single = raw_inserts(url, schema, &workload, args.events_single, 1).await?;
    let raw_batched = raw_inserts(
        url,
        schema,
        &workload,
        args.events_batched,
        BASELINE_BATCH_ROWS,
    )
    .await?;
    let single_tasks = args.single_tasks.unwrap_or(64);
    let ungrouped = ungrouped_appends(args, url, schema, &workload, single_tasks).await?;
    let single = append_single::run(&store, &workload, args.events_single, single_tasks)
        .await?
        .throughput;
    let batched = append_batched::run(
        &store,
        &workload,
        args.events_batched,
        args.batch_events,
        args.batched_tasks,
    )
    .await?;
    store.close().await;
    Ok(PostgresReport {
        raw_single,
        raw_batched,
        ungrouped,
        single,
        batched,
        single_tasks,
    })
}

/// Single-event appends through a second store (another node on the same schema) whose
/// writer commits every append on its own: what group commit saves.
async fn ungrouped_appends(
    args: &BenchArgs,
    url: &str,
    schema: &str,
    workload: &Arc<Workload>,
    tasks: u64,
) -> anyhow::Result<Throughput> {
    let mut config = PostgresConfig::new(url).with_schema(schema);
    config.group_events_max = 1;
    let store = PostgresStore::open(config)
        .await
        .with_context(|| format!("cannot open a second store in schema {schema}"))?;
    let events = (args.events_single / 4).max(1);
    let throughput = append_single::run(&store, workload, events, tasks)
        .await?
        .throughput;
    store.close().await;
    Ok(throughput)
}

async fn connect(url: &str, schema: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .context("cannot set the search path")?;
    Ok(client)
}

/// `rows_total` rows in INSERTs of `rows_per_insert` rows (each its own commit) from
/// [`BASELINE_CLIENTS`] clients.
async fn raw_inserts(
    url: &str,
    schema: &str,
    workload: &Arc<Workload>,
    rows_total: u64,
    rows_per_insert: u64,
) -> anyhow::Result<Throughput> {
    let inserts_total = rows_total.div_ceil(rows_per_insert);
    let mut clients = Vec::new();
    for _ in 0..BASELINE_CLIENTS {
        clients.push(connect(url, schema).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client_index, client) in clients.into_iter().enumerate() {
        let workload = workload.clone();
        let client_index = client_index as u64;
        tasks.push(tokio::spawn(async move {
            let statement = client.prepare(BASELINE_INSERT_SQL).await?;
            let mut insert = client_index;
            while insert < inserts_total {
                let stream = format!("baseline{rows_per_insert}-{client_index}-{insert}");
                let events = workload.events(rows_per_insert);
                let streams: Vec<&str> = events.iter().map(|_| stream.as_str()).collect();
                let revisions: Vec<i64> = (0..rows_per_insert as i64).collect();
                let ids: Vec<uuid::Uuid> = events.iter().map(|event| event.id.0).collect();
                let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                let json: Vec<bool> = events.iter().map(|_| true).collect();
                let data: Vec<&[u8]> = events.iter().map(|e| &e.data[..]).collect();
                let metadata: Vec<&[u8]> = events.iter().map(|e| &e.metadata[..]).collect();
                let created: Vec<i64> = events.iter().map(|_| 0).collect();
                client
                    .execute(
                        &statement,
                        &[
                            &streams, &revisions, &ids, &types, &json, &data, &metadata, &created,
                        ],
                    )
                    .await?;
                insert += BASELINE_CLIENTS;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for task in tasks {
        task.await
            .context("a baseline client panicked")?
            .context("a baseline INSERT failed")?;
    }
    Ok(Throughput {
        events: inserts_total * rows_per_insert,
        elapsed: started.elapsed(),
    })
}
