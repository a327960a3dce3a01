//! Which revisions a stream read visits: `$tb`, `$maxCount` and `$maxAge` bound the range
//! before the read's count is applied, in either direction.

use std::ops::Range;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::metadata::StreamMetadata;
use crate::store::{ReadFrom, ReadStreamOptions};
use crate::types::{Direction, RecordedEvent, Revision, StreamName, Timestamp};

use super::StreamHead;

/// Events a metadata stream `$$S` shows: its last one, as KurrentDB's metastreams.
const METADATA_STREAM_MAX_COUNT: u64 = 1;

/// A stream read, planned before any event is fetched.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRead {
    last_revision: u64,
    metadata: Arc<StreamMetadata>,
    direction: Direction,
    count: u64,
    /// The visible revisions within the read's reach (ascending), before the count.
    window: Range<u64>,
}

/// Plans a read of `stream` whose head is `head`; `described_head` is the head of the
/// stream `stream` describes when it is a metadata stream `$$S`. `None` when the stream
/// reads as not found (no events, or soft-deleted).
///
/// # Errors
/// [`Error::StreamDeleted`] (naming `stream`, as KurrentDB does) for a tombstoned stream,
/// and for `$$S` of a tombstoned `S`.
pub fn plan_stream_read(
    stream: &StreamName,
    head: &StreamHead,
    described_head: Option<&StreamHead>,
    options: &ReadStreamOptions,
) -> Result<Option<StreamRead>> {
    let described_tombstoned =
        described_head.is_some_and(|described_head| described_head.tombstoned);
    if head.tombstoned || (stream.is_metadata_stream() && described_tombstoned) {
        return Err(Error::StreamDeleted {
            stream: stream.clone(),
        });
    }
    let Some(last) = head.last_revision else {
        return Ok(None);
    };
    let metadata = if stream.is_metadata_stream() {
        Arc::new(StreamMetadata {
            max_count: Some(METADATA_STREAM_MAX_COUNT),
            ..StreamMetadata::default()
        })
    } else {
        head.metadata.clone().unwrap_or_default()
    };
    if metadata.is_soft_deleted() {
        return Ok(None);
    }
    let floor = metadata.first_visible_revision(Revision(last));
    let window = match options.direction {
        Direction::Forwards => {
            let from = match options.from {
                ReadFrom::Start => 0,
                ReadFrom::End => last.saturating_add(1),
                ReadFrom::At(revision) => revision.0,
            };
            let end = last.saturating_add(1);
            from.max(floor).min(end)..end
        }
        Direction::Backwards => {
            let from = match options.from {
                ReadFrom::Start => 0,
                ReadFrom::End => last,
                ReadFrom::At(revision) => revision.0.min(last),
            };
            let end = from.saturating_add(1);
            floor.min(end)..end
        }
    };
    Ok(Some(StreamRead {
        last_revision: last,
        metadata,
        direction: options.direction,
        count: u64::try_from(options.max_count).unwrap_or(u64::MAX),
        window,
    }))
}

impl StreamRead {
    /// The stream's last revision, reported with the events.
    pub fn last_revision(&self) -> Revision {
        Revision(self.last_revision)
    }

    /// The metadata the read applies.
    pub fn metadata(&self) -> &StreamMetadata {
        &self.metadata
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// A search for the first revision `$maxAge` leaves visible at `now`, when the stream
    /// has a `$maxAge` and the read can reach anything. Run it (fetching the created time
    /// of each revision it asks for), then pass it to [`StreamRead::skip_expired`].
    pub fn expiry_search(&self, now: Timestamp) -> Option<ExpirySearch> {
        if self.metadata.max_age.is_none() || self.window.is_empty() || self.count == 0 {
            return None;
        }
        Some(ExpirySearch {
            low: self.window.start,
            high: self.window.end,
            probed: false,
            metadata: self.metadata.clone(),
            now,
        })
    }

    /// Leaves out the revisions a finished search found expired.
    pub fn skip_expired(&mut self, search: &ExpirySearch) {
        let first_unexpired = search.first_unexpired().min(self.window.end);
        self.window.start = self.window.start.max(first_unexpired);
    }

    /// The revisions to fetch, ascending (reverse them for a backwards read).
    pub fn revisions(&self) -> Range<u64> {
        let Range { start, end } = self.window.clone();
        match self.direction {
            Direction::Forwards => start..start.saturating_add(self.count).min(end),
            Direction::Backwards => end.saturating_sub(self.count).max(start)..end,
        }
    }

    /// True when a fetched event is visible at `now` (an event can expire between the
    /// search and the fetch).
    pub fn is_visible(&self, event: &RecordedEvent, now: Timestamp) -> bool {
        self.metadata.is_visible(
            event.revision,
            Revision(self.last_revision),
            event.created,
            now,
        )
    }
}

/// What a scavenge may remove from one stream: what no read can return any more, decided
/// by [`plan_stream_read`] itself so that the two never disagree.
#[derive(Clone, Debug, PartialEq)]
pub enum Retention {
    /// The stream is tombstoned: every event but the tombstone.
    AllButTombstone,
    /// Every revision below `keep_from`. When `expiry` is set, run it first (as a read
    /// does) and raise `keep_from` to its first unexpired revision, capped at `last`.
    Below {
        keep_from: u64,
        last: u64,
        expiry: Option<ExpirySearch>,
    },
}

impl Retention {
    /// The first revision to keep once `search` (this retention's `expiry`, run) is done.
    pub fn keep_from_after(keep_from: u64, last: u64, search: Option<&ExpirySearch>) -> u64 {
        search
            .map_or(keep_from, |search| keep_from.max(search.first_unexpired()))
            .min(last)
    }
}

/// What a scavenge at `now` may remove from `stream` (see [`Retention`]). The last event of
/// a stream that is not tombstoned is always kept, even when no read returns it (a
/// soft-deleted stream, `$tb` past the end): it holds the stream's head, from which the
/// next append's revision follows after a reopen — as KurrentDB's scavenge keeps it.
pub fn retention(
    stream: &StreamName,
    head: &StreamHead,
    described_head: Option<&StreamHead>,
    now: Timestamp,
) -> Retention {
    let Some(last) = head.last_revision else {
        return if head.tombstoned {
            Retention::AllButTombstone
        } else {
            Retention::Below {
                keep_from: 0,
                last: 0,
                expiry: None,
            }
        };
    };
    match plan_stream_read(stream, head, described_head, &ReadStreamOptions::forwards()) {
        Err(_) if head.tombstoned => Retention::AllButTombstone,
        // `$$S` of a tombstoned `S`, or a stream no read finds: its head stays.
        Err(_) | Ok(None) => Retention::Below {
            keep_from: last,
            last,
            expiry: None,
        },
        Ok(Some(read)) => Retention::Below {
            keep_from: read.window.start.min(last),
            last,
            expiry: read.expiry_search(now),
        },
    }
}

/// A binary search for the first revision whose event `$maxAge` has not hidden, over the
/// revisions a read can reach. It relies on created times not decreasing as revisions
/// grow (each is the store's clock when the event was written), as KurrentDB's reader
/// does; its first probe is the lowest revision, so a stream with nothing expired costs
/// one lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpirySearch {
    /// Every revision below `low` is expired.
    low: u64,
    /// Every revision from `high` on is not (or is out of reach).
    high: u64,
    probed: bool,
    metadata: Arc<StreamMetadata>,
    now: Timestamp,
}

impl ExpirySearch {
    /// The revision whose created time the search needs next; `None` when it is done.
    pub fn next_probe(&self) -> Option<u64> {
        if self.low >= self.high {
            None
        } else if !self.probed {
            Some(self.low)
        } else {
            Some(self.low + (self.high - self.low) / 2)
        }
    }

    /// Records the created time of the event at `revision` (one [`Self::next_probe`] asked
    /// for). A revision without an event (removed by a future scavenge) counts as expired.
    pub fn observe(&mut self, revision: u64, created: Option<Timestamp>) {
        self.probed = true;
        let expired = created.is_none_or(|created| self.metadata.is_expired(created, self.now));
        if expired {
            self.low = self.low.max(revision.saturating_add(1));
        } else {
            self.high = self.high.min(revision);
        }
    }

    /// The first revision not expired; meaningful once [`Self::next_probe`] is `None`.
    pub fn first_unexpired(&self) -> u64 {
        self.low
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn head(last: u64, metadata: StreamMetadata) -> StreamHead {
        StreamHead {
            last_revision: Some(last),
            tombstoned: false,
            metadata: Some(Arc::new(metadata)),
        }
    }

    fn revisions(head: &StreamHead, options: ReadStreamOptions) -> Range<u64> {
        let stream = StreamName::new("s-1").unwrap();
        plan_stream_read(&stream, head, None, &options)
            .unwrap()
            .map_or(0..0, |read| read.revisions())
    }

    fn keep_from(retention: &Retention) -> Option<u64> {
        match retention {
            Retention::AllButTombstone => None,
            Retention::Below { keep_from, .. } => Some(*keep_from),
        }
    }

    #[test]
    fn a_scavenge_removes_what_a_read_skips_and_keeps_every_head() {
        let stream = StreamName::new("s-1").unwrap();
        let now = Timestamp(0);
        let retention = |head: &StreamHead| keep_from(&retention(&stream, head, None, now));
        let truncated = head(
            9,
            StreamMetadata {
                truncate_before: Some(4),
                ..StreamMetadata::default()
            },
        );
        assert_eq!(retention(&truncated), Some(4));
        let counted = head(
            9,
            StreamMetadata {
                max_count: Some(3),
                ..StreamMetadata::default()
            },
        );
        assert_eq!(retention(&counted), Some(7));
        // `$tb` past the end, and a soft delete: the last event stays (the head).
        let beyond = head(
            9,
            StreamMetadata {
                truncate_before: Some(50),
                ..StreamMetadata::default()
            },
        );
        assert_eq!(retention(&beyond), Some(9));
        let soft_deleted = head(
            9,
            StreamMetadata {
                truncate_before: Some(crate::metadata::SOFT_DELETED_TRUNCATE_BEFORE),
                ..StreamMetadata::default()
            },
        );
        assert_eq!(retention(&soft_deleted), Some(9));
        assert_eq!(retention(&head(9, StreamMetadata::default())), Some(0));
        let tombstoned = StreamHead {
            tombstoned: true,
            ..head(9, StreamMetadata::default())
        };
        assert_eq!(retention(&tombstoned), None);
        // A metadata stream keeps its last event; that of a tombstoned stream too.
        let metastream = StreamName::new("$$s-1").unwrap();
        let metadata_head = head(5, StreamMetadata::default());
        let described = StreamHead::default();
        assert_eq!(
            keep_from(&retention_of(&metastream, &metadata_head, &described)),
            Some(5)
        );
        assert_eq!(
            keep_from(&retention_of(&metastream, &metadata_head, &tombstoned)),
            Some(5)
        );
        // `$maxAge` asks for the same search a read runs.
        let aging = head(
            9,
            StreamMetadata {
                max_age: Some(Duration::from_secs(60)),
                ..StreamMetadata::default()
            },
        );
        let Retention::Below {
            expiry: Some(mut search),
            keep_from,
            last,
        } = super::retention(&stream, &aging, None, Timestamp(120_000_000_000))
        else {
            panic!("a search");
        };
        while let Some(probe) = search.next_probe() {
            let created = (probe >= 6).then_some(Timestamp(100_000_000_000));
            search.observe(probe, created);
        }
        assert_eq!(
            Retention::keep_from_after(keep_from, last, Some(&search)),
            6
        );
    }

    fn retention_of(stream: &StreamName, head: &StreamHead, described: &StreamHead) -> Retention {
        retention(stream, head, Some(described), Timestamp(0))
    }

    #[test]
    fn the_count_applies_after_truncate_before_and_max_count() {
        let truncated = head(
            9,
            StreamMetadata {
                truncate_before: Some(4),
                ..StreamMetadata::default()
            },
        );
        let forwards = ReadStreamOptions::forwards().max_count(2);
        assert_eq!(revisions(&truncated, forwards), 4..6);
        let backwards = ReadStreamOptions::backwards().max_count(3);
        assert_eq!(revisions(&truncated, backwards), 7..10);
        let below = ReadStreamOptions::backwards().from_revision(3);
        assert_eq!(revisions(&truncated, below), 4..4);
        let counted = head(
            9,
            StreamMetadata {
                max_count: Some(3),
                ..StreamMetadata::default()
            },
        );
        assert_eq!(revisions(&counted, ReadStreamOptions::forwards()), 7..10);
        let past_end = ReadStreamOptions::forwards().from_revision(12);
        assert_eq!(revisions(&counted, past_end), 10..10);
        let none = ReadStreamOptions::backwards().max_count(0);
        assert_eq!(revisions(&counted, none), 10..10);
    }

    #[test]
    fn the_expiry_search_finds_the_first_young_revision_in_few_probes() {
        let max_age = Duration::from_secs(10);
        let stream = head(
            999,
            StreamMetadata {
                max_age: Some(max_age),
                ..StreamMetadata::default()
            },
        );
        let now = Timestamp(1_000_000_000_000);
        // Revisions below 700 were written 20 s ago, the rest 1 s ago.
        let created = |revision: u64| {
            let age = if revision < 700 { 20 } else { 1 };
            Timestamp(now.0 - age * 1_000_000_000)
        };
        for options in [
            ReadStreamOptions::forwards().max_count(5),
            ReadStreamOptions::backwards().max_count(5),
        ] {
            let name = StreamName::new("s-1").unwrap();
            let mut read = plan_stream_read(&name, &stream, None, &options)
                .unwrap()
                .unwrap();
            let mut search = read.expiry_search(now).unwrap();
            let mut probes = 0;
            while let Some(revision) = search.next_probe() {
                probes += 1;
                search.observe(revision, Some(created(revision)));
            }
            assert!(probes <= 12, "{probes} probes for 1000 revisions");
            read.skip_expired(&search);
            let wanted = match options.direction {
                Direction::Forwards => 700..705,
                Direction::Backwards => 995..1000,
            };
            assert_eq!(read.revisions(), wanted, "{options:?}");
        }
    }

    #[test]
    fn a_stream_with_nothing_expired_costs_one_probe() {
        let stream = head(
            99,
            StreamMetadata {
                max_age: Some(Duration::from_secs(60)),
                ..StreamMetadata::default()
            },
        );
        let name = StreamName::new("s-1").unwrap();
        let read = plan_stream_read(&name, &stream, None, &ReadStreamOptions::forwards())
            .unwrap()
            .unwrap();
        let now = Timestamp(10_000_000_000);
        let mut search = read.expiry_search(now).unwrap();
        assert_eq!(search.next_probe(), Some(0));
        search.observe(0, Some(now));
        assert_eq!(search.next_probe(), None);
        assert_eq!(search.first_unexpired(), 0);
    }

    #[test]
    fn a_metadata_stream_shows_its_last_event_and_is_gone_with_its_stream() {
        let name = StreamName::new("$$s-1").unwrap();
        let metadata_head = head(4, StreamMetadata::default());
        let live = StreamHead::default();
        let read = plan_stream_read(
            &name,
            &metadata_head,
            Some(&live),
            &ReadStreamOptions::forwards(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(read.revisions(), 4..5);
        let tombstoned = StreamHead {
            tombstoned: true,
            ..StreamHead::default()
        };
        let refused = plan_stream_read(
            &name,
            &metadata_head,
            Some(&tombstoned),
            &ReadStreamOptions::forwards(),
        );
        assert!(
            matches!(refused, Err(Error::StreamDeleted { stream }) if stream.as_str() == "$$s-1")
        );
    }
}
