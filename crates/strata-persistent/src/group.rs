//! One group as one task: it owns the consumers, the window, the queues and the checkpoint
//! writer, and everything reaches it through one bounded command channel.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use strata_core::{
    Direction, EventFilter, EventId, EventStore, Position, ReadAllOptions, ReadFrom, RecordedEvent,
    StreamName, SubscribeFrom, Subscription, SubscriptionItem, subscribe_to_all,
    subscribe_to_stream,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::ack_index::AckIndex;
use crate::checkpoint::{self, Checkpoint, CheckpointWriter};
use crate::config::GroupDefinition;
use crate::consumer::{
    CONSUMER_BUFFER_MAX, Consumer, ConsumerOptions, NackAction, PersistentEvent,
};
use crate::error::{DropReason, Error, Result};
use crate::info::ConnectionInfo;
use crate::parked::{self, Replay};
use crate::settings::{GroupSettings, StartFrom};
use crate::source::{self, SubscriptionSource};
use crate::window::{Slot, SlotKey, SlotState, Window};

/// Commands waiting for a group before senders (acks included) wait.
const COMMANDS_BUFFERED_MAX: usize = 1_024;

/// How often a group looks for expired deliveries, closed consumers and due checkpoints.
const TICK_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) enum Command {
    Connect {
        options: ConsumerOptions,
        reply: oneshot::Sender<Result<Consumer>>,
    },
    Disconnect {
        consumer: u64,
    },
    Ack {
        consumer: u64,
        ids: Vec<EventId>,
    },
    Nack {
        consumer: u64,
        ids: Vec<EventId>,
        action: NackAction,
    },
    ReplayParked {
        stop_at: Option<u64>,
        reply: oneshot::Sender<Result<()>>,
    },
    Info {
        reply: oneshot::Sender<GroupStats>,
    },
    Stop {
        reason: DropReason,
        reply: oneshot::Sender<()>,
    },
}

/// What a group reports about itself.
/// The status of a group whose source failed (a store error): it delivers nothing and
/// refuses consumers until the manager starts it again ([`crate::PersistentSubscriptions::supervise`]).
pub(crate) const STATUS_FAILED: &str = "NotReady";

pub(crate) struct GroupStats {
    pub(crate) status: &'static str,
    pub(crate) connections: Vec<ConnectionInfo>,
    pub(crate) total_items: u64,
    pub(crate) items_per_second: u64,
    pub(crate) last_checkpointed_place: Option<u64>,
    pub(crate) last_known_place: Option<u64>,
    pub(crate) ready_count: u64,
    pub(crate) retry_count: u64,
    pub(crate) in_flight_count: u64,
    pub(crate) window_count: u64,
}

/// The manager's handle on a running group.
pub(crate) struct GroupHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl GroupHandle {
    pub(crate) fn spawn(
        store: Arc<dyn EventStore>,
        definition: GroupDefinition,
        window_bytes_max: usize,
        leadership: Option<Arc<strata_core::Leadership>>,
    ) -> Result<Self> {
        let (commands, receiver) = mpsc::channel(COMMANDS_BUFFERED_MAX);
        let mut group = Group::new(
            store,
            definition,
            receiver,
            commands.downgrade(),
            leadership,
        )?;
        group.window_bytes_max = window_bytes_max;
        let task = tokio::spawn(group.run());
        Ok(Self { commands, task })
    }

    /// Stops the group and waits until it wrote its last checkpoint.
    pub(crate) async fn stop(self, reason: DropReason) {
        let (reply, done) = oneshot::channel();
        if self
            .commands
            .send(Command::Stop { reason, reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        let _ = self.task.await;
    }
}

pub(crate) struct ConsumerEntry {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) sender: mpsc::Sender<PersistentEvent>,
    pub(crate) dropped: Arc<OnceLock<DropReason>>,
    pub(crate) capacity: usize,
    pub(crate) in_flight: usize,
    pub(crate) delivered: u64,
    pub(crate) buckets: usize,
}

impl ConsumerEntry {
    pub(crate) fn has_free_slot(&self) -> bool {
        self.in_flight < self.capacity
    }
}

pub(crate) struct Group {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) source: SubscriptionSource,
    pub(crate) name: String,
    pub(crate) settings: GroupSettings,
    filter: Option<EventFilter>,
    commands: mpsc::Receiver<Command>,
    commands_sender: mpsc::WeakSender<Command>,
    pub(crate) consumers: Vec<ConsumerEntry>,
    next_consumer_id: u64,
    pub(crate) round_robin_next: usize,
    /// Pinned strategies: bucket → consumer id.
    pub(crate) buckets: Vec<Option<u64>>,
    pub(crate) window: Window,
    pub(crate) window_events_max: usize,
    pub(crate) window_bytes_max: usize,
    /// The waiting events by the ids an ack may name (the event's, and its link's).
    pub(crate) ids: AckIndex,
    pub(crate) ready: VecDeque<u64>,
    pub(crate) retry: VecDeque<SlotKey>,
    pub(crate) to_park: Vec<SlotKey>,
    pub(crate) replay: Replay,
    pub(crate) parked_stream: StreamName,
    checkpoint_stream: StreamName,
    /// Events finished before a restart; they are finished again silently when read.
    resume: Checkpoint,
    subscription: Option<Subscription>,
    checkpoints: Option<CheckpointWriter>,
    pub(crate) finished_since_checkpoint: u64,
    last_checkpoint_at: Instant,
    last_checkpointed_place: Option<u64>,
    last_known_place: Option<u64>,
    pub(crate) total_delivered: u64,
    started_at: Instant,
    live: bool,
    failure: Option<String>,
}

impl Group {
    fn new(
        store: Arc<dyn EventStore>,
        definition: GroupDefinition,
        commands: mpsc::Receiver<Command>,
        commands_sender: mpsc::WeakSender<Command>,
        leadership: Option<Arc<strata_core::Leadership>>,
    ) -> Result<Self> {
        let filter = definition
            .filter
            .as_ref()
            .map(|filter| filter.to_event_filter())
            .transpose()?;
        let parked_stream = source::parked_stream(&definition.source, &definition.group)?;
        let checkpoint_stream = source::checkpoint_stream(&definition.source, &definition.group)?;
        let checkpoints =
            CheckpointWriter::spawn(Arc::clone(&store), checkpoint_stream.clone(), leadership);
        let now = Instant::now();
        Ok(Self {
            window_events_max: definition.settings.window_events_max(),
            window_bytes_max: crate::limits::WINDOW_BYTES_MAX_DEFAULT,
            store,
            source: definition.source,
            name: definition.group,
            settings: definition.settings,
            filter,
            commands,
            commands_sender,
            consumers: Vec::new(),
            next_consumer_id: 1,
            round_robin_next: 0,
            buckets: Vec::new(),
            window: Window::default(),
            ids: AckIndex::default(),
            ready: VecDeque::new(),
            retry: VecDeque::new(),
            to_park: Vec::new(),
            replay: Replay::default(),
            parked_stream,
            checkpoint_stream,
            resume: Checkpoint::default(),
            subscription: None,
            checkpoints: Some(checkpoints),
            finished_since_checkpoint: 0,
            last_checkpoint_at: now,
            last_checkpointed_place: None,
            last_known_place: None,
            total_delivered: 0,
            started_at: now,
            live: false,
            failure: None,
        })
    }

    async fn run(mut self) {
        if let Err(error) = self.start().await {
            tracing::warn!(source = %self.source, group = %self.name, %error, "persistent subscription group failed to start");
            self.failure = Some(error.to_string());
        }
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.housekeeping().await;
            self.dispatch();
            let source_open = self.subscription.is_some() && !self.window_full();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Stop { reason, reply }) => {
                        self.stop(reason).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.handle(command).await,
                    None => {
                        self.stop(DropReason::Shutdown).await;
                        return;
                    }
                },
                item = next_item(&mut self.subscription), if source_open => self.take(item).await,
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// Loads the checkpoint and subscribes to the source after it.
    async fn start(&mut self) -> Result<()> {
        let loaded = checkpoint::load(&*self.store, &self.checkpoint_stream).await?;
        let resume = loaded.unwrap_or_default();
        self.last_checkpointed_place = resume.done_through;
        self.window = Window::new(resume.done_through);
        let buffer = self.settings.source_buffer_events();
        self.subscription = Some(match &self.source {
            SubscriptionSource::Stream(stream) => {
                let from = match (resume.done_through, self.settings.start_from) {
                    (Some(revision), _) => SubscribeFrom::After(strata_core::Revision(revision)),
                    // A group created at the end of an existing stream has a checkpoint
                    // there; without one the stream was empty then, so the end is the start
                    // (recomputing the end now would skip what was written since).
                    (None, StartFrom::Start | StartFrom::End | StartFrom::At(0)) => {
                        SubscribeFrom::Start
                    }
                    (None, StartFrom::At(revision)) => {
                        SubscribeFrom::After(strata_core::Revision(revision - 1))
                    }
                };
                subscribe_to_stream(Arc::clone(&self.store), stream.clone(), from, buffer)
            }
            SubscriptionSource::All => {
                let from = match (resume.done_through, self.settings.start_from) {
                    (Some(position), _) => SubscribeFrom::After(Position(position)),
                    (None, StartFrom::Start | StartFrom::End) => SubscribeFrom::Start,
                    (None, StartFrom::At(position)) => self.all_before(position).await?,
                };
                subscribe_to_all(Arc::clone(&self.store), from, self.filter.clone(), buffer)
            }
        });
        self.resume = resume;
        Ok(())
    }

    /// Subscribing after the event before `position` includes the event at `position`.
    async fn all_before(&self, position: u64) -> Result<SubscribeFrom<Position>> {
        let before = self
            .store
            .read_all(ReadAllOptions {
                direction: Direction::Backwards,
                from: ReadFrom::At(Position(position)),
                max_count: 1,
                filter: None,
            })
            .await?;
        Ok(match before.events.first() {
            Some(event) => SubscribeFrom::After(event.position),
            None => SubscribeFrom::Start,
        })
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Connect { options, reply } => {
                let _ = reply.send(self.connect(options));
            }
            Command::Disconnect { consumer } => {
                if let Some(index) = self.consumer_index(consumer) {
                    self.remove_consumer(index, None);
                }
            }
            Command::Ack { consumer, ids } => {
                for id in ids {
                    if let Some(key) = self.resolve(consumer, &id) {
                        self.finish(key);
                    }
                }
            }
            Command::Nack {
                consumer,
                ids,
                action,
            } => self.nack(consumer, ids, action),
            Command::ReplayParked { stop_at, reply } => {
                let _ = reply.send(self.start_replay(stop_at).await);
            }
            Command::Info { reply } => {
                let _ = reply.send(self.stats());
            }
            // Handled by the loop, which must end after it.
            Command::Stop { reply, .. } => {
                let _ = reply.send(());
            }
        }
    }

    fn nack(&mut self, consumer: u64, ids: Vec<EventId>, action: NackAction) {
        for id in ids {
            let Some(key) = self.resolve(consumer, &id) else {
                continue;
            };
            match action {
                NackAction::Retry | NackAction::Stop => self.retry_slot(key, true),
                NackAction::Skip => self.finish(key),
                NackAction::Park => self.park_later(key),
            }
        }
        if action == NackAction::Stop
            && let Some(index) = self.consumer_index(consumer)
        {
            self.remove_consumer(index, Some(DropReason::StoppedByConsumer));
        }
    }

    fn connect(&mut self, options: ConsumerOptions) -> Result<Consumer> {
        if let Some(cause) = &self.failure {
            return Err(Error::Dropped {
                stream: self.source.to_string(),
                group: self.name.clone(),
                reason: DropReason::Failed(cause.clone()),
            });
        }
        let max = self.settings.max_subscriber_count;
        if max > 0 && self.consumers.len() >= max as usize {
            return Err(Error::MaximumSubscribersReached {
                stream: self.source.to_string(),
                group: self.name.clone(),
                max,
            });
        }
        let Some(commands) = self.commands_sender.upgrade() else {
            return Err(Error::Dropped {
                stream: self.source.to_string(),
                group: self.name.clone(),
                reason: DropReason::Shutdown,
            });
        };
        let capacity = options.buffer_size.clamp(1, CONSUMER_BUFFER_MAX);
        let (sender, deliveries) = mpsc::channel(capacity);
        let id = self.next_consumer_id;
        self.next_consumer_id += 1;
        let dropped = Arc::new(OnceLock::new());
        self.consumers.push(ConsumerEntry {
            id,
            name: options.name,
            sender,
            dropped: Arc::clone(&dropped),
            capacity,
            in_flight: 0,
            delivered: 0,
            buckets: 0,
        });
        Ok(Consumer {
            id,
            source: self.source.clone(),
            group: self.name.clone(),
            deliveries,
            commands,
            dropped,
        })
    }

    /// Takes a batch of ready items from the source.
    async fn take(&mut self, first: Option<strata_core::Result<SubscriptionItem>>) {
        let mut item = first;
        let mut taken = 0usize;
        loop {
            match item {
                Some(Ok(SubscriptionItem::Event(event))) => {
                    self.accept(event).await;
                    taken += 1;
                }
                Some(Ok(SubscriptionItem::CaughtUp)) => self.live = true,
                Some(Ok(SubscriptionItem::Checkpoint(position))) => {
                    self.window.skip_to(position.0);
                }
                Some(Err(error)) => return self.source_failed(error.to_string()),
                None => return self.source_failed("the store closed".to_owned()),
            }
            if taken >= self.settings.read_batch_events() || self.window_full() {
                return;
            }
            let Some(subscription) = self.subscription.as_mut() else {
                return;
            };
            match subscription.next().now_or_never() {
                Some(next) => item = next,
                None => return,
            }
        }
    }

    async fn accept(&mut self, event: RecordedEvent) {
        let place = match self.source {
            SubscriptionSource::Stream(_) => event.revision.0,
            SubscriptionSource::All => event.position.0,
        };
        self.last_known_place = Some(place);
        let delivery = if self.settings.resolve_links {
            parked::resolve(&*self.store, event).await
        } else {
            PersistentEvent {
                event: Some(event),
                link: None,
                retry_count: 0,
            }
        };
        let mut slot = Slot::new(delivery, place);
        if self.resume.covers(place) {
            slot.state = SlotState::Done;
            self.window.push(slot);
            return;
        }
        let ids = slot.delivery.ids();
        let sequence = self.window.push(slot);
        for id in ids {
            self.ids.insert(id, SlotKey::Main(sequence));
        }
        self.ready.push_back(sequence);
    }

    /// The window holds its most events or bytes; an empty one always takes an event, so
    /// an event larger than the byte budget still gets through.
    fn window_full(&self) -> bool {
        self.window.len() >= self.window_events_max
            || (!self.window.is_empty() && self.window.bytes() >= self.window_bytes_max)
    }

    fn source_failed(&mut self, cause: String) {
        tracing::warn!(source = %self.source, group = %self.name, %cause, "persistent subscription source ended");
        self.subscription = None;
        for entry in self.consumers.drain(..) {
            let _ = entry.dropped.set(DropReason::Failed(cause.clone()));
        }
        self.failure = Some(cause);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.expire(now);
        let closed: Vec<u64> = self
            .consumers
            .iter()
            .filter(|entry| entry.sender.is_closed())
            .map(|entry| entry.id)
            .collect();
        for id in closed {
            if let Some(index) = self.consumer_index(id) {
                self.remove_consumer(index, None);
            }
        }
        let due = now.duration_since(self.last_checkpoint_at)
            >= Duration::from_millis(self.settings.checkpoint_after_ms);
        if due && self.finished_since_checkpoint >= self.settings.checkpoint_events_min() {
            self.checkpoint_now();
        }
    }

    /// Writes a checkpoint when enough events finished.
    async fn housekeeping(&mut self) {
        if !self.to_park.is_empty() {
            self.park_pending().await;
        }
        if self.replay.active && self.replay.slots.is_empty() {
            self.replay_next_chunk().await;
        }
        if self.finished_since_checkpoint >= self.settings.checkpoint_events_max() {
            self.checkpoint_now();
        }
    }

    fn checkpoint_now(&mut self) {
        let checkpoint = self.window.checkpoint();
        self.last_checkpointed_place = checkpoint.done_through;
        if let Some(writer) = &self.checkpoints {
            writer.submit(checkpoint);
        }
        self.finished_since_checkpoint = 0;
        self.last_checkpoint_at = Instant::now();
    }

    async fn stop(&mut self, reason: DropReason) {
        self.subscription = None;
        for entry in self.consumers.drain(..) {
            let _ = entry.dropped.set(reason.clone());
        }
        let Some(writer) = self.checkpoints.take() else {
            return;
        };
        if reason == DropReason::Deleted || self.failure.is_some() {
            writer.abandon();
        } else {
            writer.finish(Some(self.window.checkpoint())).await;
        }
    }

    fn stats(&self) -> GroupStats {
        let in_flight: usize = self.consumers.iter().map(|entry| entry.in_flight).sum();
        let elapsed_seconds = self.started_at.elapsed().as_secs().max(1);
        GroupStats {
            status: if self.failure.is_some() {
                STATUS_FAILED
            } else if self.replay.active {
                "ReplayingParkedMessages"
            } else if self.live {
                "Live"
            } else {
                "CatchingUp"
            },
            connections: self
                .consumers
                .iter()
                .map(|entry| ConnectionInfo {
                    name: entry.name.clone(),
                    in_flight: entry.in_flight,
                    available_slots: entry.capacity - entry.in_flight,
                    total_items: entry.delivered,
                })
                .collect(),
            total_items: self.total_delivered,
            items_per_second: self.total_delivered / elapsed_seconds,
            last_checkpointed_place: self.last_checkpointed_place,
            last_known_place: self.last_known_place,
            ready_count: self.ready.len() as u64,
            retry_count: self.retry.len() as u64,
            in_flight_count: in_flight as u64,
            window_count: self.window.len() as u64,
        }
    }

    pub(crate) fn consumer_index(&self, id: u64) -> Option<usize> {
        self.consumers.iter().position(|entry| entry.id == id)
    }
}

async fn next_item(
    subscription: &mut Option<Subscription>,
) -> Option<strata_core::Result<SubscriptionItem>> {
    match subscription {
        Some(subscription) => subscription.next().await,
        None => std::future::pending().await,
    }
}
