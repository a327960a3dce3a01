//! Closing the store and timing how long opening it again takes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use strata_core::EventStore;
use strata_engine::{Config, Store};

pub(crate) struct Reopen {
    pub(crate) elapsed: Duration,
    /// Events the reopened store holds.
    pub(crate) events: u64,
}

/// Closes `store`, reopens the same directory, checks that the log ends where it did and
/// holds the `events_expected` events appended, and closes it again.
pub(crate) async fn run(
    store: Arc<Store>,
    dir: &Path,
    config: Config,
    events_expected: u64,
) -> anyhow::Result<Reopen> {
    let last_before = store
        .last_position()
        .await
        .context("reading the log's last position before closing failed")?;
    store.close();
    drop(store);
    let started = Instant::now();
    let reopened = super::open_store(dir, config)?;
    let elapsed = started.elapsed();
    let last_after = reopened
        .last_position()
        .await
        .context("reading the log's last position after reopening failed")?;
    let events = reopened.event_count();
    reopened.close();
    ensure!(
        events == events_expected,
        "after reopening, the store holds {events} events instead of {events_expected}: the \
         engine lost events or found extra ones; run `strata verify` on the data directory"
    );
    ensure!(
        last_before == last_after,
        "after reopening, the log ends at {last_after:?} instead of {last_before:?}: the engine \
         lost events or found extra ones; run `strata verify` on the data directory"
    );
    Ok(Reopen { elapsed, events })
}
