//! Which waiting events an ack or a nack names. Event ids are unique per stream, not in the
//! whole log: a `$all` group can hold two events with one id, and links to one event share
//! its id. So an id names a list of slots, oldest first, and the group resolves each ack to
//! one of them (see `Group::resolve`), never to whichever slot was registered last.

use std::collections::HashMap;

use strata_core::EventId;

use crate::window::SlotKey;

#[derive(Debug, Default)]
pub(crate) struct AckIndex {
    by_id: HashMap<EventId, Vec<SlotKey>>,
}

impl AckIndex {
    /// Registers `key` under `id`, after the slots already there.
    pub(crate) fn insert(&mut self, id: EventId, key: SlotKey) {
        let keys = self.by_id.entry(id).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    /// Forgets `key` under `id`.
    pub(crate) fn remove(&mut self, id: EventId, key: SlotKey) {
        if let Some(keys) = self.by_id.get_mut(&id) {
            keys.retain(|registered| *registered != key);
            if keys.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }

    /// The slots registered under `id`, oldest first.
    pub(crate) fn keys(&self, id: &EventId) -> &[SlotKey] {
        self.by_id.get(id).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_names_several_slots_oldest_first_until_each_is_removed() {
        let mut index = AckIndex::default();
        let id = EventId::new_random();
        index.insert(id, SlotKey::Main(3));
        index.insert(id, SlotKey::Main(7));
        index.insert(id, SlotKey::Main(3));
        index.insert(id, SlotKey::Replay(0));
        assert_eq!(
            index.keys(&id),
            [SlotKey::Main(3), SlotKey::Main(7), SlotKey::Replay(0)]
        );
        index.remove(id, SlotKey::Main(3));
        assert_eq!(index.keys(&id), [SlotKey::Main(7), SlotKey::Replay(0)]);
        index.remove(id, SlotKey::Main(7));
        index.remove(id, SlotKey::Replay(0));
        assert!(index.keys(&id).is_empty());
        assert!(index.by_id.is_empty(), "no entry is left behind");
    }
}
