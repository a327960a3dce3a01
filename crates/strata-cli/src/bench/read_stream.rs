//! Whole-stream reads of the fixture's 100-event streams, timed one by one.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use strata_core::{EventStore, ReadStreamOptions};
use strata_engine::Store;

use super::latency::LatencySummary;
use super::stream_fixture::{STREAM_EVENTS, StreamFixture};
use super::throughput::Throughput;
use super::workers;
use super::workload;
use crate::progress;

pub(crate) struct StreamReads {
    pub(crate) throughput: Throughput,
    pub(crate) latency: LatencySummary,
}

/// Reads whole fixture streams forwards `reads` times from `tasks` concurrent tasks,
/// checking each read returns the whole stream.
pub(crate) async fn run(
    store: &Arc<Store>,
    fixture: &StreamFixture,
    reads: u64,
    tasks: u64,
) -> anyhow::Result<StreamReads> {
    let bar = progress::bar("stream reads", reads, "reads");
    let (store, streams, task_bar) = (Arc::clone(store), Arc::clone(&fixture.streams), bar.clone());
    let started = Instant::now();
    let latencies = workers::run(tasks, reads, move |index| {
        let (store, streams, bar) = (Arc::clone(&store), Arc::clone(&streams), task_bar.clone());
        async move {
            let stream = &streams[workload::slot(workload::scatter(index), streams.len())];
            let options = ReadStreamOptions::forwards().max_count(STREAM_EVENTS as usize);
            let slice = store
                .read_stream(stream, options)
                .await
                .with_context(|| format!("reading {stream} failed"))?;
            let events = slice.into_events().len() as u64;
            ensure!(
                events == STREAM_EVENTS,
                "reading {stream} returned {events} events but {STREAM_EVENTS} were appended: \
                 the engine lost or hid events; run `strata verify` on the data directory"
            );
            bar.inc(1);
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(StreamReads {
        throughput: Throughput {
            events: reads,
            elapsed,
        },
        latency: LatencySummary::from_samples(latencies),
    })
}
