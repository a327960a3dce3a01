//! Catch-up subscriptions over any [`EventStore`]: page through history, then follow the
//! durable end of the log.
//!
//! The subscriber never switches between two sources: it always reads the log in position
//! order and, when it has read everything durable, waits for the end to move. That is why
//! there can be no gap and no duplicate at the switch to live. Each subscriber runs as its
//! own task with its own bounded buffer, so a slow consumer holds back only itself.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::filter::EventFilter;
use crate::store::{EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice};
use crate::types::{Direction, Position, RecordedEvent, Revision, StreamName, StreamState};

/// Events one subscriber reads from the store per page, at most.
const PAGE_EVENTS_MAX: usize = 512;

/// Bytes of events a subscriber's page of a stream aims at (see [`PageBudget`]).
const PAGE_BYTES_TARGET: usize = 4 * 1024 * 1024;

/// Events the first page of a read asks for, as the reference server's reads do.
const FIRST_PAGE_EVENTS: usize = 32;

/// Default number of items buffered for a subscriber before its reader task waits.
pub const SUBSCRIPTION_BUFFER_DEFAULT: usize = 1_024;

/// Default bytes of events (data, metadata, type and stream name) buffered for a
/// subscriber before its reader task waits. An event larger than the budget still passes,
/// alone.
pub const SUBSCRIPTION_BUFFER_BYTES_DEFAULT: usize = 16 * 1024 * 1024;

/// Default number of events a filtered `$all` subscription looks at (matching or not)
/// between two checkpoints.
pub const CHECKPOINT_INTERVAL_EVENTS_DEFAULT: usize = 512;

/// How a subscription buffers, and how often a filtered one checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Items buffered for the subscriber before its reader task waits.
    pub buffer_items: usize,
    /// Bytes of events buffered for the subscriber before its reader task waits.
    pub buffer_bytes: usize,
    /// Filtered `$all` subscriptions: a checkpoint after this many events looked at
    /// (matching or not), and one when first caught up. No read of the store looks at more
    /// events than are left until the next checkpoint.
    pub checkpoint_interval_events: usize,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            buffer_items: SUBSCRIPTION_BUFFER_DEFAULT,
            buffer_bytes: SUBSCRIPTION_BUFFER_BYTES_DEFAULT,
            checkpoint_interval_events: CHECKPOINT_INTERVAL_EVENTS_DEFAULT,
        }
    }
}

/// How many events the next page of a read asks for, so that pages stay near a byte
/// target whatever the size of the events: the first page asks for 32, later pages for as
/// many events of the largest size seen so far as fit the target (at least one, at most
/// the maximum), growing at most fourfold per page.
#[derive(Clone, Copy, Debug)]
pub struct PageBudget {
    events_max: usize,
    target_bytes: usize,
    largest_event_bytes: usize,
    next_events: usize,
}

impl PageBudget {
    pub fn new(events_max: usize, target_bytes: usize) -> Self {
        let events_max = events_max.max(1);
        Self {
            events_max,
            target_bytes,
            largest_event_bytes: 1,
            next_events: FIRST_PAGE_EVENTS.min(events_max),
        }
    }

    /// Events the next page should ask for.
    pub fn events(&self) -> usize {
        self.next_events
    }

    /// Learns from a page read.
    pub fn observe(&mut self, events: &[RecordedEvent]) {
        self.observe_largest(events.iter().map(event_bytes).max().unwrap_or(0));
    }

    /// Learns from a page read whose largest event held `largest_event_bytes`
    /// ([`event_bytes`]).
    pub fn observe_largest(&mut self, largest_event_bytes: usize) {
        self.largest_event_bytes = self.largest_event_bytes.max(largest_event_bytes);
        let fitting = self.target_bytes / self.largest_event_bytes;
        self.next_events = fitting
            .min(self.next_events.saturating_mul(4))
            .clamp(1, self.events_max);
    }
}

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

/// An item on its way to the subscriber, with the share of the byte budget it holds.
type Buffered = (Result<SubscriptionItem>, Option<OwnedSemaphorePermit>);

/// A running subscription; dropping it stops its reader task.
pub struct Subscription {
    receiver: mpsc::Receiver<Buffered>,
    reader: JoinHandle<()>,
}

impl Subscription {
    /// The next item; `None` after the subscription ended (the store closed) and after an
    /// error was delivered.
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem>> {
        // The item leaves the buffer: its bytes no longer count against the budget.
        self.receiver.recv().await.map(|(item, _permit)| item)
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

/// Subscribes to `$all`, optionally filtered, buffering up to `buffer_items` items (and the
/// default byte budget). Must be called inside a tokio runtime.
pub fn subscribe_to_all<S: EventStore + ?Sized>(
    store: Arc<S>,
    from: SubscribeFrom<Position>,
    filter: Option<EventFilter>,
    buffer_items: usize,
) -> Subscription {
    let options = SubscriptionOptions {
        buffer_items,
        ..SubscriptionOptions::default()
    };
    subscribe_to_all_with(store, from, filter, options)
}

/// Subscribes to `$all` with explicit buffer budgets and checkpoint interval. Must be
/// called inside a tokio runtime.
pub fn subscribe_to_all_with<S: EventStore + ?Sized>(
    store: Arc<S>,
    from: SubscribeFrom<Position>,
    filter: Option<EventFilter>,
    options: SubscriptionOptions,
) -> Subscription {
    let (sender, receiver) = mpsc::channel(options.buffer_items.max(1));
    let sender = ItemSender::new(sender, options.buffer_bytes);
    let interval = options.checkpoint_interval_events.max(1);
    let reader = tokio::spawn(async move {
        if let Err(error) = follow_all(&*store, from, filter, interval, &sender).await {
            sender.fail(error).await;
        }
    });
    Subscription { receiver, reader }
}

/// Subscribes to one stream, buffering up to `buffer_items` items (and the default byte
/// budget). Must be called inside a tokio runtime.
pub fn subscribe_to_stream<S: EventStore + ?Sized>(
    store: Arc<S>,
    stream: StreamName,
    from: SubscribeFrom<Revision>,
    buffer_items: usize,
) -> Subscription {
    let options = SubscriptionOptions {
        buffer_items,
        ..SubscriptionOptions::default()
    };
    subscribe_to_stream_with(store, stream, from, options)
}

/// Subscribes to one stream with explicit buffer budgets. Must be called inside a tokio
/// runtime.
pub fn subscribe_to_stream_with<S: EventStore + ?Sized>(
    store: Arc<S>,
    stream: StreamName,
    from: SubscribeFrom<Revision>,
    options: SubscriptionOptions,
) -> Subscription {
    let (sender, receiver) = mpsc::channel(options.buffer_items.max(1));
    let sender = ItemSender::new(sender, options.buffer_bytes);
    let reader = tokio::spawn(async move {
        if let Err(error) = follow_stream(&*store, &stream, from, &sender).await {
            sender.fail(error).await;
        }
    });
    Subscription { receiver, reader }
}

/// The reader's end of the buffer: bounded in items by the channel and in bytes by a
/// semaphore whose permits travel with the events.
struct ItemSender {
    items: mpsc::Sender<Buffered>,
    bytes: Arc<Semaphore>,
    bytes_max: u32,
}

impl ItemSender {
    fn new(items: mpsc::Sender<Buffered>, buffer_bytes: usize) -> Self {
        let bytes_max =
            u32::try_from(buffer_bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Self {
            items,
            bytes: Arc::new(Semaphore::new(bytes_max as usize)),
            bytes_max,
        }
    }

    /// Sends one item, waiting for room; false when the subscriber has gone away.
    async fn deliver(&self, item: SubscriptionItem) -> bool {
        let permit = match &item {
            SubscriptionItem::Event(event) => {
                let cost = u32::try_from(event_bytes(event))
                    .unwrap_or(u32::MAX)
                    .clamp(1, self.bytes_max);
                match Arc::clone(&self.bytes).acquire_many_owned(cost).await {
                    Ok(permit) => Some(permit),
                    Err(_) => return false,
                }
            }
            SubscriptionItem::CaughtUp | SubscriptionItem::Checkpoint(_) => None,
        };
        self.items.send((Ok(item), permit)).await.is_ok()
    }

    async fn fail(&self, error: Error) {
        let _ = self.items.send((Err(error), None)).await;
    }
}

/// What an event weighs in a buffer or a page: data, metadata, type and stream name.
pub fn event_bytes(event: &RecordedEvent) -> usize {
    event.data.len() + event.metadata.len() + event.event_type.len() + event.stream.as_str().len()
}

/// Counts the events of the log a filtered subscription moves past (looked at, or skipped
/// by an index) and says when a checkpoint is due.
struct Checkpoints {
    interval_events: usize,
    passed_since: usize,
    last_examined: Option<Position>,
    last_sent: Option<Position>,
}

impl Checkpoints {
    fn new(interval_events: usize) -> Self {
        Self {
            interval_events,
            passed_since: 0,
            last_examined: None,
            last_sent: None,
        }
    }

    /// Events the next read may look at: no more than are left until the next checkpoint
    /// (a read served from an index may move past more, and the checkpoint follows it).
    fn window(&self) -> usize {
        self.interval_events
            .saturating_sub(self.passed_since)
            .clamp(1, PAGE_EVENTS_MAX)
    }

    fn passed(&mut self, count: usize, last: Option<Position>) {
        self.passed_since += count;
        if last.is_some() {
            self.last_examined = last;
        }
    }

    /// The checkpoint to send now: when the interval is full, or (`closing`) when anything
    /// was looked at since the last one.
    fn due(&mut self, closing: bool) -> Option<Position> {
        let full = self.passed_since >= self.interval_events;
        if !(full || closing) {
            return None;
        }
        if self.last_examined == self.last_sent {
            // Nothing new to send; a full interval starts again, so the next windows are
            // not held to one event.
            if full {
                self.passed_since = 0;
            }
            return None;
        }
        self.passed_since = 0;
        self.last_sent = self.last_examined;
        self.last_sent
    }
}

async fn follow_all<S: EventStore + ?Sized>(
    store: &S,
    from: SubscribeFrom<Position>,
    filter: Option<EventFilter>,
    interval_events: usize,
    sender: &ItemSender,
) -> Result<()> {
    let mut log_end = store.watch_log_end();
    let (mut next, skip_at) = match from {
        SubscribeFrom::Start => (Position::START, None),
        SubscribeFrom::End => (*log_end.borrow_and_update(), None),
        SubscribeFrom::After(position) => (position, Some(position)),
    };
    let mut checkpoints = Checkpoints::new(interval_events);
    let mut page = PageBudget::new(PAGE_EVENTS_MAX, PAGE_BYTES_TARGET);
    let mut caught_up = false;
    loop {
        let durable_end = *log_end.borrow_and_update();
        if next < durable_end {
            let options = ReadAllOptions {
                direction: Direction::Forwards,
                from: ReadFrom::At(next),
                max_count: page.events(),
                filter: filter.clone(),
            };
            let slice = if filter.is_some() {
                let window = store.read_all_window(options, checkpoints.window()).await?;
                checkpoints.passed(window.passed_count, window.slice.last_examined);
                window.slice
            } else {
                store.read_all(options).await?
            };
            page.observe(&slice.events);
            for event in slice.events {
                if Some(event.position) == skip_at {
                    continue;
                }
                if !sender.deliver(SubscriptionItem::Event(event)).await {
                    return Ok(());
                }
            }
            next = slice.next_position;
            // A checkpoint is the last event looked at: resuming after it (exclusive, as
            // clients do) misses nothing, even the event written next.
            if let Some(position) = checkpoints.due(false)
                && !sender.deliver(SubscriptionItem::Checkpoint(position)).await
            {
                return Ok(());
            }
            if !slice.is_end {
                continue;
            }
        }
        if !caught_up {
            caught_up = true;
            if filter.is_some()
                && let Some(position) = checkpoints.due(true)
                && !sender.deliver(SubscriptionItem::Checkpoint(position)).await
            {
                return Ok(());
            }
            if !sender.deliver(SubscriptionItem::CaughtUp).await {
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
        SubscribeFrom::End => match crate::system_streams::stream_state(store, stream).await? {
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
    let mut page = PageBudget::new(PAGE_EVENTS_MAX, PAGE_BYTES_TARGET);
    loop {
        let page_events = page.events();
        let options = ReadStreamOptions::forwards()
            .from_revision(next)
            .max_count(page_events);
        let events = match store.read_stream(stream, options).await? {
            StreamSlice::NotFound => Vec::new(),
            StreamSlice::Found { events, .. } => events,
        };
        page.observe(&events);
        let page_was_full = events.len() == page_events;
        for event in events {
            next = event.revision.0 + 1;
            if !sender.deliver(SubscriptionItem::Event(event)).await {
                return Ok(());
            }
        }
        if page_was_full {
            continue;
        }
        if !caught_up {
            caught_up = true;
            if !sender.deliver(SubscriptionItem::CaughtUp).await {
                return Ok(());
            }
        }
        if log_end.changed().await.is_err() {
            return Err(Error::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;
    use crate::types::{ContentType, EventId, Timestamp};

    fn event_of(data_bytes: usize) -> SubscriptionItem {
        SubscriptionItem::Event(RecordedEvent {
            stream: StreamName::new("s").unwrap(),
            revision: Revision(0),
            position: Position(0),
            id: EventId::new_random(),
            event_type: "E".into(),
            content_type: ContentType::Binary,
            data: bytes::Bytes::from(vec![0; data_bytes]),
            metadata: bytes::Bytes::new(),
            created: Timestamp(0),
        })
    }

    #[tokio::test]
    async fn the_buffer_holds_no_more_bytes_than_its_budget_and_one_large_event_passes_alone() {
        let (items, mut receiver) = mpsc::channel(100);
        let sender = ItemSender::new(items, 100);
        assert_eq!(sender.deliver(event_of(58)).now_or_never(), Some(true));
        // 60 + 60 bytes would be over 100: the second waits for the first to be taken.
        let mut second = Box::pin(sender.deliver(event_of(58)));
        assert_eq!(second.as_mut().now_or_never(), None, "over the byte budget");
        let (first, permit) = receiver.recv().await.unwrap();
        assert!(first.is_ok());
        drop(permit);
        assert_eq!(second.now_or_never(), Some(true), "room again once taken");
        let (_, permit) = receiver.recv().await.unwrap();
        drop(permit);
        // An event larger than the whole budget still goes, alone.
        assert_eq!(sender.deliver(event_of(1_000)).now_or_never(), Some(true));
        let mut after = Box::pin(sender.deliver(event_of(1)));
        assert_eq!(
            after.as_mut().now_or_never(),
            None,
            "the large event fills it"
        );
    }

    #[test]
    fn pages_start_small_and_ask_for_fewer_events_when_they_are_large() {
        let mut budget = PageBudget::new(512, 1_000);
        assert_eq!(budget.events(), 32);
        let small: Vec<RecordedEvent> = (0..32)
            .map(|_| match event_of(3) {
                SubscriptionItem::Event(event) => event,
                _ => unreachable!(),
            })
            .collect();
        budget.observe(&small);
        assert_eq!(budget.events(), 128, "grows at most fourfold");
        let SubscriptionItem::Event(large) = event_of(400) else {
            unreachable!()
        };
        budget.observe(&[large]);
        assert_eq!(budget.events(), 2, "two 402-byte events fit 1,000 bytes");
    }
}
