//! Aggregates kept in memory between commands, so a command reads only the events appended
//! since its aggregate was last used instead of replaying from the snapshot.

use std::collections::HashMap;
use std::sync::Mutex;

use strata_core::StreamName;

use crate::repository::Loaded;

/// At most `capacity` loaded aggregates, by stream. An entry is taken out while a command
/// uses it and put back after the command's append, so two commands never share one.
pub(crate) struct AggregateCache<A> {
    capacity: usize,
    entries: Mutex<HashMap<StreamName, Loaded<A>>>,
}

impl<A> AggregateCache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn take(&self, stream: &StreamName) -> Option<Loaded<A>> {
        self.lock().remove(stream)
    }

    /// Keeps `loaded`; when full, another entry (whichever the map yields first) makes room.
    pub(crate) fn put(&self, stream: StreamName, loaded: Loaded<A>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity
            && !entries.contains_key(&stream)
            && let Some(evicted) = entries.keys().next().cloned()
        {
            entries.remove(&evicted);
        }
        entries.insert(stream, loaded);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamName, Loaded<A>>> {
        // A panic while holding the lock cannot leave a half-made entry: keep going.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
