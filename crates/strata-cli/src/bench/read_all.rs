//! A forwards read of the whole of `$all`, page by page.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use strata_core::{EventStore, ReadAllOptions, ReadFrom};
use strata_engine::Store;

use super::throughput::Throughput;
use crate::progress;

/// Events asked for per page.
const PAGE_EVENTS_MAX: usize = 4_096;

/// Reads `$all` from the start to its end and checks that it holds exactly the
/// `bench_events` events the bench appended (events of system streams aside).
pub(crate) async fn run(store: &Arc<Store>, bench_events: u64) -> anyhow::Result<Throughput> {
    let bar = progress::bar("read $all", bench_events, "events");
    let mut from = ReadFrom::Start;
    let (mut events_read, mut bench_events_read) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        let options = ReadAllOptions {
            from,
            max_count: PAGE_EVENTS_MAX,
            ..ReadAllOptions::forwards()
        };
        let page = store
            .read_all(options)
            .await
            .with_context(|| format!("reading $all after {events_read} events failed"))?;
        events_read += page.events.len() as u64;
        bench_events_read += page
            .events
            .iter()
            .filter(|event| !event.stream.is_system())
            .count() as u64;
        bar.inc(page.events.len() as u64);
        if page.is_end {
            break;
        }
        if page.events.is_empty() && ReadFrom::At(page.next_position) == from {
            bail!(
                "reading $all stalls at position {}: the engine returned an empty page that is not the end",
                page.next_position
            );
        }
        from = ReadFrom::At(page.next_position);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    ensure!(
        bench_events_read == bench_events,
        "$all holds {bench_events_read} bench events but {bench_events} were appended: the engine \
         lost or duplicated events; run `strata verify` on the data directory"
    );
    Ok(Throughput {
        events: events_read,
        elapsed,
    })
}
