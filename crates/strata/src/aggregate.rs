//! The `Aggregate` and `DomainEvent` traits, and the `category-id` naming of streams.

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_core::StreamName;

/// An event of a domain, stored as JSON with a type name and a schema version.
///
/// Event enums use serde's default (externally tagged) representation: the stored event
/// type is the variant's serialised name and the stored data is the variant's content.
/// [`DomainEvent::event_type`] must return that same name; every append checks it.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stored event type of this event: its variant's serialised name.
    fn event_type(&self) -> &'static str;

    /// The current schema version of this event's type. Raise it when the shape of a type
    /// changes, and register an upcaster from the old version.
    fn schema_version(&self) -> u32 {
        1
    }
}

/// A consistency boundary: it decides on commands and evolves by applying its events.
///
/// `handle` must be deterministic given the state and the command: a retried command (after
/// a concurrency conflict) is handled again on the newer state.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The category of this aggregate's streams: the stream of `id` is `category-id`.
    const CATEGORY: &'static str;

    /// The version of the serialised state in snapshots. Raise it when the state's shape
    /// changes: older snapshots are then ignored and the aggregate is rebuilt from events.
    const SNAPSHOT_VERSION: u32 = 1;

    type Command: Send + Sync;
    type Event: DomainEvent;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides on `command`: the events it causes, or why it is refused.
    ///
    /// # Errors
    /// The domain's reason to refuse the command.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves the state by one event. Never fails: events are facts.
    fn apply(&mut self, event: &Self::Event);
}

/// The stream of aggregate `id`: `category-id`.
///
/// # Errors
/// [`strata_core::Error::InvalidStreamName`] when the name is too long or contains NUL.
pub fn stream_name<A: Aggregate>(id: &str) -> strata_core::Result<StreamName> {
    StreamName::new(format!("{}-{id}", A::CATEGORY))
}
