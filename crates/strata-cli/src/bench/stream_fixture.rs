//! The streams the stream-read phase reads: each written by one append of exactly
//! [`STREAM_EVENTS`] events, under names no other phase uses.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use strata_core::{EventStore, ExpectedRevision, StreamName};
use strata_engine::Store;

use super::throughput::Throughput;
use super::workers;
use super::workload::{self, Workload};
use crate::progress;

/// Events in each fixture stream.
pub(crate) const STREAM_EVENTS: u64 = 100;

/// Enough concurrent writers for group commit to batch them, few enough to stay cheap.
const WRITER_TASKS: u64 = 16;

pub(crate) struct StreamFixture {
    pub(crate) streams: Arc<Vec<StreamName>>,
    pub(crate) written: Throughput,
}

/// Writes `stream_count` streams of [`STREAM_EVENTS`] events named `bench-read-N`.
pub(crate) async fn write(
    store: &Arc<Store>,
    workload: &Arc<Workload>,
    stream_count: u64,
) -> anyhow::Result<StreamFixture> {
    let streams = Arc::new(workload::stream_names("bench-read", stream_count)?);
    let bar = progress::bar("stream fixture", stream_count, "streams");
    let (store, workload) = (Arc::clone(store), Arc::clone(workload));
    let (task_streams, task_bar) = (Arc::clone(&streams), bar.clone());
    let started = Instant::now();
    workers::run(WRITER_TASKS, stream_count, move |index| {
        let (store, workload) = (Arc::clone(&store), Arc::clone(&workload));
        let (streams, bar) = (Arc::clone(&task_streams), task_bar.clone());
        async move {
            let stream = &streams[workload::slot(index, streams.len())];
            store
                .append(
                    stream,
                    ExpectedRevision::NoStream,
                    workload.events(STREAM_EVENTS),
                )
                .await
                .with_context(|| {
                    format!("writing the {STREAM_EVENTS} events of {stream} failed")
                })?;
            bar.inc(1);
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(StreamFixture {
        streams,
        written: Throughput {
            events: stream_count * STREAM_EVENTS,
            elapsed,
        },
    })
}
