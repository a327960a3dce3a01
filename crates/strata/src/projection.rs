//! Projections and process managers: state fed by a catch-up subscription, saved with its
//! checkpoint.
//!
//! The state and the position it has seen are written together, as one event of the
//! checkpoint stream `$checkpoint-<name>`, so a restart resumes exactly after the last event
//! the saved state includes: no gap, no event applied twice to the state. A process
//! manager's commands are effects outside that state: after a crash the events since the
//! checkpoint are handled again, so its commands carry ids derived from their cause
//! ([`crate::CommandId::caused_by`]) and a repeat appends nothing. That suits read
//! models small enough for one event; read models in PostgreSQL tables commit their rows and
//! their checkpoint in one transaction instead (`SqlProjection`, feature `postgres`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_core::{
    Bytes, EventFilter, EventStore, ExpectedRevision, FilterTarget, Position, ProposedEvent,
    ReadStreamOptions, RecordedEvent, StreamMetadata, StreamName, SubscribeFrom, Subscription,
    SubscriptionItem, subscribe_to_all,
};

use crate::error::{Error, Result};

/// The event type of checkpoint records.
pub const CHECKPOINT_EVENT_TYPE: &str = "$checkpoint";

/// Events handled between two checkpoints by default.
pub const CHECKPOINT_EVERY_EVENTS_DEFAULT: u64 = 1_000;

/// How long a following runner waits with unsaved events before it saves a checkpoint.
pub const FOLLOW_CHECKPOINT_IDLE_MS: u64 = 200;

/// Items buffered between the subscription's reader and the projection.
const SUBSCRIPTION_BUFFER_ITEMS: usize = 4_096;

/// A read model: it handles events in the order of `$all`, one at a time.
pub trait Projection: Default + Serialize + DeserializeOwned + Send + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Folds one event into the read model. On error the runner stops, reports the event
    /// and puts the read model back to its last checkpoint.
    ///
    /// # Errors
    /// Why the event cannot be handled.
    fn handle(&mut self, event: &RecordedEvent) -> Result<(), Self::Error>;
}

/// A process manager (saga): reacts to events in `$all` order, typically by executing
/// commands through the repositories in its `Context`, and keeps its own state, saved with
/// its checkpoint by a [`ProcessManagerRunner`].
///
/// Every [`Projection`] is a process manager without context or effects.
pub trait ProcessManager: Default + Serialize + DeserializeOwned + Send + 'static {
    /// What the handler works with besides its state: repositories, clients. Not saved.
    type Context: Send + Sync + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reacts to one event. On error the runner stops, reports the event and puts the state
    /// back to its last checkpoint; the event is handled again on the next run, so every
    /// command sent must be idempotent (see [`crate::CommandId::caused_by`]).
    ///
    /// # Errors
    /// Why the event cannot be handled.
    fn handle(
        &mut self,
        context: &Self::Context,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<P: Projection> ProcessManager for P {
    type Context = ();
    type Error = P::Error;

    async fn handle(&mut self, _context: &(), event: &RecordedEvent) -> Result<(), P::Error> {
        Projection::handle(self, event)
    }
}

/// Which events a projection sees, in `$all` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectionSource {
    /// Every event of every non-system stream.
    All,
    /// Events of streams `category-…`.
    Category(String),
}

impl ProjectionSource {
    pub(crate) fn filter(&self) -> Result<EventFilter> {
        let filter = match self {
            ProjectionSource::All => EventFilter::regex(FilterTarget::StreamName, "^[^$]")?,
            ProjectionSource::Category(category) => {
                EventFilter::prefixes(FilterTarget::StreamName, vec![format!("{category}-")])?
            }
        };
        Ok(filter)
    }
}

/// Events handled by one run, and those not yet in a saved checkpoint.
#[derive(Default)]
struct Progress {
    handled: u64,
    unsaved: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Taken {
    Event,
    CaughtUp,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointRecord<P> {
    /// Every event up to and including this position is in `state`.
    position: u64,
    state: P,
}

/// Runs projection (or process manager) `P` over a store, with its checkpoint in
/// `$checkpoint-<name>`.
pub struct ProjectionRunner<P: ProcessManager, S: ?Sized> {
    store: Arc<S>,
    context: P::Context,
    name: String,
    source: ProjectionSource,
    checkpoint_stream: StreamName,
    checkpoint_every_events: u64,
    read_model: P,
    position: Option<Position>,
    /// The last checkpoint written or read: its data, and the checkpoint stream's revision.
    saved: Option<(Bytes, u64)>,
}

/// Runs process manager `P` over a store: the same runner as projections.
pub type ProcessManagerRunner<P, S> = ProjectionRunner<P, S>;

impl<P: ProcessManager<Context = ()>, S: EventStore + ?Sized> ProjectionRunner<P, S> {
    /// Loads projection `name` from its last checkpoint (or from empty when it has none).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the checkpoint does not deserialise as `P`; an invalid
    /// name; storage errors.
    pub async fn load(store: Arc<S>, name: &str, source: ProjectionSource) -> Result<Self> {
        Self::load_with_context(store, name, source, ()).await
    }
}

impl<P: ProcessManager, S: EventStore + ?Sized> ProjectionRunner<P, S> {
    /// Loads process manager `name` with `context` from its last checkpoint (or from its
    /// default state when it has none).
    ///
    /// # Errors
    /// As [`ProjectionRunner::load`].
    pub async fn load_with_context(
        store: Arc<S>,
        name: &str,
        source: ProjectionSource,
        context: P::Context,
    ) -> Result<Self> {
        let checkpoint_stream = StreamName::new(format!("$checkpoint-{name}"))?;
        let mut runner = Self {
            store,
            context,
            name: name.to_owned(),
            source,
            checkpoint_stream,
            checkpoint_every_events: CHECKPOINT_EVERY_EVENTS_DEFAULT,
            read_model: P::default(),
            position: None,
            saved: None,
        };
        let newest = runner
            .store
            .read_stream(
                &runner.checkpoint_stream,
                ReadStreamOptions::backwards().max_count(1),
            )
            .await?
            .into_events();
        if let Some(event) = newest.first() {
            runner.saved = Some((event.data.clone(), event.revision.0));
            runner.restore_saved()?;
        }
        Ok(runner)
    }

    pub fn with_checkpoint_every_events(mut self, events: u64) -> Self {
        self.checkpoint_every_events = events.max(1);
        self
    }

    pub fn read_model(&self) -> &P {
        &self.read_model
    }

    /// The position of the last event the read model includes.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    fn restore_saved(&mut self) -> Result<()> {
        let Some((data, _)) = &self.saved else {
            self.read_model = P::default();
            self.position = None;
            return Ok(());
        };
        // A reset writes `null`: the projection starts from empty.
        let record: Option<CheckpointRecord<P>> =
            serde_json::from_slice(data).map_err(|error| Error::Checkpoint {
                projection: self.name.clone(),
                reason: error.to_string(),
            })?;
        match record {
            Some(record) => {
                self.read_model = record.state;
                self.position = Some(Position(record.position));
            }
            None => {
                self.read_model = P::default();
                self.position = None;
            }
        }
        Ok(())
    }

    /// Handles every event stored now after the checkpoint, saving checkpoints on the way
    /// and at the end; returns the number of events handled.
    ///
    /// # Errors
    /// [`Error::ProjectionFailed`] naming the event the handler refused (the read model is
    /// put back to the last checkpoint, which is before that event); checkpoint and storage
    /// errors. A second runner of the same projection makes checkpoint writes fail with
    /// [`strata_core::Error::WrongExpectedRevision`].
    pub async fn catch_up(&mut self) -> Result<u64> {
        let mut subscription = self.subscribe()?;
        let mut progress = Progress::default();
        loop {
            let item = subscription.next().await;
            if self.take(item, &mut progress).await? == Taken::CaughtUp {
                return Ok(progress.handled);
            }
        }
    }

    /// Catches up, then keeps handling events as they are appended until `stop` completes;
    /// returns the number of events handled. Checkpoints are saved every
    /// [`ProjectionRunner::with_checkpoint_every_events`] events, after
    /// [`FOLLOW_CHECKPOINT_IDLE_MS`] without a new event, and when stopping, so a clean stop
    /// leaves nothing to handle again.
    ///
    /// # Errors
    /// As [`ProjectionRunner::catch_up`]; [`Error::SubscriptionEnded`] when the store
    /// closes.
    pub async fn follow<F: Future<Output = ()>>(&mut self, stop: F) -> Result<u64> {
        let mut subscription = self.subscribe()?;
        let mut progress = Progress::default();
        let mut stop = std::pin::pin!(stop);
        let idle = Duration::from_millis(FOLLOW_CHECKPOINT_IDLE_MS);
        loop {
            // Only the waits race the stop: an event taken is handled and counted.
            let item = tokio::select! {
                biased;
                () = &mut stop => {
                    if progress.unsaved > 0 {
                        self.save_checkpoint().await?;
                    }
                    return Ok(progress.handled);
                }
                item = subscription.next() => item,
                () = tokio::time::sleep(idle), if progress.unsaved > 0 => {
                    self.save_checkpoint().await?;
                    progress.unsaved = 0;
                    continue;
                }
            };
            self.take(item, &mut progress).await?;
        }
    }

    fn subscribe(&self) -> Result<Subscription> {
        let from = self
            .position
            .map_or(SubscribeFrom::Start, SubscribeFrom::After);
        Ok(subscribe_to_all(
            self.store.clone(),
            from,
            Some(self.source.filter()?),
            SUBSCRIPTION_BUFFER_ITEMS,
        ))
    }

    /// Handles one subscription item, saving a checkpoint when one is due.
    async fn take(
        &mut self,
        item: Option<strata_core::Result<SubscriptionItem>>,
        progress: &mut Progress,
    ) -> Result<Taken> {
        let Some(item) = item else {
            return Err(Error::SubscriptionEnded {
                projection: self.name.clone(),
            });
        };
        match item? {
            SubscriptionItem::Event(event) => {
                let handled =
                    ProcessManager::handle(&mut self.read_model, &self.context, &event).await;
                if let Err(error) = handled {
                    self.restore_saved()?;
                    return Err(Error::ProjectionFailed {
                        projection: self.name.clone(),
                        stream: event.stream,
                        revision: event.revision,
                        position: event.position,
                        event_type: event.event_type,
                        reason: error.to_string(),
                    });
                }
                self.position = Some(event.position);
                progress.handled += 1;
                progress.unsaved += 1;
                if progress.unsaved >= self.checkpoint_every_events {
                    self.save_checkpoint().await?;
                    progress.unsaved = 0;
                }
                Ok(Taken::Event)
            }
            SubscriptionItem::Checkpoint(position) => {
                // Events up to here did not match the source: nothing to re-read.
                if self.position.is_none_or(|current| current < position) {
                    self.position = Some(position);
                    progress.unsaved += 1;
                }
                Ok(Taken::Event)
            }
            SubscriptionItem::CaughtUp => {
                if progress.unsaved > 0 {
                    self.save_checkpoint().await?;
                    progress.unsaved = 0;
                }
                Ok(Taken::CaughtUp)
            }
        }
    }

    /// Forgets the read model and its checkpoint: the next catch-up rebuilds from zero.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn reset(&mut self) -> Result<()> {
        self.read_model = P::default();
        self.position = None;
        self.save_checkpoint().await
    }

    async fn save_checkpoint(&mut self) -> Result<()> {
        let record = CheckpointRecord {
            position: self.position.map_or(0, |position| position.0),
            state: &self.read_model,
        };
        let data = match self.position {
            Some(_) => serde_json::to_vec(&record),
            None => serde_json::to_vec(&serde_json::Value::Null),
        }
        .map_err(|error| Error::Encode {
            event_type: CHECKPOINT_EVENT_TYPE.to_owned(),
            reason: error.to_string(),
        })?;
        let expected = self
            .saved
            .as_ref()
            .map_or(ExpectedRevision::NoStream, |(_, revision)| {
                ExpectedRevision::Exact(*revision)
            });
        let data = Bytes::from(data);
        let event = ProposedEvent::json(CHECKPOINT_EVENT_TYPE, data.clone());
        let result = self
            .store
            .append(&self.checkpoint_stream, expected, vec![event])
            .await?;
        if result.current_revision.0 == 0 {
            let keep_newest = StreamMetadata {
                max_count: Some(1),
                ..StreamMetadata::default()
            };
            self.store
                .set_stream_metadata(&self.checkpoint_stream, ExpectedRevision::Any, &keep_newest)
                .await?;
        }
        self.saved = Some((data, result.current_revision.0));
        Ok(())
    }
}
