//! How a group hands events to consumers and takes them back: the strategies, finishing,
//! retrying, timeouts and consumers going away.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::time::{Duration, Instant};

use crate::error::DropReason;
use crate::group::Group;
use crate::settings::ConsumerStrategy;
use crate::window::{Slot, SlotKey, SlotState};

/// Buckets the pinned strategies spread streams (or correlation ids) over.
const PINNED_BUCKETS: usize = 1_024;

/// Metadata key KurrentDB uses for an event's correlation id.
const CORRELATION_ID_KEY: &str = "$correlationId";

impl Group {
    pub(crate) fn slot_mut(&mut self, key: SlotKey) -> Option<&mut Slot> {
        match key {
            SlotKey::Main(sequence) => self.window.get_mut(sequence),
            SlotKey::Replay(key) => self.replay.slots.get_mut(&key),
        }
    }

    fn slot(&self, key: SlotKey) -> Option<&Slot> {
        match key {
            SlotKey::Main(sequence) => self.window.get(sequence),
            SlotKey::Replay(key) => self.replay.slots.get(&key),
        }
    }

    /// The event an ack or nack of `id` from `consumer` means: the oldest with that id in
    /// flight at that consumer, else the oldest unfinished one (an ack arriving after its
    /// timeout put the event back in the queue still finishes it).
    pub(crate) fn resolve(&self, consumer: u64, id: &strata_core::EventId) -> Option<SlotKey> {
        let mut unfinished = None;
        for &key in self.ids.keys(id) {
            match self.slot(key).map(|slot| slot.state) {
                Some(SlotState::InFlight {
                    consumer: holder, ..
                }) if holder == consumer => {
                    return Some(key);
                }
                Some(SlotState::Ready | SlotState::InFlight { .. }) => {
                    unfinished.get_or_insert(key);
                }
                Some(SlotState::Done) | None => {}
            }
        }
        unfinished
    }

    /// Delivers queued events (retries first) while consumers have free slots.
    pub(crate) fn dispatch(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let (key, from_retry) = match (self.retry.front(), self.ready.front()) {
                (Some(&key), _) => (key, true),
                (None, Some(&sequence)) => (SlotKey::Main(sequence), false),
                (None, None) => return,
            };
            let ready = self
                .slot_mut(key)
                .is_some_and(|slot| slot.state == SlotState::Ready);
            if ready {
                let Some(index) = self.pick(key) else {
                    return;
                };
                self.deliver(index, key, now);
            }
            if from_retry {
                self.retry.pop_front();
            } else {
                self.ready.pop_front();
            }
        }
    }

    /// The consumer for the event at `key`, if one can take it now.
    fn pick(&mut self, key: SlotKey) -> Option<usize> {
        let count = self.consumers.len();
        match self.settings.consumer_strategy {
            ConsumerStrategy::DispatchToSingle => self
                .consumers
                .iter()
                .position(|entry| entry.has_free_slot()),
            ConsumerStrategy::RoundRobin => {
                for offset in 0..count {
                    let index = (self.round_robin_next + offset) % count;
                    if self.consumers[index].has_free_slot() {
                        self.round_robin_next = (index + 1) % count;
                        return Some(index);
                    }
                }
                None
            }
            ConsumerStrategy::Pinned | ConsumerStrategy::PinnedByCorrelation => {
                let bucket = self.bucket_of(key)?;
                let index = self.pinned_consumer(bucket)?;
                self.consumers[index].has_free_slot().then_some(index)
            }
        }
    }

    fn bucket_of(&mut self, key: SlotKey) -> Option<usize> {
        let by_correlation =
            self.settings.consumer_strategy == ConsumerStrategy::PinnedByCorrelation;
        let slot = self.slot_mut(key)?;
        let mut hasher = DefaultHasher::new();
        let correlation = by_correlation
            .then(|| correlation_id(&slot.delivery.event_or_link().metadata))
            .flatten();
        match correlation {
            Some(correlation) => correlation.hash(&mut hasher),
            None => slot
                .delivery
                .event_or_link()
                .stream
                .as_str()
                .hash(&mut hasher),
        }
        Some((hasher.finish() % PINNED_BUCKETS as u64) as usize)
    }

    /// The consumer a bucket is pinned to, pinning it to the least loaded one if needed.
    fn pinned_consumer(&mut self, bucket: usize) -> Option<usize> {
        if self.buckets.is_empty() {
            self.buckets = vec![None; PINNED_BUCKETS];
        }
        if let Some(id) = self.buckets[bucket]
            && let Some(index) = self.consumer_index(id)
        {
            return Some(index);
        }
        let index = (0..self.consumers.len()).min_by_key(|&index| self.consumers[index].buckets)?;
        self.consumers[index].buckets += 1;
        self.buckets[bucket] = Some(self.consumers[index].id);
        Some(index)
    }

    fn deliver(&mut self, index: usize, key: SlotKey, now: Instant) {
        let consumer_id = self.consumers[index].id;
        let timeout_ms = self.settings.message_timeout_ms;
        let deadline = (timeout_ms > 0).then(|| now + Duration::from_millis(timeout_ms));
        let Some(slot) = self.slot_mut(key) else {
            return;
        };
        slot.state = SlotState::InFlight {
            consumer: consumer_id,
            deadline,
        };
        let delivery = slot.delivery.clone();
        let entry = &mut self.consumers[index];
        // The channel holds at most the consumer's in-flight events, so it is never full;
        // an error means the consumer went away.
        if entry.sender.try_send(delivery).is_err() {
            if let Some(slot) = self.slot_mut(key) {
                slot.state = SlotState::Ready;
            }
            self.retry.push_back(key);
            self.remove_consumer(index, None);
            return;
        }
        entry.in_flight += 1;
        entry.delivered += 1;
        self.total_delivered += 1;
    }

    fn release(&mut self, consumer: u64) {
        if let Some(index) = self.consumer_index(consumer) {
            let entry = &mut self.consumers[index];
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }

    /// Acked, skipped or parked: the event is done.
    pub(crate) fn finish(&mut self, key: SlotKey) {
        let Some(slot) = self.slot(key) else {
            return;
        };
        let previous = slot.state;
        if previous == SlotState::Done {
            return;
        }
        let ids = slot.delivery.ids();
        if let SlotState::InFlight { consumer, .. } = previous {
            self.release(consumer);
        }
        for id in ids {
            self.ids.remove(id, key);
        }
        self.finished_since_checkpoint += 1;
        match key {
            SlotKey::Main(sequence) => self.window.finish(sequence),
            SlotKey::Replay(key) => {
                self.replay.slots.remove(&key);
            }
        }
    }

    /// Queues the event again; `counted` retries park it after `max_retry_count`.
    pub(crate) fn retry_slot(&mut self, key: SlotKey, counted: bool) {
        let max_retry_count = self.settings.max_retry_count;
        let Some(slot) = self.slot_mut(key) else {
            return;
        };
        if slot.state == SlotState::Done {
            return;
        }
        let previous = std::mem::replace(&mut slot.state, SlotState::Ready);
        let exhausted = counted && slot.delivery.retry_count >= max_retry_count;
        if counted && !exhausted {
            slot.delivery.retry_count += 1;
        }
        if let SlotState::InFlight { consumer, .. } = previous {
            self.release(consumer);
        }
        if exhausted {
            self.to_park.push(key);
        } else {
            self.retry.push_back(key);
        }
    }

    pub(crate) fn park_later(&mut self, key: SlotKey) {
        let Some(slot) = self.slot_mut(key) else {
            return;
        };
        if slot.state == SlotState::Done {
            return;
        }
        let previous = std::mem::replace(&mut slot.state, SlotState::Ready);
        if let SlotState::InFlight { consumer, .. } = previous {
            self.release(consumer);
        }
        self.to_park.push(key);
    }

    /// Retries deliveries whose message timeout passed. In-flight events are bounded by
    /// the consumers' buffers and the window, so a scan is cheap.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.settings.message_timeout_ms == 0 {
            return;
        }
        let expired = |slot: &Slot| matches!(slot.state, SlotState::InFlight { deadline: Some(deadline), .. } if deadline <= now);
        let mut keys: Vec<SlotKey> = self
            .window
            .iter_mut()
            .filter(|(_, slot)| expired(slot))
            .map(|(sequence, _)| SlotKey::Main(sequence))
            .collect();
        keys.extend(
            self.replay
                .slots
                .iter()
                .filter(|(_, slot)| expired(slot))
                .map(|(&key, _)| SlotKey::Replay(key)),
        );
        for key in keys {
            self.retry_slot(key, true);
        }
    }

    /// Lets go of a consumer; its unacknowledged events go to the others.
    pub(crate) fn remove_consumer(&mut self, index: usize, reason: Option<DropReason>) {
        let entry = self.consumers.remove(index);
        if let Some(reason) = reason {
            let _ = entry.dropped.set(reason);
        }
        if self.round_robin_next > index {
            self.round_robin_next -= 1;
        }
        for bucket in &mut self.buckets {
            if *bucket == Some(entry.id) {
                *bucket = None;
            }
        }
        let in_flight = |slot: &Slot| matches!(slot.state, SlotState::InFlight { consumer, .. } if consumer == entry.id);
        let mut keys: Vec<SlotKey> = self
            .window
            .iter_mut()
            .filter(|(_, slot)| in_flight(slot))
            .map(|(sequence, _)| SlotKey::Main(sequence))
            .collect();
        keys.extend(
            self.replay
                .slots
                .iter()
                .filter(|(_, slot)| in_flight(slot))
                .map(|(&key, _)| SlotKey::Replay(key)),
        );
        for key in keys {
            self.retry_slot(key, true);
        }
    }
}

/// The `$correlationId` of JSON event metadata, if any.
fn correlation_id(metadata: &[u8]) -> Option<String> {
    if metadata.is_empty() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(metadata).ok()?;
    value.get(CORRELATION_ID_KEY)?.as_str().map(str::to_owned)
}
