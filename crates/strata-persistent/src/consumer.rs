//! A consumer connected to a group: receives events, acks and nacks them.

use std::sync::{Arc, OnceLock};

use strata_core::{EventId, RecordedEvent};
use tokio::sync::mpsc;

use crate::error::{DropReason, Error, Result};
use crate::group::Command;
use crate::source::SubscriptionSource;

/// Most events one consumer may hold unacknowledged.
pub const CONSUMER_BUFFER_MAX: usize = 100_000;

/// How a consumer connects.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Events this consumer may hold unacknowledged at once (its in-flight limit).
    pub buffer_size: usize,
    /// Shown in the group's statistics (KurrentDB's `connection-name`).
    pub name: String,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            buffer_size: 10,
            name: String::new(),
        }
    }
}

/// One delivery of an event to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentEvent {
    /// The event (the target of a resolved link); `None` for a link whose target is gone
    /// (deleted, truncated or never there), as KurrentDB delivers it.
    pub event: Option<RecordedEvent>,
    /// The link event, when the group resolves links and `event` was reached through one.
    pub link: Option<RecordedEvent>,
    /// How many times this event was delivered before.
    pub retry_count: u32,
}

impl PersistentEvent {
    /// The id to ack or nack: the link's when there is one (as KurrentDB clients do); acking
    /// by the event's own id works as well.
    pub fn ack_id(&self) -> EventId {
        self.original().id
    }

    /// The event as read from the source: the link when there is one, else the event.
    pub fn original(&self) -> &RecordedEvent {
        match (&self.link, &self.event) {
            (Some(link), _) => link,
            (None, Some(event)) => event,
            (None, None) => unreachable!("a delivery holds an event or a link"),
        }
    }

    /// The event a link points at, or the link when its target is gone.
    pub fn event_or_link(&self) -> &RecordedEvent {
        self.event.as_ref().unwrap_or_else(|| self.original())
    }

    /// The ids a consumer may ack or nack this delivery by.
    pub(crate) fn ids(&self) -> [EventId; 2] {
        [self.ack_id(), self.event_or_link().id]
    }
}

/// What to do with events a consumer could not handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackAction {
    /// Park them in the group's parked stream.
    Park,
    /// Deliver them again (to any consumer), counting a retry.
    Retry,
    /// Consider them handled.
    Skip,
    /// Retry them elsewhere and drop this consumer.
    Stop,
}

/// A consumer's end of a group. Dropping it disconnects it; its unacknowledged events are
/// delivered to other consumers.
pub struct Consumer {
    pub(crate) id: u64,
    pub(crate) source: SubscriptionSource,
    pub(crate) group: String,
    pub(crate) deliveries: mpsc::Receiver<PersistentEvent>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) dropped: Arc<OnceLock<DropReason>>,
}

impl Consumer {
    /// The subscription id KurrentDB gives a connection, `<source>::<group>` (clients check
    /// it against what they asked for).
    pub fn subscription_id(&self) -> String {
        format!("{}::{}", self.source, self.group)
    }

    /// The next event.
    ///
    /// # Errors
    /// [`Error::Dropped`] (or [`Error::GroupNotFound`] after a delete) once the group let go
    /// of this consumer.
    pub async fn next(&mut self) -> Result<PersistentEvent> {
        match self.deliveries.recv().await {
            Some(event) => Ok(event),
            None => Err(self.drop_error()),
        }
    }

    /// The next event if one is waiting, without waiting.
    ///
    /// # Errors
    /// As [`Consumer::next`].
    pub fn try_next(&mut self) -> Option<Result<PersistentEvent>> {
        match self.deliveries.try_recv() {
            Ok(event) => Some(Ok(event)),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(self.drop_error())),
        }
    }

    /// Marks events handled. Each id finishes one event: the oldest with that id in flight
    /// at this consumer, else the oldest unfinished one with it (ids are unique per stream
    /// only, and links share their target's id; name an id twice to finish two). Unknown
    /// ids (already acked, or timed out and redelivered elsewhere and acked there) are
    /// ignored.
    ///
    /// # Errors
    /// [`Error::Dropped`] when the group is gone.
    pub async fn ack(&self, ids: Vec<EventId>) -> Result<()> {
        self.send(Command::Ack {
            consumer: self.id,
            ids,
        })
        .await
    }

    /// Reports events not handled, and what to do with them; ids resolve as for
    /// [`Consumer::ack`].
    ///
    /// # Errors
    /// [`Error::Dropped`] when the group is gone.
    pub async fn nack(&self, ids: Vec<EventId>, action: NackAction) -> Result<()> {
        self.send(Command::Nack {
            consumer: self.id,
            ids,
            action,
        })
        .await
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| self.drop_error())
    }

    fn drop_error(&self) -> Error {
        let reason = self.dropped.get().cloned().unwrap_or(DropReason::Shutdown);
        if reason == DropReason::Deleted {
            return Error::GroupNotFound {
                stream: self.source.to_string(),
                group: self.group.clone(),
            };
        }
        Error::Dropped {
            stream: self.source.to_string(),
            group: self.group.clone(),
            reason,
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A full channel is fine: the group also notices closed consumers on its tick.
        let _ = self
            .commands
            .try_send(Command::Disconnect { consumer: self.id });
    }
}
