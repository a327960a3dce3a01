//! Parking events (a link in the group's parked stream), replaying them, and resolving links.

use std::collections::BTreeMap;

use strata_core::system_streams::{LINK_EVENT_TYPE, ResolvedEvent, resolve_link};
use strata_core::{
    Bytes, ContentType, EventId, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions,
    RecordedEvent, StreamMetadata, StreamState,
};

use crate::consumer::PersistentEvent;
use crate::error::Result;
use crate::group::Group;
use crate::window::{Slot, SlotKey, SlotState};

/// Parked events loaded per replay chunk.
const REPLAY_CHUNK_EVENTS: u64 = 512;

/// A replay of parked events in progress.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) active: bool,
    pub(crate) slots: BTreeMap<u64, Slot>,
    next_key: u64,
    /// Next parked revision to read, and the last one this replay covers.
    next_revision: u64,
    end_revision: u64,
    remaining: u64,
    /// The truncate-before to write once the loaded chunk is finished.
    chunk_end: Option<u64>,
}

/// A link event pointing at `event`.
pub(crate) fn link_to(event: &RecordedEvent) -> ProposedEvent {
    ProposedEvent {
        id: EventId::new_random(),
        event_type: LINK_EVENT_TYPE.into(),
        content_type: ContentType::Binary,
        data: Bytes::from(format!("{}@{}", event.revision, event.stream)),
        metadata: Bytes::new(),
    }
}

/// `event` as a group that resolves links delivers it (`strata_core`'s `resolve_link`): a
/// link with the event it points at, or alone when its target is gone or cannot be read;
/// any other event as it is.
pub(crate) async fn resolve(store: &dyn EventStore, event: RecordedEvent) -> PersistentEvent {
    let resolved = match resolve_link(store, event.clone()).await {
        Ok(resolved) => resolved,
        Err(error) => {
            tracing::warn!(stream = %event.stream, %error, "a link could not be resolved");
            ResolvedEvent {
                event: None,
                link: Some(event),
            }
        }
    };
    PersistentEvent {
        event: resolved.event,
        link: resolved.link,
        retry_count: 0,
    }
}

impl Group {
    /// Parks what waits to be parked; an event counts as finished once its link is written.
    pub(crate) async fn park_pending(&mut self) {
        let keys = std::mem::take(&mut self.to_park);
        let mut parked = Vec::new();
        let mut links = Vec::new();
        for key in keys {
            let Some(slot) = self.slot_mut(key) else {
                continue;
            };
            if slot.state != SlotState::Done {
                links.push(link_to(slot.delivery.event_or_link()));
                parked.push(key);
            }
        }
        if links.is_empty() {
            return;
        }
        let stream = self.parked_stream.clone();
        match self
            .store
            .append(&stream, ExpectedRevision::Any, links)
            .await
        {
            Ok(_) => parked.into_iter().for_each(|key| self.finish(key)),
            Err(error) => {
                tracing::warn!(%stream, %error, "parking failed; the events are retried");
                self.retry.extend(parked);
            }
        }
    }

    /// Starts replaying up to `stop_at` parked events (all when `None`).
    pub(crate) async fn start_replay(&mut self, stop_at: Option<u64>) -> Result<()> {
        let StreamState::At(last) = self.store.stream_state(&self.parked_stream).await? else {
            return Ok(());
        };
        let remaining = stop_at.unwrap_or(u64::MAX);
        if self.replay.active {
            self.replay.end_revision = last.0;
            self.replay.remaining = self.replay.remaining.max(remaining);
            return Ok(());
        }
        self.replay = Replay {
            active: true,
            end_revision: last.0,
            remaining,
            ..Replay::default()
        };
        Ok(())
    }

    /// Called when the loaded chunk is finished: truncates the parked stream past it and
    /// loads the next one.
    pub(crate) async fn replay_next_chunk(&mut self) {
        if let Err(error) = self.replay_chunk().await {
            tracing::warn!(stream = %self.parked_stream, %error, "replay of parked events stopped");
            self.replay.active = false;
        }
    }

    async fn replay_chunk(&mut self) -> Result<()> {
        if let Some(truncate_before) = self.replay.chunk_end.take() {
            let metadata = StreamMetadata {
                truncate_before: Some(truncate_before),
                ..StreamMetadata::default()
            };
            self.store
                .set_stream_metadata(&self.parked_stream, ExpectedRevision::Any, &metadata)
                .await?;
        }
        let replay = &self.replay;
        if replay.remaining == 0 || replay.next_revision > replay.end_revision {
            self.replay.active = false;
            return Ok(());
        }
        let count = replay
            .remaining
            .min(REPLAY_CHUNK_EVENTS)
            .min(replay.end_revision - replay.next_revision + 1);
        let options = ReadStreamOptions::forwards()
            .from_revision(replay.next_revision)
            .max_count(usize::try_from(count).unwrap_or(usize::MAX));
        let links = self
            .store
            .read_stream(&self.parked_stream, options)
            .await?
            .into_events();
        if links.is_empty() {
            self.replay.active = false;
            return Ok(());
        }
        let mut chunk_bytes = 0usize;
        for link in links {
            if link.revision.0 > self.replay.end_revision {
                break;
            }
            self.replay.next_revision = link.revision.0 + 1;
            self.replay.remaining = self.replay.remaining.saturating_sub(1);
            let revision = link.revision.0;
            let delivery = resolve(&*self.store, link).await;
            // A parked event that is gone is not replayed.
            if delivery.event.is_none() || delivery.link.is_none() {
                continue;
            }
            let key = self.replay.next_key;
            self.replay.next_key += 1;
            let ids = delivery.ids();
            let slot = Slot::new(delivery, revision);
            chunk_bytes += slot.overhead_bytes() + slot.payload_bytes();
            self.replay.slots.insert(key, slot);
            for id in ids {
                self.ids.insert(id, SlotKey::Replay(key));
            }
            self.retry.push_back(SlotKey::Replay(key));
            // A chunk holds at most the window's byte budget (and always one event).
            if chunk_bytes >= self.window_bytes_max {
                break;
            }
        }
        self.replay.chunk_end = Some(self.replay.next_revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{Position, Revision, StreamName, Timestamp};

    use super::*;

    #[test]
    fn links_name_revision_at_stream() {
        let event = RecordedEvent {
            stream: StreamName::new("order-7").unwrap(),
            revision: Revision(12),
            position: Position(900),
            id: EventId::new_random(),
            event_type: "Placed".into(),
            content_type: ContentType::Json,
            data: Bytes::new(),
            metadata: Bytes::new(),
            created: Timestamp(0),
        };
        let link = link_to(&event);
        assert_eq!(link.event_type, "$>");
        assert_eq!(&link.data[..], b"12@order-7");
    }
}
