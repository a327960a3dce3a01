//! Resident memory of a store holding many streams: one event appended to each of
//! `streams` new streams, then the process's resident set read from `/proc/self/status`.
//! The figure covers the whole bench process, so it bounds the engine's share from above.

use std::sync::Arc;

use anyhow::Context;
use strata_core::{EventStore, ExpectedRevision, StreamName};
use strata_engine::Store;

use super::throughput::Throughput;
use super::workers;
use super::workload::Workload;
use crate::progress;

/// Enough concurrent writers for group commit to batch the one-event appends.
const WRITER_TASKS: u64 = 256;

pub(crate) struct MemoryUse {
    pub(crate) written: Throughput,
    /// Streams the store holds after the phase (every phase's streams, metadata included).
    pub(crate) streams_total: usize,
    /// Resident set of this process after the phase; `None` where `/proc` is unavailable.
    pub(crate) resident_bytes: Option<u64>,
}

/// Appends one event to each of `streams` streams named `bench-memory-N`.
pub(crate) async fn run(
    store: &Arc<Store>,
    workload: &Arc<Workload>,
    streams: u64,
) -> anyhow::Result<MemoryUse> {
    let bar = progress::bar("many streams", streams, "streams");
    let (task_store, task_workload, task_bar) =
        (Arc::clone(store), Arc::clone(workload), bar.clone());
    let started = std::time::Instant::now();
    workers::run(WRITER_TASKS, streams, move |index| {
        let (store, workload) = (Arc::clone(&task_store), Arc::clone(&task_workload));
        let bar = task_bar.clone();
        async move {
            let stream = StreamName::new(format!("bench-memory-{index}"))?;
            store
                .append(&stream, ExpectedRevision::NoStream, vec![workload.event()])
                .await
                .with_context(|| format!("the append creating {stream} failed"))?;
            bar.inc(1);
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(MemoryUse {
        written: Throughput {
            events: streams,
            elapsed,
        },
        streams_total: store.stream_count(),
        resident_bytes: resident_bytes(),
    })
}

/// `VmRSS` of this process, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
