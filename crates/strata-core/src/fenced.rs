//! A store wrapper for leader-only jobs: every write first checks that this node still
//! leads within its lease ([`Leadership::fence`]), so a job that has not yet been told it
//! lost the leadership cannot write any more. Reads pass through.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::leadership::Leadership;
use crate::system_streams::{IndexKey, IndexSlice};
use crate::{
    AllSlice, AppendPart, AppendResult, DeleteResult, Error, EventStore, ExpectedRevision, Limits,
    MultiAppendResult, Position, ProposedEvent, ReadAllOptions, ReadStreamOptions, RecordedEvent,
    Result, Revision, StreamMetadata, StreamName, StreamSlice, StreamState, VersionedMetadata,
    WindowSlice,
};

/// `S` whose writes are refused with [`Error::NotLeader`] unless this node leads.
pub struct FencedStore<S: ?Sized> {
    inner: Arc<S>,
    leadership: Arc<Leadership>,
}

impl<S: EventStore + ?Sized> FencedStore<S> {
    pub fn new(inner: Arc<S>, leadership: Arc<Leadership>) -> Self {
        Self { inner, leadership }
    }

    fn check(&self) -> Result<()> {
        match self.leadership.fence() {
            Some(_) => Ok(()),
            None => Err(Error::NotLeader {
                leader: self.leadership.leader(),
            }),
        }
    }
}

#[async_trait]
impl<S: EventStore + ?Sized> EventStore for FencedStore<S> {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.check()?;
        self.inner.append(stream, expected, events).await
    }

    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        self.check()?;
        self.inner.append_multi(parts).await
    }

    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: crate::dcb::AppendCondition,
    ) -> Result<MultiAppendResult> {
        self.check()?;
        self.inner.append_conditional(parts, condition).await
    }

    async fn read_query(
        &self,
        query: &crate::dcb::Query,
        after: Option<crate::types::Position>,
        max_count: usize,
    ) -> Result<crate::dcb::QuerySlice> {
        self.inner.read_query(query, after, max_count).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        self.inner.read_stream(stream, options).await
    }

    async fn read_stream_resolved(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<crate::system_streams::ResolvedSlice> {
        self.inner.read_stream_resolved(stream, options).await
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        self.inner.read_all(options).await
    }

    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        self.inner.read_all_window(options, examined_max).await
    }

    async fn read_index(&self, key: &IndexKey, options: ReadStreamOptions) -> Result<IndexSlice> {
        self.inner.read_index(key, options).await
    }

    async fn read_tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.inner.read_tombstones(after, up_to, max).await
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        self.inner.stream_state(stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.check()?;
        self.inner.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.check()?;
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
        self.check()?;
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
