//! Batched appends: many events per append, streams taken round-robin.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use strata_core::{EventStore, ExpectedRevision};

use super::throughput::Throughput;
use super::workers;
use super::workload::Workload;
use crate::progress;

/// Appends `events_total` events in appends of `batch_events` from `tasks` concurrent tasks.
pub(crate) async fn run<S: EventStore>(
    store: &Arc<S>,
    workload: &Arc<Workload>,
    events_total: u64,
    batch_events: u64,
    tasks: u64,
) -> anyhow::Result<Throughput> {
    let appends_total = events_total.div_ceil(batch_events);
    let bar = progress::bar("batched appends", events_total, "events");
    let (store, workload, task_bar) = (Arc::clone(store), Arc::clone(workload), bar.clone());
    let started = Instant::now();
    workers::run(tasks, appends_total, move |index| {
        let (store, workload, bar) = (Arc::clone(&store), Arc::clone(&workload), task_bar.clone());
        async move {
            let count = batch_events.min(events_total - index * batch_events);
            let stream = workload.stream_round_robin(index);
            store
                .append(stream, ExpectedRevision::Any, workload.events(count))
                .await
                .with_context(|| {
                    format!("a batched append of {count} events to {stream} failed")
                })?;
            bar.inc(count);
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Throughput {
        events: events_total,
        elapsed,
    })
}
