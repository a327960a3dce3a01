//! One connector's task: read the source through a catch-up subscription, publish in log
//! order in bounded batches, wait for the broker, dead-letter what it refuses for good,
//! retry the rest with backoff, checkpoint what is done.
//!
//! Invariant: the checkpoint never passes an event that was neither acknowledged by the
//! broker nor dead-lettered. After a crash the connector resumes after the checkpoint, so
//! every event is delivered at least once; events re-sent are those handled after the last
//! checkpoint (at most `checkpoint_interval_events` plus one batch).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use strata_core::{
    EventFilter, EventStore, FilterTarget, Position, RecordedEvent, Revision, StreamName,
    StreamState, SubscribeFrom, Subscription, SubscriptionItem, SubscriptionOptions,
    subscribe_to_all_with, subscribe_to_stream_with,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::definition::{ConnectorDefinition, Source, StartFrom};
use crate::error::{Error, Result};
use crate::sink::{Delivery, Sink};
use crate::sinks;
use crate::status::{ConnectorState, Shared};
use crate::streams::{self, Checkpoint};
use crate::transform::{Outcome, TransformWorker};

/// Runs until `stop` turns true; a graceful stop writes a last checkpoint.
pub(crate) async fn run(
    store: Arc<dyn EventStore>,
    definition: ConnectorDefinition,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut sink: Option<Box<dyn Sink>>,
) {
    let mut backoff = Backoff::new(&definition);
    shared.set_state(ConnectorState::Starting);
    let mut transform = None;
    while !*stop.borrow() {
        if let (Some(source), None) = (&definition.transform, &transform) {
            match TransformWorker::start(&definition.id, source.clone()).await {
                Ok(worker) => transform = Some(worker),
                Err(error) => {
                    shared.retrying(error);
                    if pause(backoff.next(), &mut stop).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let connected = match sink.take() {
            Some(connected) => Ok(connected),
            None => sinks::connect(&definition.sink).await,
        };
        let mut connected = match connected {
            Ok(connected) => connected,
            Err(error) => {
                shared.retrying(error);
                if pause(backoff.next(), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let mut pump = Pump {
            store: &*store,
            definition: &definition,
            shared: &shared,
            sink: &mut *connected,
            backoff: &mut backoff,
            transform: transform.as_ref(),
        };
        match pump.run(&store, &mut stop).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(connector = %definition.id, %error, "connector restarts from its checkpoint");
                shared.retrying(error.to_string());
                sink = Some(connected);
                // Compiled again on the retry: a transform thread that ended is replaced.
                transform = None;
                if pause(backoff.next(), &mut stop).await {
                    break;
                }
            }
        }
    }
    shared.set_state(ConnectorState::Stopped);
}

/// Waits `delay` unless told to stop first; true when stopping.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = until_stopped(stop) => true,
    };
    stopped || *stop.borrow()
}

/// Resolves once told to stop (or when whoever could tell is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Exponential backoff between retries, from `retry_initial_ms` doubling to `retry_max_ms`.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(definition: &ConnectorDefinition) -> Self {
        let initial = Duration::from_millis(definition.settings.retry_initial_ms);
        Self {
            initial,
            max: Duration::from_millis(definition.settings.retry_max_ms),
            next: initial,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

struct Pump<'a> {
    store: &'a dyn EventStore,
    definition: &'a ConnectorDefinition,
    shared: &'a Shared,
    sink: &'a mut dyn Sink,
    backoff: &'a mut Backoff,
    transform: Option<&'a TransformWorker>,
}

/// Progress not yet checkpointed.
struct Unsaved {
    cursor: Option<u64>,
    events: u64,
    since: Option<Instant>,
}

impl Pump<'_> {
    async fn run(
        &mut self,
        store: &Arc<dyn EventStore>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let id = &self.definition.id;
        let resume = match streams::load_checkpoint(self.store, id).await? {
            Some(checkpoint) => checkpoint.resume,
            None => self.definition.settings.start_from,
        };
        let mut saved = self.resolve(resume).await?;
        self.shared.resumed(resume_cursor(saved));
        if resume == StartFrom::End {
            // `End` became a concrete place: keep it, or a restart would skip what came since.
            self.save(saved).await?;
        }
        let mut subscription = self.subscribe(store, saved)?;
        self.shared.running();
        let settings = &self.definition.settings;
        let mut unsaved = Unsaved {
            cursor: None,
            events: 0,
            since: None,
        };
        loop {
            let deadline = unsaved
                .since
                .map(|since| since + Duration::from_millis(settings.checkpoint_interval_ms));
            let first = tokio::select! {
                _ = until_stopped(stop) => None,
                item = subscription.next() => Some(item),
                _ = sleep_until(deadline) => {
                    self.flush(&mut unsaved, &mut saved).await?;
                    continue;
                }
            };
            let Some(first) = first else {
                self.flush(&mut unsaved, &mut saved).await?;
                return Ok(());
            };
            let mut batch = Batch::default();
            let mut ended = self.take(first, &mut batch)?;
            let mut yielded = false;
            while !ended && batch.events.len() < settings.batch_events_max {
                match subscription.next().now_or_never() {
                    Some(item) => ended = self.take(item, &mut batch)?,
                    // Let the reader task hand over its next page before sending a short batch.
                    None if !yielded => {
                        yielded = true;
                        tokio::task::yield_now().await;
                    }
                    None => break,
                }
            }
            let read = batch.events.len();
            let last = batch
                .events
                .last()
                .map(|event| (self.cursor_of(event), event.position.0, event.created));
            let messages = self.transformed(std::mem::take(&mut batch.events)).await?;
            if self.deliver(&messages, stop).await? {
                // Stopped while retrying: what this batch acknowledged is re-sent later.
                self.flush(&mut unsaved, &mut saved).await?;
                return Ok(());
            }
            if let Some((cursor, position, created)) = last {
                // The batch's last event may have been skipped or dead-lettered by the
                // transform: it is handled all the same.
                self.shared.handled(cursor, position, created);
            }
            if let Some(cursor) = batch.cursor {
                unsaved.cursor = Some(cursor);
                // Skipped events alone (system events, this connector's own checkpoints
                // among them) start no timer: they ride along with the next checkpoint.
                if read > 0 {
                    unsaved.events += read as u64;
                    unsaved.since.get_or_insert_with(Instant::now);
                }
            }
            if unsaved.events >= settings.checkpoint_interval_events {
                self.flush(&mut unsaved, &mut saved).await?;
            }
            if ended {
                self.flush(&mut unsaved, &mut saved).await?;
                return Err(Error::Store(strata_core::Error::Closed));
            }
        }
    }

    /// The messages to publish for `events`: the events themselves without a transform;
    /// with one, what it returned, in order, after dead-lettering the events it failed on.
    async fn transformed(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>> {
        let Some(transform) = self.transform else {
            return Ok(events);
        };
        if events.is_empty() {
            return Ok(events);
        }
        let originals = events.clone();
        let outcomes =
            transform
                .apply(events)
                .await
                .map_err(|reason| Error::InvalidDefinition {
                    id: self.definition.id.clone(),
                    reason,
                })?;
        let mut messages = Vec::with_capacity(outcomes.len());
        for (event, outcome) in originals.iter().zip(outcomes) {
            match outcome {
                Outcome::Publish(message) => messages.push(message),
                Outcome::Skip => self.shared.count_skipped(),
                Outcome::DeadLetter(reason) => {
                    tracing::warn!(connector = %self.definition.id, stream = %event.stream,
                        revision = event.revision.0, %reason, "event dead-lettered by its transform");
                    streams::dead_letter(self.store, &self.definition.id, event, &reason).await?;
                    self.shared.count_dead_lettered();
                }
            }
        }
        Ok(messages)
    }

    fn cursor_of(&self, event: &RecordedEvent) -> u64 {
        match self.definition.source {
            Source::Stream { .. } => event.revision.0,
            _ => event.position.0,
        }
    }

    /// Adds one subscription item to the batch; true when the subscription has ended.
    fn take(
        &self,
        item: Option<strata_core::Result<SubscriptionItem>>,
        batch: &mut Batch,
    ) -> Result<bool> {
        match item {
            None => Ok(true),
            Some(Err(error)) => Err(error.into()),
            Some(Ok(SubscriptionItem::CaughtUp)) => Ok(false),
            Some(Ok(SubscriptionItem::Checkpoint(position))) => {
                batch.cursor = Some(batch.cursor.map_or(position.0, |c| c.max(position.0)));
                Ok(false)
            }
            Some(Ok(SubscriptionItem::Event(event))) => {
                let cursor = match self.definition.source {
                    Source::Stream { .. } => event.revision.0,
                    _ => event.position.0,
                };
                batch.cursor = Some(cursor);
                if self.publishes(&event) {
                    batch.events.push(event);
                }
                Ok(false)
            }
        }
    }

    /// System events never leave through `$all` or a category (they include this
    /// connector's own checkpoints); a category source takes only its own category.
    fn publishes(&self, event: &RecordedEvent) -> bool {
        match &self.definition.source {
            Source::Stream { .. } => true,
            Source::All { .. } => !event.stream.is_system(),
            Source::Category { category } => {
                !event.stream.is_system() && event.stream.category() == category
            }
        }
    }

    /// Publishes `events` until each is acknowledged or dead-lettered; true when asked to
    /// stop while waiting to retry.
    async fn deliver(
        &mut self,
        events: &[RecordedEvent],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        let mut done = 0;
        while done < events.len() {
            let remaining = &events[done..];
            let timeout = Duration::from_millis(self.definition.settings.publish_timeout_ms);
            let deliveries = match tokio::time::timeout(timeout, self.sink.publish(remaining)).await
            {
                Ok(deliveries) => deliveries,
                Err(_) => vec![
                    Delivery::Failed {
                        error: format!(
                            "the sink did not answer within {} ms (publish_timeout_ms)",
                            timeout.as_millis()
                        ),
                    };
                    remaining.len()
                ],
            };
            let mut failure = None;
            for (index, event) in remaining.iter().enumerate() {
                let delivery = deliveries.get(index).cloned().unwrap_or(Delivery::Failed {
                    error: "the sink gave no answer for this event".into(),
                });
                match delivery {
                    Delivery::Acknowledged { duplicate } => self.shared.count_published(duplicate),
                    Delivery::Rejected { reason } => {
                        tracing::warn!(connector = %self.definition.id, stream = %event.stream,
                            revision = event.revision.0, %reason, "event dead-lettered");
                        streams::dead_letter(self.store, &self.definition.id, event, &reason)
                            .await?;
                        self.shared.count_dead_lettered();
                    }
                    Delivery::Failed { error } => {
                        failure = Some(error);
                        break;
                    }
                }
                let cursor = match self.definition.source {
                    Source::Stream { .. } => event.revision.0,
                    _ => event.position.0,
                };
                self.shared.handled(cursor, event.position.0, event.created);
                done += 1;
            }
            match failure {
                None => {
                    self.backoff.reset();
                    self.shared.running();
                }
                Some(error) => {
                    self.shared.count_retried((events.len() - done) as u64);
                    self.shared.retrying(error);
                    if pause(self.backoff.next(), stop).await {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    async fn flush(&self, unsaved: &mut Unsaved, saved: &mut StartFrom) -> Result<()> {
        if let Some(cursor) = unsaved.cursor.take() {
            *saved = StartFrom::After(cursor);
            self.save(*saved).await?;
        }
        unsaved.events = 0;
        unsaved.since = None;
        Ok(())
    }

    async fn save(&self, resume: StartFrom) -> Result<()> {
        streams::save_checkpoint(self.store, &self.definition.id, Checkpoint { resume }).await?;
        self.shared.checkpointed(resume_cursor(resume));
        Ok(())
    }

    /// Turns `End` into the place the source ends at now.
    async fn resolve(&self, resume: StartFrom) -> Result<StartFrom> {
        resolve_end(self.store, &self.definition.source, resume).await
    }

    fn subscribe(&self, store: &Arc<dyn EventStore>, from: StartFrom) -> Result<Subscription> {
        let options = SubscriptionOptions {
            buffer_items: self.definition.settings.buffer_events,
            ..SubscriptionOptions::default()
        };
        Ok(match &self.definition.source {
            Source::Stream { stream } => {
                let from = match from {
                    StartFrom::After(revision) => SubscribeFrom::After(Revision(revision)),
                    StartFrom::End => SubscribeFrom::End,
                    StartFrom::Start => SubscribeFrom::Start,
                };
                subscribe_to_stream_with(Arc::clone(store), stream_name(stream)?, from, options)
            }
            Source::All { filter } => {
                let filter = match filter {
                    Some(spec) => {
                        Some(
                            spec.to_filter()
                                .map_err(|reason| Error::InvalidDefinition {
                                    id: self.definition.id.clone(),
                                    reason,
                                })?,
                        )
                    }
                    None => None,
                };
                subscribe_to_all_with(Arc::clone(store), all_from(from), filter, options)
            }
            Source::Category { category } => {
                let filter =
                    EventFilter::prefixes(FilterTarget::StreamName, vec![category.clone()])?;
                subscribe_to_all_with(Arc::clone(store), all_from(from), Some(filter), options)
            }
        })
    }
}

/// Turns `End` into the place `source` ends at now (other places are returned as they are).
pub(crate) async fn resolve_end(
    store: &dyn EventStore,
    source: &Source,
    resume: StartFrom,
) -> Result<StartFrom> {
    if resume != StartFrom::End {
        return Ok(resume);
    }
    let end = match source {
        Source::Stream { stream } => match store.stream_state(&stream_name(stream)?).await? {
            StreamState::At(revision) => Some(revision.0),
            StreamState::NoStream | StreamState::Tombstoned => None,
        },
        _ => store.last_position().await?.map(|position| position.0),
    };
    Ok(end.map_or(StartFrom::Start, StartFrom::After))
}

#[derive(Default)]
struct Batch {
    events: Vec<RecordedEvent>,
    /// Source cursor after the batch: its last event or checkpoint marker.
    cursor: Option<u64>,
}

fn all_from(from: StartFrom) -> SubscribeFrom<Position> {
    match from {
        StartFrom::After(position) => SubscribeFrom::After(Position(position)),
        StartFrom::End => SubscribeFrom::End,
        StartFrom::Start => SubscribeFrom::Start,
    }
}

fn resume_cursor(resume: StartFrom) -> Option<u64> {
    match resume {
        StartFrom::After(cursor) => Some(cursor),
        StartFrom::Start | StartFrom::End => None,
    }
}

fn stream_name(stream: &str) -> Result<StreamName> {
    Ok(StreamName::new(stream)?)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
