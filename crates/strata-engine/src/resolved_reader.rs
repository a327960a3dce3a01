//! A system stream read with its links resolved. The index read already holds the event
//! each link is built from, so that event is handed over instead of being read again.
//! Whether it is visible in its own stream is decided by the stream read's own rules
//! ([`rules::plan_stream_read`] and [`StreamRead::is_visible`]); what those leave to the
//! read itself (a stream with `$maxAge`, a link to a link, a target stream served from an
//! index) is resolved by reading, as [`resolve_link`] does.

use strata_core::rules::{self, StreamRead};
use strata_core::system_streams::{
    IndexKey, LINK_EVENT_TYPE, ResolvedEvent, ResolvedSlice, link_event, resolve_link,
};
use strata_core::{
    Error, EventStore, ReadStreamOptions, RecordedEvent, Result, Revision, StreamName, Timestamp,
};

use crate::store::Store;

/// Reads `stream`, served from the index `key` (one whose stream shows links), with each
/// link resolved: the answer of [`strata_core::system_streams::read_stream_resolved_by_reading`].
pub(crate) async fn read(
    store: &Store,
    stream: &StreamName,
    key: &IndexKey,
    options: ReadStreamOptions,
    now: Timestamp,
) -> Result<ResolvedSlice> {
    let slice = store.read_index(key, options).await?;
    let Some(last_revision) = slice.last_revision else {
        return Ok(ResolvedSlice::NotFound);
    };
    let mut events = Vec::with_capacity(slice.events.len());
    let mut targets = TargetStream::default();
    for indexed in slice.events {
        let link = link_event(stream, indexed.index_revision, &indexed.event);
        let target = indexed.event;
        // A link to a link points where that link points.
        let visible = if target.event_type == LINK_EVENT_TYPE {
            None
        } else {
            targets.visible(store, &target, now)?
        };
        events.push(match visible {
            Some(true) => ResolvedEvent {
                event: Some(target),
                link: Some(link),
            },
            Some(false) => ResolvedEvent {
                event: None,
                link: Some(link),
            },
            None => resolve_link(store, link).await?,
        });
    }
    Ok(ResolvedSlice::Found {
        events,
        last_revision: Revision(last_revision),
    })
}

/// How a read of one target stream would treat its events.
enum Verdict {
    /// Tombstoned, soft-deleted or empty: no event is found.
    Gone,
    /// Found when within the read's revisions and visible.
    Plan(StreamRead),
    /// Only a read says (`$maxAge` searches by reading; a stream served from an index).
    Read,
}

/// The verdict on the last target stream met: a page's links meet their targets' streams
/// in runs, so one plan serves a run.
#[derive(Default)]
struct TargetStream {
    last: Option<(StreamName, Verdict)>,
}

impl TargetStream {
    /// Whether a read of `target`'s stream at its revision finds it now; `None` when only
    /// reading tells.
    fn visible(
        &mut self,
        store: &Store,
        target: &RecordedEvent,
        now: Timestamp,
    ) -> Result<Option<bool>> {
        let known = self
            .last
            .as_ref()
            .is_some_and(|(stream, _)| *stream == target.stream);
        if !known {
            let verdict = verdict(store, &target.stream, now)?;
            self.last = Some((target.stream.clone(), verdict));
        }
        let Some((_, verdict)) = &self.last else {
            unreachable!("set above");
        };
        Ok(match verdict {
            Verdict::Gone => Some(false),
            Verdict::Plan(read) => {
                Some(read.revisions().contains(&target.revision.0) && read.is_visible(target, now))
            }
            Verdict::Read => None,
        })
    }
}

/// The plan of a read of all of `stream` (a read of any of its revisions finds it exactly
/// when it lies within this plan's revisions and is visible).
fn verdict(store: &Store, stream: &StreamName, now: Timestamp) -> Result<Verdict> {
    if IndexKey::of_stream(stream.as_str()).is_some() {
        return Ok(Verdict::Read);
    }
    let (head, described_head) = store.read_heads(stream)?;
    let whole = ReadStreamOptions::forwards();
    match rules::plan_stream_read(stream, &head, described_head.as_ref(), &whole) {
        Err(Error::StreamDeleted { .. }) | Ok(None) => Ok(Verdict::Gone),
        Err(error) => Err(error),
        Ok(Some(read)) if read.expiry_search(now).is_some() => Ok(Verdict::Read),
        Ok(Some(read)) => Ok(Verdict::Plan(read)),
    }
}
