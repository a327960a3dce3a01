//! Catch-up subscriptions over any [`EventStore`]: page through history, then follow the
//! durable end of the log.
//!
//! The subscriber never switches between two sources: it always reads the log in position
//! order and, when it has read everything durable, waits for the end to move. That is why
//! there can be no gap and no duplicate at the switch to live. Each subscriber runs as its
//! own task with its own bounded buffer, so a slow consumer holds back only itself.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::filter::EventFilter;
use crate::store::{EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice};
use crate::types::{Direction, Position, RecordedEvent, Revision, StreamName, StreamState};

/// Events one subscriber reads from the store per page.
const PAGE_EVENTS_MAX: usize = 512;

/// Default number of items buffered for a subscriber before its reader task waits.
pub const SUBSCRIPTION_BUFFER_DEFAULT: usize = 1_024;

/// Where a subscription starts. `After` is exclusive, as KurrentDB clients expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeFrom<T> {
    Start,
    End,
    After(T),
}

/// One message of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionItem {
    Event(RecordedEvent),
    /// Sent once, when the subscriber has delivered everything durable at that moment.
    CaughtUp,
    /// For filtered `$all` subscriptions: every event up to and including this position was
    /// looked at; subscribing after it resumes without a gap.
    Checkpoint(Position),
}

/// A running subscription; dropping it stops its reader task.
pub struct Subscription {
    receiver: mpsc::Receiver<Result<SubscriptionItem>>,
    reader: JoinHandle<()>,
}

impl Subscription {
    /// The next item; `None` after the subscription ended (the store closed) and after an
    /// error was delivered.
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem>> {
        self.receiver.recv().await
    }

    /// The next event, skipping caught-up and checkpoint markers.
    ///
    /// # Errors
    /// The error that ended the subscription.
    pub async fn next_event(&mut self) -> Option<Result<RecordedEvent>> {
        loop {
            match self.next().await? {
                Ok(SubscriptionItem::Event(event)) => return Some(Ok(event)),
                Ok(_) => continue,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Subscribes to `$all`, optionally filtered. Must be called inside a tokio runtime.
pub fn subscribe_to_all<S: EventStore + ?Sized>(
    store: Arc<S>,
    from: SubscribeFrom<Position>,
    filter: Option<EventFilter>,
    buffer_items: usize,
) -> Subscription {
    let (sender, receiver) = mpsc::channel(buffer_items.max(1));
    let reader = tokio::spawn(async move {
        if let Err(error) = follow_all(&*store, from, filter, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    Subscription { receiver, reader }
}

/// Subscribes to one stream. Must be called inside a tokio runtime.
pub fn subscribe_to_stream<S: EventStore + ?Sized>(
    store: Arc<S>,
    stream: StreamName,
    from: SubscribeFrom<Revision>,
    buffer_items: usize,
) -> Subscription {
    let (sender, receiver) = mpsc::channel(buffer_items.max(1));
    let reader = tokio::spawn(async move {
        if let Err(error) = follow_stream(&*store, &stream, from, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    Subscription { receiver, reader }
}

type ItemSender = mpsc::Sender<Result<SubscriptionItem>>;

/// Sends one item; false when the subscriber has gone away.
async fn deliver(sender: &ItemSender, item: SubscriptionItem) -> bool {
    sender.send(Ok(item)).await.is_ok()
}

async fn follow_all<S: EventStore + ?Sized>(
    store: &S,
    from: SubscribeFrom<Position>,
    filter: Option<EventFilter>,
    sender: &ItemSender,
) -> Result<()> {
    let mut log_end = store.watch_log_end();
    let (mut next, skip_at) = match from {
        SubscribeFrom::Start => (Position::START, None),
        SubscribeFrom::End => (*log_end.borrow_and_update(), None),
        SubscribeFrom::After(position) => (position, Some(position)),
    };
    let mut caught_up = false;
    loop {
        let durable_end = *log_end.borrow_and_update();
        if next < durable_end {
            let slice = store
                .read_all(ReadAllOptions {
                    direction: Direction::Forwards,
                    from: ReadFrom::At(next),
                    max_count: PAGE_EVENTS_MAX,
                    filter: filter.clone(),
                })
                .await?;
            for event in slice.events {
                if Some(event.position) == skip_at {
                    continue;
                }
                if !deliver(sender, SubscriptionItem::Event(event)).await {
                    return Ok(());
                }
            }
            next = slice.next_position;
            // A checkpoint is the last event looked at: resuming after it (exclusive, as
            // clients do) misses nothing, even the event written next.
            if let (Some(_), Some(examined)) = (&filter, slice.last_examined)
                && !deliver(sender, SubscriptionItem::Checkpoint(examined)).await
            {
                return Ok(());
            }
            if !slice.is_end {
                continue;
            }
        }
        if !caught_up {
            caught_up = true;
            if !deliver(sender, SubscriptionItem::CaughtUp).await {
                return Ok(());
            }
        }
        if log_end.changed().await.is_err() {
            return Err(Error::Closed);
        }
    }
}

async fn follow_stream<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    from: SubscribeFrom<Revision>,
    sender: &ItemSender,
) -> Result<()> {
    let mut log_end = store.watch_log_end();
    log_end.borrow_and_update();
    let mut next = match from {
        SubscribeFrom::Start => 0,
        SubscribeFrom::After(revision) => revision.0.saturating_add(1),
        SubscribeFrom::End => match store.stream_state(stream).await? {
            StreamState::At(revision) => revision.0 + 1,
            StreamState::NoStream => 0,
            StreamState::Tombstoned => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
        },
    };
    let mut caught_up = false;
    loop {
        let options = ReadStreamOptions::forwards()
            .from_revision(next)
            .max_count(PAGE_EVENTS_MAX);
        let events = match store.read_stream(stream, options).await? {
            StreamSlice::NotFound => Vec::new(),
            StreamSlice::Found { events, .. } => events,
        };
        let page_was_full = events.len() == PAGE_EVENTS_MAX;
        for event in events {
            next = event.revision.0 + 1;
            if !deliver(sender, SubscriptionItem::Event(event)).await {
                return Ok(());
            }
        }
        if page_was_full {
            continue;
        }
        if !caught_up {
            caught_up = true;
            if !deliver(sender, SubscriptionItem::CaughtUp).await {
                return Ok(());
            }
        }
        if log_end.changed().await.is_err() {
            return Err(Error::Closed);
        }
    }
}
