//! Read models in PostgreSQL, updated exactly once per event.
//!
//! A [`SqlProjection`] writes its rows inside a transaction the runner opens; the runner
//! moves the projection's checkpoint (a row of [`CHECKPOINT_TABLE`]) in the same
//! transaction and commits both together. A crash before the commit loses both, a crash
//! after it keeps both: a restart resumes right after the last committed event, so every
//! event is in the tables exactly once.
//!
//! The checkpoint update is conditional on the position the runner last committed, so a
//! second runner of the same projection fails instead of writing rows twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_core::{
    EventStore, Position, RecordedEvent, SubscribeFrom, Subscription, SubscriptionItem,
    subscribe_to_all,
};
use tokio_postgres::{Client, Transaction};

use crate::error::{Error, Result};
use crate::projection::ProjectionSource;

/// The table holding the checkpoint of every SQL projection of a database schema.
pub const CHECKPOINT_TABLE: &str = "strata_projection_checkpoints";

/// Events written per transaction by default.
pub const SQL_BATCH_EVENTS_DEFAULT: usize = 500;

/// How long a following runner keeps a transaction with handled events open, waiting for
/// more, before it commits.
pub const SQL_FOLLOW_COMMIT_IDLE_MS: u64 = 50;

/// Items buffered between the subscription's reader and the runner.
const SUBSCRIPTION_BUFFER_ITEMS: usize = 4_096;

/// A read model kept in PostgreSQL tables, fed events in `$all` order.
#[async_trait]
pub trait SqlProjection: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates the read model's tables when they are missing.
    ///
    /// # Errors
    /// Why the tables cannot be created.
    async fn create_tables(&self, transaction: &Transaction<'_>) -> Result<(), Self::Error>;

    /// Applies one event inside `transaction`, which also moves the checkpoint. On error the
    /// transaction is rolled back and the runner stops naming the event.
    ///
    /// # Errors
    /// Why the event cannot be applied.
    async fn handle(
        &self,
        transaction: &Transaction<'_>,
        event: &RecordedEvent,
    ) -> Result<(), Self::Error>;

    /// Empties the read model's tables before a rebuild from the first event.
    ///
    /// # Errors
    /// Why the tables cannot be emptied.
    async fn clear(&self, transaction: &Transaction<'_>) -> Result<(), Self::Error>;
}

/// Runs [`SqlProjection`] `P` over a store, committing rows and checkpoint together.
pub struct SqlProjectionRunner<P, S: ?Sized> {
    store: Arc<S>,
    client: Client,
    projection: P,
    name: String,
    source: ProjectionSource,
    batch_events_max: usize,
    /// The last committed position: every event up to it is in the tables.
    committed: Option<Position>,
}

/// What one transaction has taken so far.
#[derive(Default)]
struct Batch {
    events: usize,
    /// The position the checkpoint moves to when the batch commits.
    position: Option<Position>,
}

impl<P: SqlProjection, S: EventStore + ?Sized> SqlProjectionRunner<P, S> {
    /// Prepares projection `name`: creates the checkpoint table and the projection's tables
    /// when missing and reads its checkpoint.
    ///
    /// # Errors
    /// [`Error::ReadModel`] when the database refuses.
    pub async fn load(
        store: Arc<S>,
        mut client: Client,
        name: &str,
        source: ProjectionSource,
        projection: P,
    ) -> Result<Self> {
        let database = |reason: String| Error::ReadModel {
            projection: name.to_owned(),
            reason,
        };
        let transaction = client
            .transaction()
            .await
            .map_err(|error| database(error.to_string()))?;
        transaction
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
                     name text PRIMARY KEY,
                     position bigint,
                     updated_at timestamptz NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|error| database(error.to_string()))?;
        projection
            .create_tables(&transaction)
            .await
            .map_err(|error| database(error.to_string()))?;
        transaction
            .execute(
                &format!(
                    "INSERT INTO {CHECKPOINT_TABLE} (name, position) VALUES ($1, NULL)
                     ON CONFLICT (name) DO NOTHING"
                ),
                &[&name],
            )
            .await
            .map_err(|error| database(error.to_string()))?;
        let row = transaction
            .query_one(
                &format!("SELECT position FROM {CHECKPOINT_TABLE} WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(|error| database(error.to_string()))?;
        let stored: Option<i64> = row.get(0);
        transaction
            .commit()
            .await
            .map_err(|error| database(error.to_string()))?;
        let committed = stored
            .map(|position| {
                u64::try_from(position)
                    .map(Position)
                    .map_err(|_| database(format!("stored checkpoint {position} is negative")))
            })
            .transpose()?;
        Ok(Self {
            store,
            client,
            projection,
            name: name.to_owned(),
            source,
            batch_events_max: SQL_BATCH_EVENTS_DEFAULT,
            committed,
        })
    }

    pub fn with_batch_events(mut self, events: usize) -> Self {
        self.batch_events_max = events.max(1);
        self
    }

    /// The position of the last event the tables include.
    pub fn position(&self) -> Option<Position> {
        self.committed
    }

    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Empties the tables and forgets the checkpoint in one transaction; the next catch-up
    /// rebuilds from the first event.
    ///
    /// # Errors
    /// [`Error::ReadModel`] when the database refuses or another runner moved the
    /// checkpoint.
    pub async fn reset(&mut self) -> Result<()> {
        let transaction = self
            .client
            .transaction()
            .await
            .map_err(|error| read_model_error(&self.name, &error))?;
        self.projection
            .clear(&transaction)
            .await
            .map_err(|error| read_model_error(&self.name, &error))?;
        move_checkpoint(&transaction, &self.name, self.committed, None).await?;
        transaction
            .commit()
            .await
            .map_err(|error| read_model_error(&self.name, &error))?;
        self.committed = None;
        Ok(())
    }

    /// Applies every event stored now after the checkpoint, committing every
    /// [`SqlProjectionRunner::with_batch_events`] events and at the end; returns the number
    /// of events applied.
    ///
    /// # Errors
    /// [`Error::ProjectionFailed`] naming the event the projection refused (its batch is
    /// rolled back; the checkpoint stays at the last commit); [`Error::ReadModel`] for
    /// database errors; storage errors.
    pub async fn catch_up(&mut self) -> Result<u64> {
        self.run(None::<std::future::Pending<()>>).await
    }

    /// Catches up, then keeps applying events as they are appended until `stop` completes;
    /// returns the number of events applied. A batch commits when full, after
    /// [`SQL_FOLLOW_COMMIT_IDLE_MS`] without a new event, and when stopping.
    ///
    /// # Errors
    /// As [`SqlProjectionRunner::catch_up`]; [`Error::SubscriptionEnded`] when the store
    /// closes.
    pub async fn follow<F: Future<Output = ()>>(&mut self, stop: F) -> Result<u64> {
        self.run(Some(stop)).await
    }

    async fn run<F: Future<Output = ()>>(&mut self, stop: Option<F>) -> Result<u64> {
        let from = self
            .committed
            .map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let mut subscription = subscribe_to_all(
            self.store.clone(),
            from,
            Some(self.source.filter()?),
            SUBSCRIPTION_BUFFER_ITEMS,
        );
        let following = stop.is_some();
        let mut stop = std::pin::pin!(async {
            match stop {
                Some(stop) => stop.await,
                None => std::future::pending().await,
            }
        });
        let mut applied = 0;
        loop {
            let outcome = self
                .run_batch(&mut subscription, &mut stop, following)
                .await?;
            applied += outcome.applied;
            if outcome.finished {
                return Ok(applied);
            }
        }
    }

    /// Fills one transaction from the subscription and commits it; says whether the run is
    /// over (caught up when not following, or told to stop). The transaction opens with the
    /// first item to write, so an idle follower holds no transaction open.
    async fn run_batch<F: Future<Output = ()>>(
        &mut self,
        subscription: &mut Subscription,
        stop: &mut Pin<&mut F>,
        following: bool,
    ) -> Result<BatchOutcome> {
        let Self {
            client,
            projection,
            name,
            committed,
            batch_events_max,
            ..
        } = self;
        let mut pending = loop {
            let item = tokio::select! {
                biased;
                () = stop.as_mut() => return Ok(BatchOutcome::finished(0)),
                item = subscription.next() => item,
            };
            match subscription_item(name, item)? {
                SubscriptionItem::CaughtUp if !following => return Ok(BatchOutcome::finished(0)),
                SubscriptionItem::CaughtUp => continue,
                item => break Some(item),
            }
        };
        let transaction = client
            .transaction()
            .await
            .map_err(|error| read_model_error(name, &error))?;
        let mut batch = Batch::default();
        let idle = Duration::from_millis(SQL_FOLLOW_COMMIT_IDLE_MS);
        let mut finished = false;
        while batch.events < *batch_events_max {
            let item = match pending.take() {
                Some(item) => item,
                None => {
                    let item = tokio::select! {
                        biased;
                        () = stop.as_mut() => { finished = true; break; }
                        item = subscription.next() => item,
                        () = tokio::time::sleep(idle), if following => break,
                    };
                    subscription_item(name, item)?
                }
            };
            match item {
                SubscriptionItem::Event(event) => {
                    if let Err(error) = projection.handle(&transaction, &event).await {
                        return Err(Error::ProjectionFailed {
                            projection: name.clone(),
                            stream: event.stream,
                            revision: event.revision,
                            position: event.position,
                            event_type: event.event_type,
                            reason: error.to_string(),
                        });
                    }
                    batch.events += 1;
                    batch.position = Some(event.position);
                }
                SubscriptionItem::Checkpoint(position) => {
                    if committed.is_none_or(|current| current < position) {
                        batch.position = Some(position);
                    }
                }
                SubscriptionItem::CaughtUp => {
                    if !following {
                        finished = true;
                        break;
                    }
                }
            }
        }
        if let Some(position) = batch.position {
            move_checkpoint(&transaction, name, *committed, Some(position)).await?;
            transaction
                .commit()
                .await
                .map_err(|error| read_model_error(name, &error))?;
            *committed = Some(position);
        }
        Ok(BatchOutcome {
            applied: batch.events as u64,
            finished,
        })
    }
}

fn subscription_item(
    name: &str,
    item: Option<strata_core::Result<SubscriptionItem>>,
) -> Result<SubscriptionItem> {
    let item = item.ok_or_else(|| Error::SubscriptionEnded {
        projection: name.to_owned(),
    })?;
    Ok(item?)
}

struct BatchOutcome {
    applied: u64,
    finished: bool,
}

impl BatchOutcome {
    fn finished(applied: u64) -> Self {
        Self {
            applied,
            finished: true,
        }
    }
}

/// Moves the checkpoint of `name` from `from` to `to` inside `transaction`.
async fn move_checkpoint(
    transaction: &Transaction<'_>,
    name: &str,
    from: Option<Position>,
    to: Option<Position>,
) -> Result<()> {
    let as_column = |position: Option<Position>| -> Result<Option<i64>> {
        position
            .map(|position| {
                i64::try_from(position.0).map_err(|_| Error::ReadModel {
                    projection: name.to_owned(),
                    reason: format!("position {position} does not fit a bigint column"),
                })
            })
            .transpose()
    };
    let moved = transaction
        .execute(
            &format!(
                "UPDATE {CHECKPOINT_TABLE} SET position = $3, updated_at = now()
                 WHERE name = $1 AND position IS NOT DISTINCT FROM $2"
            ),
            &[&name, &as_column(from)?, &as_column(to)?],
        )
        .await
        .map_err(|error| read_model_error(name, &error))?;
    if moved != 1 {
        return Err(Error::ReadModel {
            projection: name.to_owned(),
            reason: "its checkpoint moved under this runner: another runner of the same \
                     projection is writing; run one at a time"
                .to_owned(),
        });
    }
    Ok(())
}

fn read_model_error(name: &str, error: &dyn std::error::Error) -> Error {
    let mut reason = error.to_string();
    if let Some(source) = error.source() {
        reason = format!("{reason}: {source}");
    }
    Error::ReadModel {
        projection: name.to_owned(),
        reason,
    }
}
