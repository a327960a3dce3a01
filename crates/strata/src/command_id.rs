//! Caller-supplied command ids, and the event ids derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};
use strata_core::EventId;
use uuid::Uuid;

/// The namespace of event ids derived from command ids (UUID v5). Changing it would make
/// re-sent commands look new: it is part of the stored format.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0b_2c1e_9a47_4d3b_8e61_73a2_c4d9_e018);

/// The namespace of command ids derived from the events that caused them (UUID v5): part
/// of the stored format for the same reason.
const REACTION_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2b7c_90e4_5d18_4f6a_a3c2_1e8f_60d5_b947);

/// The identity of one command as the caller sent it. Executing the same command id twice
/// appends its events once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(pub Uuid);

impl CommandId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id of the command a process manager sends as `step` of its reaction to event
    /// `cause`: the same on every delivery of that event, so a redelivered event (after a
    /// restart from an older checkpoint) sends each command at most once.
    pub fn caused_by(cause: EventId, step: &str) -> Self {
        let mut name = Vec::with_capacity(16 + step.len());
        name.extend_from_slice(cause.0.as_bytes());
        name.extend_from_slice(step.as_bytes());
        Self(Uuid::new_v5(&REACTION_ID_NAMESPACE, &name))
    }

    /// The id of the `index`-th event this command causes: the same command always gets
    /// the same event ids, so the store recognises a re-sent append.
    pub fn event_id(&self, index: usize) -> EventId {
        let mut name = [0_u8; 24];
        name[..16].copy_from_slice(self.0.as_bytes());
        name[16..].copy_from_slice(&(index as u64).to_le_bytes());
        EventId(Uuid::new_v5(&EVENT_ID_NAMESPACE, &name))
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        let command = CommandId(Uuid::from_u128(7));
        assert_eq!(command.event_id(0), command.event_id(0));
        assert_ne!(command.event_id(0), command.event_id(1));
        assert_ne!(
            command.event_id(0),
            CommandId(Uuid::from_u128(8)).event_id(0)
        );
    }

    #[test]
    fn reaction_ids_depend_on_the_cause_and_the_step_only() {
        let cause = EventId(Uuid::from_u128(42));
        assert_eq!(
            CommandId::caused_by(cause, "debit"),
            CommandId::caused_by(cause, "debit")
        );
        assert_ne!(
            CommandId::caused_by(cause, "debit"),
            CommandId::caused_by(cause, "credit")
        );
        assert_ne!(
            CommandId::caused_by(cause, "debit"),
            CommandId::caused_by(EventId(Uuid::from_u128(43)), "debit")
        );
    }
}
