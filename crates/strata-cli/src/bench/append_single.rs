//! Single-event appends from many concurrent tasks: what group commit is for.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use strata_core::{EventStore, ExpectedRevision};

use super::latency::LatencySummary;
use super::throughput::Throughput;
use super::workers;
use super::workload::Workload;
use crate::progress;

pub(crate) struct SingleAppends {
    pub(crate) throughput: Throughput,
    pub(crate) latency: LatencySummary,
}

/// Appends `events_total` events one per append from `tasks` concurrent tasks, each to a
/// stream spread over all the workload's streams.
pub(crate) async fn run<S: EventStore>(
    store: &Arc<S>,
    workload: &Arc<Workload>,
    events_total: u64,
    tasks: u64,
) -> anyhow::Result<SingleAppends> {
    let bar = progress::bar("single appends", events_total, "events");
    let (store, workload, task_bar) = (Arc::clone(store), Arc::clone(workload), bar.clone());
    let started = Instant::now();
    let latencies = workers::run(tasks, events_total, move |index| {
        let (store, workload, bar) = (Arc::clone(&store), Arc::clone(&workload), task_bar.clone());
        async move {
            let stream = workload.stream_scattered(index);
            store
                .append(stream, ExpectedRevision::Any, vec![workload.event()])
                .await
                .with_context(|| format!("a single-event append to {stream} failed"))?;
            bar.inc(1);
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(SingleAppends {
        throughput: Throughput {
            events: events_total,
            elapsed,
        },
        latency: LatencySummary::from_samples(latencies),
    })
}
