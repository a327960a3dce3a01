//! The events a group read from its source and has not finished, in source order, with the
//! finished ones above the oldest unfinished event (they become checkpoint ranges). The window
//! knows what it holds in bytes, so a group stops reading at a byte budget as well as at a
//! number of events.

use std::collections::VecDeque;
use std::time::Instant;

use strata_core::{Bytes, RecordedEvent};

use crate::checkpoint::Checkpoint;
use crate::consumer::PersistentEvent;

/// Where an event waits: in the window (by sequence number) or in a parked replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SlotKey {
    Main(u64),
    Replay(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Waiting in the ready or retry queue.
    Ready,
    /// Delivered to `consumer`, to be retried after `deadline` (never when `None`).
    InFlight {
        consumer: u64,
        deadline: Option<Instant>,
    },
    /// Acked, skipped or parked.
    Done,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) delivery: PersistentEvent,
    /// Revision (stream source) or position (`$all`) of the event read from the source.
    pub(crate) place: u64,
    pub(crate) state: SlotState,
}

impl Slot {
    pub(crate) fn new(delivery: PersistentEvent, place: u64) -> Self {
        Self {
            delivery,
            place,
            state: SlotState::Ready,
        }
    }

    /// Bytes the slot holds for as long as it is in the window: the slot itself and the
    /// names it keeps.
    pub(crate) fn overhead_bytes(&self) -> usize {
        let names = |event: &RecordedEvent| event.stream.as_str().len() + event.event_type.len();
        std::mem::size_of::<Slot>()
            + SLOT_INDEX_BYTES
            + self.delivery.event.as_ref().map_or(0, names)
            + self.delivery.link.as_ref().map_or(0, names)
    }

    /// Bytes of data and metadata, held until the event is finished.
    pub(crate) fn payload_bytes(&self) -> usize {
        let payload = |event: &RecordedEvent| event.data.len() + event.metadata.len();
        self.delivery.event.as_ref().map_or(0, payload)
            + self.delivery.link.as_ref().map_or(0, payload)
    }

    /// Drops the data and metadata of a finished event (a checkpoint needs only its place).
    fn release_payload(&mut self) {
        let release = |event: &mut RecordedEvent| {
            event.data = Bytes::new();
            event.metadata = Bytes::new();
        };
        self.delivery
            .event
            .iter_mut()
            .chain(self.delivery.link.iter_mut())
            .for_each(release);
    }
}

/// What a slot costs beyond itself in the group's ack index and queues (two id entries and
/// a queue entry).
const SLOT_INDEX_BYTES: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    done_through: Option<u64>,
    /// Overhead of every slot, plus the payload of the unfinished ones.
    bytes: usize,
}

impl Window {
    pub(crate) fn new(done_through: Option<u64>) -> Self {
        Self {
            done_through,
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a slot: an unfinished one, or one finished before a restart (which holds no
    /// payload and is dropped at once when nothing older is waiting).
    pub(crate) fn push(&mut self, mut slot: Slot) -> u64 {
        let done = slot.state == SlotState::Done;
        if done {
            slot.release_payload();
        }
        self.bytes += slot.overhead_bytes() + slot.payload_bytes();
        let sequence = self.base + self.slots.len() as u64;
        self.slots.push_back(slot);
        if done {
            self.advance();
        }
        sequence
    }

    pub(crate) fn get(&self, sequence: u64) -> Option<&Slot> {
        let index = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        self.slots.get(index)
    }

    pub(crate) fn get_mut(&mut self, sequence: u64) -> Option<&mut Slot> {
        let index = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(index)
    }

    /// Finishes the slot at `sequence`, giving back its payload's bytes, and drops the
    /// finished prefix.
    pub(crate) fn finish(&mut self, sequence: u64) {
        let Some(slot) = self.get_mut(sequence) else {
            return;
        };
        slot.state = SlotState::Done;
        let payload = slot.payload_bytes();
        slot.release_payload();
        self.bytes -= payload;
        self.advance();
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Slot)> {
        let base = self.base;
        self.slots
            .iter_mut()
            .enumerate()
            .map(move |(index, slot)| (base + index as u64, slot))
    }

    /// Drops finished events from the front, moving `done_through` past them.
    fn advance(&mut self) {
        while let Some(front) = self.slots.front() {
            if front.state != SlotState::Done {
                break;
            }
            self.done_through = Some(front.place);
            self.bytes -= front.overhead_bytes();
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Moves `done_through` to `place` when nothing is waiting: a filtered source looked at
    /// everything up to there.
    pub(crate) fn skip_to(&mut self, place: u64) {
        if self.slots.is_empty() && self.done_through.is_none_or(|through| through < place) {
            self.done_through = Some(place);
        }
    }

    #[cfg(test)]
    pub(crate) fn done_through(&self) -> Option<u64> {
        self.done_through
    }

    /// The checkpoint of this window: the finished prefix and the runs of finished events
    /// above it.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        let mut done_ranges: Vec<(u64, u64)> = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        for slot in &self.slots {
            if slot.state == SlotState::Done {
                run = Some(match run {
                    Some((first, _)) => (first, slot.place),
                    None => (slot.place, slot.place),
                });
            } else if let Some(finished) = run.take() {
                done_ranges.push(finished);
            }
        }
        done_ranges.extend(run);
        Checkpoint {
            done_through: self.done_through,
            done_ranges,
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{ContentType, EventId, Position, Revision, StreamName, Timestamp};

    use super::*;

    fn slot_with_data(place: u64, data_bytes: usize) -> Slot {
        let event = RecordedEvent {
            stream: StreamName::new("s").unwrap(),
            revision: Revision(place),
            position: Position(place),
            id: EventId::new_random(),
            event_type: "E".into(),
            content_type: ContentType::Binary,
            data: Bytes::from(vec![7u8; data_bytes]),
            metadata: Bytes::new(),
            created: Timestamp(0),
        };
        let delivery = PersistentEvent {
            event: Some(event),
            link: None,
            retry_count: 0,
        };
        Slot::new(delivery, place)
    }

    fn slot(place: u64) -> Slot {
        slot_with_data(place, 0)
    }

    #[test]
    fn out_of_order_finishes_become_ranges_and_the_prefix_advances() {
        let mut window = Window::new(None);
        let sequences: Vec<u64> = (0..6).map(|place| window.push(slot(place * 10))).collect();
        for &sequence in &[sequences[1], sequences[2], sequences[4]] {
            window.finish(sequence);
        }
        assert_eq!(
            window.checkpoint(),
            Checkpoint {
                done_through: None,
                done_ranges: vec![(10, 20), (40, 40)],
            }
        );
        window.finish(sequences[0]);
        assert_eq!(window.done_through(), Some(20));
        assert_eq!(window.len(), 3);
        assert_eq!(window.checkpoint().done_ranges, vec![(40, 40)]);
        assert!(window.get_mut(sequences[0]).is_none());
    }

    #[test]
    fn bytes_count_payloads_until_finished_and_slots_until_dropped() {
        let mut window = Window::new(None);
        let first = window.push(slot_with_data(0, 1_000));
        let second = window.push(slot_with_data(1, 5_000));
        let overhead = slot(0).overhead_bytes();
        assert_eq!(window.bytes(), 2 * overhead + 6_000);
        window.finish(second);
        assert_eq!(window.bytes(), 2 * overhead + 1_000, "payload given back");
        assert!(
            window
                .get_mut(second)
                .unwrap()
                .delivery
                .event_or_link()
                .data
                .is_empty()
        );
        window.finish(first);
        assert_eq!(window.bytes(), 0, "both dropped from the front");
        window.push(slot_with_data(2, 1_000));
        let mut done = slot_with_data(3, 3_000);
        done.state = SlotState::Done;
        window.push(done);
        assert_eq!(
            window.bytes(),
            2 * overhead + 1_000,
            "a slot finished before a restart holds no payload"
        );
    }

    #[test]
    fn skip_to_moves_only_an_empty_window() {
        let mut window = Window::new(Some(5));
        window.skip_to(9);
        assert_eq!(window.done_through(), Some(9));
        window.push(slot(12));
        window.skip_to(20);
        assert_eq!(window.done_through(), Some(9));
    }
}
