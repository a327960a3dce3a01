//! The events a group read from its source and has not finished, in source order, with the
//! finished ones above the oldest unfinished event (they become checkpoint ranges).

use std::collections::VecDeque;
use std::time::Instant;

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
}

#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    done_through: Option<u64>,
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

    pub(crate) fn push(&mut self, slot: Slot) -> u64 {
        let sequence = self.base + self.slots.len() as u64;
        self.slots.push_back(slot);
        sequence
    }

    pub(crate) fn get_mut(&mut self, sequence: u64) -> Option<&mut Slot> {
        let index = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(index)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Slot)> {
        let base = self.base;
        self.slots
            .iter_mut()
            .enumerate()
            .map(move |(index, slot)| (base + index as u64, slot))
    }

    /// Drops finished events from the front, moving `done_through` past them.
    pub(crate) fn advance(&mut self) {
        while let Some(front) = self.slots.front() {
            if front.state != SlotState::Done {
                break;
            }
            self.done_through = Some(front.place);
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
    use strata_core::{
        Bytes, ContentType, EventId, Position, RecordedEvent, Revision, StreamName, Timestamp,
    };

    use super::*;

    fn slot(place: u64) -> Slot {
        let event = RecordedEvent {
            stream: StreamName::new("s").unwrap(),
            revision: Revision(place),
            position: Position(place),
            id: EventId::new_random(),
            event_type: "E".into(),
            content_type: ContentType::Json,
            data: Bytes::new(),
            metadata: Bytes::new(),
            created: Timestamp(0),
        };
        let delivery = PersistentEvent {
            event,
            link: None,
            retry_count: 0,
        };
        Slot::new(delivery, place)
    }

    #[test]
    fn out_of_order_finishes_become_ranges_and_the_prefix_advances() {
        let mut window = Window::new(None);
        let sequences: Vec<u64> = (0..6).map(|place| window.push(slot(place * 10))).collect();
        for &sequence in &[sequences[1], sequences[2], sequences[4]] {
            window.get_mut(sequence).unwrap().state = SlotState::Done;
        }
        window.advance();
        assert_eq!(
            window.checkpoint(),
            Checkpoint {
                done_through: None,
                done_ranges: vec![(10, 20), (40, 40)],
            }
        );
        window.get_mut(sequences[0]).unwrap().state = SlotState::Done;
        window.advance();
        assert_eq!(window.done_through(), Some(20));
        assert_eq!(window.len(), 3);
        assert_eq!(window.checkpoint().done_ranges, vec![(40, 40)]);
        assert!(window.get_mut(sequences[0]).is_none());
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
