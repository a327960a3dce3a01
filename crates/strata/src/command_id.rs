//! Caller-supplied command ids, and the event ids derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};
use strata_core::EventId;
use uuid::Uuid;

/// The namespace of event ids derived from command ids (UUID v5). Changing it would make
/// re-sent commands look new: it is part of the stored format.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0b_2c1e_9a47_4d3b_8e61_73a2_c4d9_e018);

/// The identity of one command as the caller sent it. Executing the same command id twice
/// appends its events once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(pub Uuid);

impl CommandId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
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
}
