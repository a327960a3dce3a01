//! An `EventStore` as one caller sees it: each operation is authorised first, and reads of
//! `$all` leave out the events of streams the caller may not read.

use std::sync::Arc;

use async_trait::async_trait;
use strata_core::{
    AllSlice, AppendPart, AppendResult, DeleteResult, EventStore, ExpectedRevision, Limits,
    MultiAppendResult, Position, ProposedEvent, ReadAllOptions, ReadStreamOptions, Result,
    Revision, StreamMetadata, StreamName, StreamSlice, StreamState, VersionedMetadata, WindowSlice,
};
use tokio::sync::watch;

use crate::acl::StreamOperation;
use crate::principal::Principal;
use crate::security::{ALL_STREAM, Security};

pub(crate) struct SecuredStore {
    inner: Arc<dyn EventStore>,
    security: Arc<Security>,
    principal: Principal,
}

impl SecuredStore {
    pub(crate) fn new(
        inner: Arc<dyn EventStore>,
        security: Arc<Security>,
        principal: Principal,
    ) -> Self {
        Self {
            inner,
            security,
            principal,
        }
    }

    async fn check(&self, operation: StreamOperation, stream: &StreamName) -> Result<()> {
        Ok(self
            .security
            .authorize(&self.principal, operation, stream)
            .await?)
    }

    async fn check_all(&self) -> Result<()> {
        let all = StreamName::new(ALL_STREAM)?;
        self.check(StreamOperation::Read, &all).await
    }

    async fn readable(&self, slice: &mut AllSlice) -> Result<()> {
        let events = std::mem::take(&mut slice.events);
        slice.events = self
            .security
            .readable_events(&self.principal, events)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for SecuredStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.check(StreamOperation::Write, stream).await?;
        self.inner.append(stream, expected, events).await
    }

    /// Each writing part needs write access to its stream, each check read access (it
    /// tells the stream's state).
    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        for part in &parts {
            let operation = if part.is_check() {
                StreamOperation::Read
            } else {
                StreamOperation::Write
            };
            self.check(operation, &part.stream).await?;
        }
        self.inner.append_multi(parts).await
    }

    /// As a multi-stream append, and read access to `$all`: the condition tells whether
    /// events of any stream match.
    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: strata_core::AppendCondition,
    ) -> Result<MultiAppendResult> {
        self.check_all().await?;
        for part in &parts {
            let operation = if part.is_check() {
                StreamOperation::Read
            } else {
                StreamOperation::Write
            };
            self.check(operation, &part.stream).await?;
        }
        self.inner.append_conditional(parts, condition).await
    }

    /// Read access to `$all`, and only the events the principal may read.
    async fn read_query(
        &self,
        query: &strata_core::Query,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<strata_core::QuerySlice> {
        self.check_all().await?;
        let mut slice = self.inner.read_query(query, after, max_count).await?;
        let events = std::mem::take(&mut slice.events);
        slice.events = self
            .security
            .readable_events(&self.principal, events)
            .await?;
        Ok(slice)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        self.check(StreamOperation::Read, stream).await?;
        self.inner.read_stream(stream, options).await
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        self.check_all().await?;
        let mut slice = self.inner.read_all(options).await?;
        self.readable(&mut slice).await?;
        Ok(slice)
    }

    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        self.check_all().await?;
        let mut window = self.inner.read_all_window(options, examined_max).await?;
        self.readable(&mut window.slice).await?;
        Ok(window)
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        self.inner.stream_state(stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.check(StreamOperation::Delete, stream).await?;
        self.inner.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.check(StreamOperation::Delete, stream).await?;
        self.inner.tombstone_stream(stream, expected).await
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        self.inner.last_position().await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }

    async fn stream_metadata(&self, stream: &StreamName) -> Result<VersionedMetadata> {
        self.check(StreamOperation::MetadataRead, stream).await?;
        self.inner.stream_metadata(stream).await
    }

    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: &StreamMetadata,
    ) -> Result<AppendResult> {
        self.check(StreamOperation::MetadataWrite, stream).await?;
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
