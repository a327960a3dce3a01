//! A store wrapper that counts what every front end reads and writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use strata_core::system_streams::{IndexKey, IndexSlice, ResolvedSlice};
use strata_core::{
    AllSlice, AppendPart, AppendResult, DeleteResult, Error, EventStore, ExpectedRevision, Limits,
    MultiAppendResult, Position, ProposedEvent, ReadAllOptions, ReadStreamOptions, RecordedEvent,
    Result, Revision, StreamMetadata, StreamName, StreamSlice, StreamState, VersionedMetadata,
    WindowSlice, event_bytes,
};
use tokio::sync::watch;

use crate::kept_series::IoActivity;
use crate::metrics::Metrics;

/// `S`, counting events and bytes read and written into [`Metrics`]. Every call goes to
/// `S`, its own overrides included.
pub struct MeteredStore<S: ?Sized> {
    inner: Arc<S>,
    metrics: Arc<Metrics>,
}

impl<S: EventStore + ?Sized> MeteredStore<S> {
    pub fn new(inner: Arc<S>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn count_read(&self, events: &[strata_core::RecordedEvent]) {
        let bytes = events.iter().map(event_bytes).sum();
        self.metrics.count_io(IoActivity::Read, events.len(), bytes);
    }

    /// Records an append (one stream or several) of `count` events and `bytes` that took
    /// since `started`, and whether the store can still write.
    fn observe_append<T>(&self, result: &Result<T>, started: Instant, count: usize, bytes: usize) {
        match result {
            Ok(_) => {
                self.metrics.writable.store(true, Ordering::Relaxed);
                self.metrics
                    .append_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.append_events.observe(count as f64);
                self.metrics.count_io(IoActivity::Written, count, bytes);
            }
            Err(error) if unwritable(error) => {
                self.metrics.writable.store(false, Ordering::Relaxed)
            }
            Err(_) => {}
        }
    }
}

/// Whether an append error means the store cannot write until something is done.
fn unwritable(error: &Error) -> bool {
    matches!(error, Error::Poisoned { .. } | Error::Closed)
}

#[async_trait]
impl<S: EventStore + ?Sized> EventStore for MeteredStore<S> {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        let count = events.len();
        let bytes: usize = events
            .iter()
            .map(|event| event.size_bytes() + stream.as_str().len())
            .sum();
        let started = Instant::now();
        let result = self.inner.append(stream, expected, events).await;
        self.observe_append(&result, started, count, bytes);
        result
    }

    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        let count: usize = parts.iter().map(|part| part.events.len()).sum();
        let bytes: usize = parts
            .iter()
            .flat_map(|part| {
                part.events
                    .iter()
                    .map(|event| event.size_bytes() + part.stream.as_str().len())
            })
            .sum();
        let started = Instant::now();
        let result = self.inner.append_multi(parts).await;
        self.observe_append(&result, started, count, bytes);
        result
    }

    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: strata_core::AppendCondition,
    ) -> Result<MultiAppendResult> {
        let count: usize = parts.iter().map(|part| part.events.len()).sum();
        let bytes: usize = parts
            .iter()
            .flat_map(|part| {
                part.events
                    .iter()
                    .map(|event| event.size_bytes() + part.stream.as_str().len())
            })
            .sum();
        let started = Instant::now();
        let result = self.inner.append_conditional(parts, condition).await;
        self.observe_append(&result, started, count, bytes);
        result
    }

    async fn read_query(
        &self,
        query: &strata_core::Query,
        after: Option<strata_core::Position>,
        max_count: usize,
    ) -> Result<strata_core::QuerySlice> {
        let slice = self.inner.read_query(query, after, max_count).await?;
        self.count_read(&slice.events);
        Ok(slice)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        let slice = self.inner.read_stream(stream, options).await?;
        if let StreamSlice::Found { events, .. } = &slice {
            self.count_read(events);
        }
        Ok(slice)
    }

    /// Counts each link and each event it resolved to, as reading then resolving would.
    async fn read_stream_resolved(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<ResolvedSlice> {
        let slice = self.inner.read_stream_resolved(stream, options).await?;
        if let ResolvedSlice::Found { events, .. } = &slice {
            let read = events
                .iter()
                .flat_map(|resolved| resolved.link.iter().chain(&resolved.event));
            let (count, bytes) = read.fold((0, 0), |(count, bytes), event| {
                (count + 1, bytes + event_bytes(event))
            });
            self.metrics.count_io(IoActivity::Read, count, bytes);
        }
        Ok(slice)
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let slice = self.inner.read_all(options).await?;
        self.count_read(&slice.events);
        Ok(slice)
    }

    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        let window = self.inner.read_all_window(options, examined_max).await?;
        self.count_read(&window.slice.events);
        Ok(window)
    }

    async fn read_index(&self, key: &IndexKey, options: ReadStreamOptions) -> Result<IndexSlice> {
        let slice = self.inner.read_index(key, options).await?;
        let bytes = slice
            .events
            .iter()
            .map(|indexed| event_bytes(&indexed.event))
            .sum();
        self.metrics
            .count_io(IoActivity::Read, slice.events.len(), bytes);
        Ok(slice)
    }

    async fn read_tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let tombstones = self.inner.read_tombstones(after, up_to, max).await?;
        self.count_read(&tombstones);
        Ok(tombstones)
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        self.inner.stream_state(stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.inner.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.inner.tombstone_stream(stream, expected).await
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        self.inner.last_position().await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }

    async fn stream_metadata(&self, stream: &StreamName) -> Result<VersionedMetadata> {
        self.inner.stream_metadata(stream).await
    }

    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: &StreamMetadata,
    ) -> Result<AppendResult> {
        self.inner
            .set_stream_metadata(stream, expected, metadata)
            .await
    }

    async fn check_expected_revision(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Option<Revision>> {
        self.inner.check_expected_revision(stream, expected).await
    }
}
