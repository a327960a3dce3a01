//! Scavenge on PostgreSQL: rows deleted per second and bytes given back, beside the same
//! run's plain `INSERT` rate of rows of the same shape (docs/BENCHMARKS.md).
//!
//! `cargo run -p strata-postgres --example postgres_scavenge_bench -- [EVENTS] [PAYLOAD_BYTES]`
//! (default 1,000,000 events of 200 bytes, in streams of 100 with `$maxCount` 50: half
//! removable). Uses `STRATA_TEST_POSTGRES_URL` (default the local test database) and a
//! fresh schema, dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use strata_core::scavenge::ScavengeOptions;
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamMetadata, StreamName};
use strata_postgres::{PostgresConfig, PostgresScavenge, PostgresStore, Vacuum, drop_schema};

const STREAM_EVENTS: usize = 100;
const WRITERS: usize = 16;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let payload: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let url = std::env::var("STRATA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("strata_bench_{}", uuid::Uuid::new_v4().simple());
    let config = PostgresConfig::new(url.clone()).with_schema(schema.clone());
    let store = PostgresStore::open(config).await?;
    let streams = events / STREAM_EVENTS;

    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for stream in (writer..streams).step_by(WRITERS) {
                let name = StreamName::new(format!("bench-{stream}")).expect("valid");
                let batch = (0..STREAM_EVENTS)
                    .map(|i| ProposedEvent::binary("Filled", vec![(i % 251) as u8; payload]))
                    .collect();
                store
                    .append(&name, ExpectedRevision::NoStream, batch)
                    .await
                    .expect("appends");
                let metadata = StreamMetadata {
                    max_count: Some((STREAM_EVENTS / 2) as u64),
                    ..StreamMetadata::default()
                };
                store
                    .set_stream_metadata(&name, ExpectedRevision::Any, &metadata)
                    .await
                    .expect("sets metadata");
            }
        }));
    }
    for writer in writers {
        writer.await?;
    }
    let load = started.elapsed();
    println!(
        "loaded {} events in {} streams: {:.1} s, {:.0} events/s through the store",
        streams * STREAM_EVENTS,
        streams,
        load.as_secs_f64(),
        (streams * STREAM_EVENTS) as f64 / load.as_secs_f64()
    );

    let removable = streams * STREAM_EVENTS / 2;
    let baseline = insert_baseline(&url, &schema, removable, payload).await?;
    println!(
        "baseline: plain INSERT of {removable} rows of the same shape in batches of 10,000: \
         {:.1} s, {:.0} rows/s",
        baseline,
        removable as f64 / baseline
    );

    let report = store
        .scavenge_with(
            ScavengeOptions::default(),
            PostgresScavenge {
                vacuum: Vacuum::Plain,
                ..PostgresScavenge::default()
            },
        )
        .await?;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "scavenge (VACUUM plain): {} rows removed in {:.1} s ({:.0} rows/s, including the \
         VACUUM), {} payload bytes; tables {} → {} bytes",
        report.events_removed,
        secs,
        report.events_removed as f64 / secs,
        report.frame_bytes_removed,
        report.allocated_bytes_before,
        report.allocated_bytes_after
    );
    let full = store
        .scavenge_with(
            ScavengeOptions::default(),
            PostgresScavenge {
                vacuum: Vacuum::Full,
                ..PostgresScavenge::default()
            },
        )
        .await?;
    println!(
        "then VACUUM FULL: {:.1} s; tables {} → {} bytes ({:.0}% of the size before the \
         scavenge given back)",
        full.elapsed.as_secs_f64(),
        full.allocated_bytes_before,
        full.allocated_bytes_after,
        100.0 * (report.allocated_bytes_before - full.allocated_bytes_after) as f64
            / report.allocated_bytes_before as f64
    );
    store.close().await;
    drop(store);
    drop_schema(&url, &schema).await?;
    Ok(())
}

/// Seconds to INSERT `rows` rows shaped like `events` into a fresh table.
async fn insert_baseline(
    url: &str,
    schema: &str,
    rows: usize,
    payload: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let client = Arc::new(client);
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.baseline (position BIGINT PRIMARY KEY, stream TEXT NOT NULL,
                 revision BIGINT NOT NULL, event_id UUID NOT NULL, event_type TEXT NOT NULL,
                 is_json BOOLEAN NOT NULL, data BYTEA NOT NULL, metadata BYTEA NOT NULL,
                 created_nanos BIGINT NOT NULL);
             CREATE UNIQUE INDEX ON {schema}.baseline (stream, revision) INCLUDE (event_id);"
        ))
        .await?;
    let sql = format!(
        "INSERT INTO {schema}.baseline SELECT p, 'bench-' || (p / 100), p % 100,
             gen_random_uuid(), 'Filled', false, d, ''::bytea, 0
         FROM unnest($1::int8[], $2::bytea[]) AS r(p, d)"
    );
    let started = Instant::now();
    let mut position = 0i64;
    while (position as usize) < rows {
        let count = (rows - position as usize).min(10_000);
        let positions: Vec<i64> = (position..position + count as i64).collect();
        let data: Vec<Vec<u8>> = positions
            .iter()
            .map(|p| vec![(p % 251) as u8; payload])
            .collect();
        client.execute(&sql, &[&positions, &data]).await?;
        position += count as i64;
    }
    Ok(started.elapsed().as_secs_f64())
}
