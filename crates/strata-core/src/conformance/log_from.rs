//! [`LogFrom`]: a store seen from a position of its log on.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::Result;
use crate::filter::WindowSlice;
use crate::limits::Limits;
use crate::metadata::{StreamMetadata, VersionedMetadata};
use crate::multi_append::{AppendPart, MultiAppendResult};
use crate::store::{
    AllSlice, EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice,
};
use crate::system_streams::{IndexKey, IndexSlice, IndexedEvent};
use crate::types::{
    AppendResult, DeleteResult, Direction, ExpectedRevision, Position, ProposedEvent, Revision,
    StreamName, StreamState,
};

/// A store seen from `start` on: `$all` and the index streams (`$streams`, `$ce-…`, …)
/// leave out what the log held before, and index revisions count from there. The cases of
/// the kit are written for an empty store; a server's new store is not empty (it begins
/// with the events that create its built-in users, as KurrentDB's does), so a backend over
/// a server hands the cases its store seen from where it was handed over. Positions are
/// the store's own; streams, appends and deletes are the store's.
pub struct LogFrom<S> {
    inner: Arc<S>,
    start: Position,
}

impl<S: EventStore> LogFrom<S> {
    /// `inner` seen from just after its last event (from its beginning when it is empty).
    /// A forwards `$all` read then asks `inner` from just after that event, which `inner`
    /// must take (as a position a read that reached the end returns).
    ///
    /// # Errors
    /// Storage errors while finding the last event.
    pub async fn at_end(inner: Arc<S>) -> Result<Self> {
        let start = match inner.last_position().await? {
            Some(last) => Position(last.0 + 1),
            None => Position(0),
        };
        Ok(Self { inner, start })
    }

    /// `inner` seen from `start`, a position `inner` reads from.
    pub fn from_position(inner: Arc<S>, start: Position) -> Self {
        Self { inner, start }
    }

    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    pub fn start(&self) -> Position {
        self.start
    }

    fn visible(&self, position: Position) -> bool {
        position.0 >= self.start.0
    }

    /// A backwards read that began at or after `start` ends where it crosses it.
    fn cut_backwards(&self, mut slice: AllSlice) -> AllSlice {
        let before = slice.events.len();
        slice.events.retain(|event| self.visible(event.position));
        if slice.events.len() < before || !self.visible(slice.next_position) {
            slice.is_end = true;
            slice.next_position = self.start;
        }
        if slice
            .last_examined
            .is_some_and(|examined| !self.visible(examined))
        {
            slice.last_examined = slice.events.last().map(|event| event.position);
        }
        slice
    }

    fn empty_end(&self) -> AllSlice {
        AllSlice {
            events: Vec::new(),
            next_position: self.start,
            is_end: true,
            last_examined: None,
        }
    }

    /// Where a read of `$all` asks `inner` from, or `None` when it reads only what is
    /// out of sight (backwards from before `start`).
    fn clamp(&self, options: &ReadAllOptions) -> Option<ReadAllOptions> {
        let mut options = options.clone();
        match (options.direction, options.from) {
            (Direction::Forwards, ReadFrom::Start) => options.from = ReadFrom::At(self.start),
            (Direction::Forwards, ReadFrom::At(at)) if !self.visible(at) => {
                options.from = ReadFrom::At(self.start);
            }
            (Direction::Backwards, ReadFrom::Start) => return None,
            (Direction::Backwards, ReadFrom::At(at)) if !self.visible(at) => return None,
            _ => {}
        }
        Some(options)
    }

    /// The entries of an index from `start` on, numbered from 0 again.
    async fn index_entries(&self, key: &IndexKey) -> Result<Vec<IndexedEvent>> {
        let slice = self
            .inner
            .read_index(key, ReadStreamOptions::forwards())
            .await?;
        Ok(slice
            .events
            .into_iter()
            .filter(|entry| self.visible(entry.event.position))
            .enumerate()
            .map(|(revision, mut entry)| {
                entry.index_revision = revision as u64;
                entry
            })
            .collect())
    }
}

/// The part of `entries` (one per revision, from 0) that `options` read.
fn select<T>(mut entries: Vec<T>, options: ReadStreamOptions) -> Vec<T> {
    let len = entries.len() as u64;
    match options.direction {
        Direction::Forwards => {
            let from = match options.from {
                ReadFrom::Start => 0,
                ReadFrom::End => len,
                ReadFrom::At(revision) => revision.0.min(len),
            };
            entries
                .into_iter()
                .skip(from as usize)
                .take(options.max_count)
                .collect()
        }
        Direction::Backwards => {
            let end = match options.from {
                ReadFrom::Start => len.min(1),
                ReadFrom::End => len,
                ReadFrom::At(revision) => revision.0.saturating_add(1).min(len),
            };
            entries.truncate(end as usize);
            entries.into_iter().rev().take(options.max_count).collect()
        }
    }
}

#[async_trait]
impl<S: EventStore> EventStore for LogFrom<S> {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.inner.append(stream, expected, events).await
    }

    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        self.inner.append_multi(parts).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        if IndexKey::of_stream(stream.as_str()).is_none() {
            return self.inner.read_stream(stream, options).await;
        }
        let StreamSlice::Found { events, .. } = self
            .inner
            .read_stream(stream, ReadStreamOptions::forwards())
            .await?
        else {
            return Ok(StreamSlice::NotFound);
        };
        let links: Vec<_> = events
            .into_iter()
            .filter(|link| self.visible(link.position))
            .enumerate()
            .map(|(revision, mut link)| {
                link.revision = Revision(revision as u64);
                link
            })
            .collect();
        let Some(last) = links.last() else {
            return Ok(StreamSlice::NotFound);
        };
        let last_revision = last.revision;
        Ok(StreamSlice::Found {
            events: select(links, options),
            last_revision,
        })
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let Some(clamped) = self.clamp(&options) else {
            return Ok(self.empty_end());
        };
        let slice = self.inner.read_all(clamped).await?;
        Ok(match options.direction {
            Direction::Forwards => slice,
            Direction::Backwards => self.cut_backwards(slice),
        })
    }

    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        let Some(clamped) = self.clamp(&options) else {
            return Ok(WindowSlice {
                slice: self.empty_end(),
                examined_count: 0,
                passed_count: 0,
            });
        };
        let mut window = self.inner.read_all_window(clamped, examined_max).await?;
        if options.direction == Direction::Backwards {
            window.slice = self.cut_backwards(window.slice);
        }
        Ok(window)
    }

    async fn read_index(&self, key: &IndexKey, options: ReadStreamOptions) -> Result<IndexSlice> {
        let entries = self.index_entries(key).await?;
        let last_revision = entries.last().map(|entry| entry.index_revision);
        Ok(IndexSlice {
            events: select(entries, options),
            last_revision,
        })
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
        Ok(self
            .inner
            .last_position()
            .await?
            .filter(|last| self.visible(*last)))
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

#[cfg(test)]
mod tests {
    use super::select;
    use crate::store::{ReadFrom, ReadStreamOptions};
    use crate::types::Revision;

    #[test]
    fn select_reads_both_ways_from_every_kind_of_start() {
        let entries = || vec![0, 1, 2, 3];
        assert_eq!(
            select(entries(), ReadStreamOptions::forwards()),
            [0, 1, 2, 3]
        );
        let from_two = ReadStreamOptions {
            from: ReadFrom::At(Revision(2)),
            ..ReadStreamOptions::forwards()
        };
        assert_eq!(select(entries(), from_two), [2, 3]);
        assert!(
            select(
                entries(),
                ReadStreamOptions {
                    from: ReadFrom::End,
                    ..ReadStreamOptions::forwards()
                }
            )
            .is_empty()
        );
        assert_eq!(
            select(entries(), ReadStreamOptions::backwards().max_count(2)),
            [3, 2]
        );
        let back_from_one = ReadStreamOptions {
            from: ReadFrom::At(Revision(1)),
            ..ReadStreamOptions::backwards()
        };
        assert_eq!(select(entries(), back_from_one), [1, 0]);
        let past_the_end = ReadStreamOptions {
            from: ReadFrom::At(Revision(9)),
            ..ReadStreamOptions::backwards()
        };
        assert_eq!(select(entries(), past_the_end), [3, 2, 1, 0]);
    }
}
