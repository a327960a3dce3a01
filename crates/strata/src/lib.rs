//! Strata's toolkit: write business logic as event-sourced aggregates and read models, on
//! any [`EventStore`].
//!
//! - [`Aggregate`] decides on commands ([`Aggregate::handle`]) and evolves by its events
//!   ([`Aggregate::apply`]); its events are [`DomainEvent`]s stored as JSON with a type name
//!   and a schema version, in the stream `category-id`.
//! - [`Repository`] loads an aggregate (newest snapshot + newer events), handles a command
//!   and appends with the revision it loaded; on a concurrency conflict it reloads and
//!   retries a bounded number of times. [`Repository::execute_once`] handles a command at
//!   most once per caller-supplied [`CommandId`].
//! - Snapshots by [`SnapshotPolicy`], in the stream `$snapshot-category-id`; a snapshot that
//!   cannot be read is ignored and the aggregate replayed from its events.
//! - [`Upcasters`] turn old event shapes into current ones while reading.
//! - [`ProjectionRunner`] feeds a [`Projection`] from a catch-up subscription and saves it
//!   with its checkpoint, so a restart resumes without gap or duplicate; it catches up and
//!   returns ([`ProjectionRunner::catch_up`]) or keeps following new events until told to
//!   stop ([`ProjectionRunner::follow`]).
//! - A [`ProcessManager`] (saga) reacts to events with commands, through the same runner:
//!   its state is saved with its checkpoint, and its commands carry ids derived from the
//!   event that caused them ([`CommandId::caused_by`]), so a redelivered event after a
//!   restart sends nothing twice.
//! - With feature `postgres`, `SqlProjectionRunner` keeps a `SqlProjection` in PostgreSQL
//!   tables and commits its rows with its checkpoint in one transaction: exactly once.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use strata::{Aggregate, DomainEvent, Repository};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { value: u64 }
//!
//! #[derive(Serialize, Deserialize)]
//! enum CounterEvent { Incremented { by: u64 } }
//!
//! impl DomainEvent for CounterEvent {
//!     fn event_type(&self) -> &'static str { "Incremented" }
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("cannot increment by zero")]
//! struct ZeroIncrement;
//!
//! impl Aggregate for Counter {
//!     const CATEGORY: &'static str = "counter";
//!     type Command = u64;
//!     type Event = CounterEvent;
//!     type Error = ZeroIncrement;
//!
//!     fn handle(&self, by: &u64) -> Result<Vec<CounterEvent>, ZeroIncrement> {
//!         if *by == 0 { return Err(ZeroIncrement); }
//!         Ok(vec![CounterEvent::Incremented { by: *by }])
//!     }
//!
//!     fn apply(&mut self, event: &CounterEvent) {
//!         match event { CounterEvent::Incremented { by } => self.value += by }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
//! let counters = Repository::<Counter, _>::new(store);
//! counters.execute("a", &2).await?;
//! counters.execute("a", &3).await?;
//! assert!(counters.execute("a", &0).await.is_err());
//! assert_eq!(counters.load("a").await?.aggregate().value, 5);
//! # Ok(())
//! # }
//! ```
//!
//! With the feature `remote`, [`RemoteStore`] runs the same code against a running
//! `strata serve` (over the KurrentDB protocol, with the official client):
//!
//! ```no_run
//! # #[cfg(feature = "remote")]
//! # async fn remote() -> Result<(), Box<dyn std::error::Error>> {
//! # use strata::{Aggregate, DomainEvent};
//! # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Counter { value: u64 }
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Incremented;
//! # impl DomainEvent for Incremented { fn event_type(&self) -> &'static str { "Incremented" } }
//! # impl Aggregate for Counter {
//! #     const CATEGORY: &'static str = "counter";
//! #     type Command = (); type Event = Incremented; type Error = std::convert::Infallible;
//! #     fn handle(&self, _: &()) -> Result<Vec<Incremented>, Self::Error> { Ok(vec![Incremented]) }
//! #     fn apply(&mut self, _: &Incremented) { self.value += 1 }
//! # }
//! let store = strata::RemoteStore::connect_shared("kdb://127.0.0.1:2113?tls=false").await?;
//! let counters = strata::Repository::<Counter, _>::new(store);
//! counters.execute("a", &()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Dependencies: serde and serde_json (the stored form), thiserror, tokio (subscriptions),
//! tracing (a snapshot that fails to write or read is logged, not fatal), uuid with `v5`
//! (event ids derived from command ids); with feature `postgres`, tokio-postgres and
//! async-trait.
#![forbid(unsafe_code)]

mod aggregate;
mod cache;
mod codec;
mod command_id;
mod decision;
mod error;
mod projection;
mod repository;
#[cfg(feature = "shredding")]
pub mod shredding;
mod snapshot;
#[cfg(feature = "postgres")]
mod sql_projection;
mod upcaster;

pub use aggregate::{Aggregate, DomainEvent, stream_name};
pub use codec::decode_event;
pub use command_id::CommandId;
pub use decision::{Decider, Decision, DecisionOutcome, Tagged};
pub use error::{CommandError, Error, Result};
pub use projection::{
    CHECKPOINT_EVENT_TYPE, CHECKPOINT_EVERY_EVENTS_DEFAULT, FOLLOW_CHECKPOINT_IDLE_MS,
    ProcessManager, ProcessManagerRunner, Projection, ProjectionRunner, ProjectionSource,
};
pub use repository::{
    COMMAND_IDS_REMEMBERED_DEFAULT, CONFLICT_RETRIES_DEFAULT, CommandOutcome, Loaded, Repository,
};
pub use snapshot::{SNAPSHOT_EVENT_TYPE, SnapshotPolicy};
#[cfg(feature = "postgres")]
pub use sql_projection::{
    CHECKPOINT_TABLE, SQL_BATCH_EVENTS_DEFAULT, SQL_FOLLOW_COMMIT_IDLE_MS, SqlProjection,
    SqlProjectionRunner,
};
pub use upcaster::{EventShape, UPCAST_STEPS_MAX, Upcasters};

pub use strata_core::{
    AppendCondition, AppendPart, AppendResult, Bytes, EventId, EventStore, ExpectedRevision,
    MultiAppendResult, Position, ProposedEvent, Query, QueryItem, RecordedEvent, Revision,
    StreamName,
};
#[cfg(feature = "remote")]
pub use strata_remote::RemoteStore;

/// Persistent subscriptions (consumer groups with acks, retries, parking and checkpoints in
/// the store), the same manager `strata serve` offers over gRPC:
///
/// ```
/// use strata::persistent::{ConsumerOptions, GroupSettings, NackAction, StartFrom, SubscriptionSource};
/// use strata::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
/// let jobs = StreamName::new("jobs")?;
/// let events = vec![ProposedEvent::json("Queued", "{}"), ProposedEvent::json("Queued", "{}")];
/// store.append(&jobs, ExpectedRevision::NoStream, events).await?;
///
/// let groups = strata::persistent::PersistentSubscriptions::new(store);
/// let source = SubscriptionSource::Stream(jobs);
/// let settings = GroupSettings { start_from: StartFrom::Start, ..GroupSettings::default() };
/// groups.create(&source, "workers", settings, None).await?;
/// let mut worker = groups.connect(&source, "workers", ConsumerOptions::default()).await?;
/// let first = worker.next().await?;
/// worker.nack(vec![first.ack_id()], NackAction::Retry).await?;
/// let second = worker.next().await?;
/// worker.ack(vec![second.ack_id()]).await?;
/// let retried = worker.next().await?;
/// assert_eq!((retried.event_or_link().id, retried.retry_count), (first.event_or_link().id, 1));
/// # Ok(())
/// # }
/// ```
pub use strata_persistent as persistent;
