//! The workload: clients appending with every expected-revision kind and reading streams and
//! `$all`, and catch-up subscribers on `$all`, all through the official client against one
//! server, recording every call into a [`History`].
//!
//! A workload outlives the server processes it talks to: each [`Phase`] is one server's life.
//! Clients keep what they learnt (stream heads, positions) and subscribers resume after the
//! last event they were delivered, as real applications do after a server restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, Position,
    ReadAllOptions, ReadStreamOptions, RecordedEvent, StreamPosition, StreamState,
    SubscriptionFilter,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::history::{
    Action, AppendOutcome, Expected, History, Micros, Operation, ReadResult, Seen, StreamReadFrom,
    SubscriptionSession,
};

/// The shape of a workload.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent clients, each with its own connection.
    pub clients: u32,
    /// Catch-up subscribers to `$all`, filtered to the workload's streams.
    pub subscribers: u32,
    /// Consumers of one persistent subscription group on `$all` (filtered to the workload's
    /// streams, from the start), acking every event they get.
    pub group_consumers: u32,
    /// Streams the clients share (few, so that expected revisions collide).
    pub streams: u32,
    /// Every stream of the workload starts with this; `$all` is read filtered by it.
    pub prefix: String,
    pub seed: u64,
    /// A call not answered within this is recorded as unanswered.
    pub call_timeout: Duration,
}

impl WorkloadConfig {
    /// Four clients, two subscribers, two group consumers, six streams under a fresh prefix.
    pub fn new(seed: u64) -> Self {
        WorkloadConfig {
            clients: 4,
            subscribers: 2,
            group_consumers: 2,
            streams: 6,
            prefix: format!("check{}-", Uuid::new_v4().simple()),
            seed,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Events per append, at most.
const APPEND_EVENTS_MAX: usize = 3;
/// Events a forwards stream read asks for.
const STREAM_READ_COUNT: u64 = 20;
/// Events a backwards stream read asks for.
const STREAM_HEAD_READ_COUNT: u64 = 3;
/// Events a `$all` read asks for.
const ALL_READ_COUNT: u64 = 50;

/// What one client knows between calls.
struct ClientState {
    number: u32,
    rng: StdRng,
    /// The last revision each stream was seen at (`None`: seen without events).
    heads: HashMap<String, Option<u64>>,
    /// Position of the last event of this client's last acknowledged append.
    last_position: Option<u64>,
}

/// What one subscriber knows between sessions.
struct SubscriberState {
    number: u32,
    after_position: Option<u64>,
}

/// A workload against a sequence of servers.
pub struct Workload {
    config: WorkloadConfig,
    recorder: Recorder,
    clients: Vec<ClientState>,
    subscribers: Vec<SubscriberState>,
}

/// The running clients and subscribers of one phase.
pub struct Phase {
    stop: watch::Sender<bool>,
    clients: Vec<JoinHandle<ClientState>>,
    subscribers: Vec<JoinHandle<SubscriberState>>,
    consumers: Vec<JoinHandle<()>>,
}

/// Errors of the workload's own calls (the final read), not of the calls it records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    #[error("the connection string {url} is not valid: {reason}")]
    Url { url: String, reason: String },
    #[error("the final read of $all failed: {0}")]
    FinalRead(String),
    #[error("a workload task failed: {0}")]
    Task(String),
}

#[derive(Clone)]
struct Recorder {
    clock: Instant,
    history: Arc<Mutex<History>>,
}

impl Recorder {
    fn now(&self) -> Micros {
        self.clock.elapsed().as_micros() as Micros
    }

    fn record(&self, client: u32, invoked_at: Micros, action: Action) {
        let operation = Operation {
            client,
            invoked_at,
            completed_at: self.now(),
            action,
        };
        self.history
            .lock()
            .expect("no recorder panics")
            .operations
            .push(operation);
    }

    fn record_session(&self, session: SubscriptionSession) {
        self.history
            .lock()
            .expect("no recorder panics")
            .sessions
            .push(session);
    }
}

/// A client of `url` that gives up on an unreachable server quickly.
pub fn connect(url: &str) -> Result<Client, WorkloadError> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let settings: ClientSettings =
        format!("{url}{separator}maxDiscoverAttempts=2&discoveryInterval=100")
            .parse()
            .map_err(|error| WorkloadError::Url {
                url: url.to_owned(),
                reason: format!("{error}"),
            })?;
    Client::new(settings).map_err(|error| WorkloadError::Url {
        url: url.to_owned(),
        reason: format!("{error}"),
    })
}

impl Workload {
    pub fn new(config: WorkloadConfig) -> Self {
        let clients = (0..config.clients)
            .map(|number| ClientState {
                number,
                rng: StdRng::seed_from_u64(config.seed ^ u64::from(number) << 32),
                heads: HashMap::new(),
                last_position: None,
            })
            .collect();
        let subscribers = (0..config.subscribers)
            .map(|number| SubscriberState {
                number,
                after_position: None,
            })
            .collect();
        Workload {
            config,
            recorder: Recorder {
                clock: Instant::now(),
                history: Arc::default(),
            },
            clients,
            subscribers,
        }
    }

    /// The time on the history's clock.
    pub fn now(&self) -> Micros {
        self.recorder.now()
    }

    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// A copy of everything recorded so far.
    pub fn history(&self) -> History {
        self.recorder
            .history
            .lock()
            .expect("no recorder panics")
            .clone()
    }

    /// Starts every client and subscriber against the server at `url`.
    ///
    /// # Errors
    /// When `url` is not a valid connection string.
    pub fn start(&mut self, url: &str) -> Result<Phase, WorkloadError> {
        self.start_on(&[url.to_owned()], url)
    }

    /// Starts the clients and subscribers spread over the servers at `nodes` (client `i` on
    /// `nodes[i % n]`, subscriber `j` on `nodes[(j + 1) % n]`), and the group's consumers
    /// through `group_url` (several seeds: the client finds the leader, which runs groups).
    ///
    /// # Errors
    /// When a URL is not a valid connection string.
    ///
    /// # Panics
    /// When `nodes` is empty.
    pub fn start_on(&mut self, nodes: &[String], group_url: &str) -> Result<Phase, WorkloadError> {
        assert!(!nodes.is_empty(), "a workload needs a server");
        let (stop, stopped) = watch::channel(false);
        let mut clients = Vec::new();
        for state in std::mem::take(&mut self.clients) {
            let client = connect(&nodes[state.number as usize % nodes.len()])?;
            let context = ClientContext {
                client,
                recorder: self.recorder.clone(),
                config: self.config.clone(),
            };
            clients.push(tokio::spawn(run_client(context, state, stopped.clone())));
        }
        let mut subscribers = Vec::new();
        for state in std::mem::take(&mut self.subscribers) {
            let client = connect(&nodes[(state.number as usize + 1) % nodes.len()])?;
            let context = ClientContext {
                client,
                recorder: self.recorder.clone(),
                config: self.config.clone(),
            };
            subscribers.push(tokio::spawn(run_subscriber(
                context,
                state,
                stopped.clone(),
                None,
            )));
        }
        let consumers = self.start_consumers(group_url, &stopped)?;
        Ok(Phase {
            stop,
            clients,
            subscribers,
            consumers,
        })
    }
}

impl Phase {
    /// Tells every client and subscriber to start no new call (the ones in flight go on).
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Workload {
    /// Stops a phase: each client finishes (or gives up on) its current call.
    ///
    /// # Errors
    /// When a task panicked.
    pub async fn stop(&mut self, phase: Phase) -> Result<(), WorkloadError> {
        let _ = phase.stop.send(true);
        for task in phase.clients {
            self.clients.push(task.await.map_err(task_error)?);
        }
        for task in phase.subscribers {
            self.subscribers.push(task.await.map_err(task_error)?);
        }
        for task in phase.consumers {
            task.await.map_err(task_error)?;
        }
        self.clients.sort_by_key(|state| state.number);
        self.subscribers.sort_by_key(|state| state.number);
        Ok(())
    }

    /// Runs `f` on everything recorded so far, without copying it (no call may be running).
    pub fn with_history<R>(&self, f: impl FnOnce(&History) -> R) -> R {
        f(&self.recorder.history.lock().expect("no recorder panics"))
    }

    /// Reads the workload's events in `$all` order from the server at `url` (after the run),
    /// recording the read.
    ///
    /// # Errors
    /// When the read fails or does not finish within the call timeout.
    pub async fn read_final_order(&self, url: &str) -> Result<Vec<Seen>, WorkloadError> {
        self.read_order_from(url, None).await
    }

    /// Reads the workload's events that follow `last` in `$all` order (all of them when
    /// `None`), recording the read. The read starts at `last` itself, which must still be
    /// there: that anchors what follows to the order read before.
    ///
    /// # Errors
    /// When the read fails, does not finish within the call timeout, or does not start with
    /// `last`.
    pub async fn read_order_after(
        &self,
        url: &str,
        last: Option<&Seen>,
    ) -> Result<Vec<Seen>, WorkloadError> {
        let mut events = self
            .read_order_from(url, last.map(|last| last.position))
            .await?;
        let Some(last) = last else {
            return Ok(events);
        };
        if events.first() != Some(last) {
            return Err(WorkloadError::FinalRead(format!(
                "$all read from the last event read before, {last:?}, starts with {:?}: the \
                 order read before changed",
                events.first()
            )));
        }
        events.remove(0);
        Ok(events)
    }

    async fn read_order_from(
        &self,
        url: &str,
        from_position: Option<u64>,
    ) -> Result<Vec<Seen>, WorkloadError> {
        let client = connect(url)?;
        let invoked_at = self.recorder.now();
        let start = match from_position {
            Some(position) => StreamPosition::Position(Position {
                commit: position,
                prepare: position,
            }),
            None => StreamPosition::Start,
        };
        let options = ReadAllOptions::default()
            .forwards()
            .position(start)
            .filter(SubscriptionFilter::on_stream_name().add_prefix(&self.config.prefix));
        let events = tokio::time::timeout(
            self.config.call_timeout * 6,
            read_events(&client, ReadTarget::All(options)),
        )
        .await
        .map_err(|_| WorkloadError::FinalRead("no answer".to_owned()))?
        .map_err(|error| WorkloadError::FinalRead(format!("{error}")))?
        .ok_or_else(|| WorkloadError::FinalRead("not found".to_owned()))?;
        let events: Vec<Seen> = self.workload_events(&events);
        self.recorder.record(
            u32::MAX,
            invoked_at,
            Action::ReadAll {
                from_position,
                max_count: u64::MAX,
                result: ReadResult::Events {
                    events: events.clone(),
                    reached_end: true,
                },
            },
        );
        Ok(events)
    }

    /// Runs every subscriber against `url` until it has been delivered the event at
    /// `last_position` (the end of the final order), recording sessions that end caught up.
    /// A subscriber that does not catch up within the call timeout is stopped and recorded
    /// as dropped: the checker then sees only what it got.
    ///
    /// # Errors
    /// When `url` is not valid or a task panicked.
    pub async fn catch_up(&mut self, url: &str, last_position: u64) -> Result<(), WorkloadError> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for state in std::mem::take(&mut self.subscribers) {
            let context = ClientContext {
                client: connect(url)?,
                recorder: self.recorder.clone(),
                config: self.config.clone(),
            };
            tasks.push(tokio::spawn(run_subscriber(
                context,
                state,
                stopped.clone(),
                Some(last_position),
            )));
        }
        let timeout = self.config.call_timeout;
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = stop.send(true);
        });
        for task in tasks {
            self.subscribers.push(task.await.map_err(task_error)?);
        }
        stopper.abort();
        self.subscribers.sort_by_key(|state| state.number);
        Ok(())
    }

    fn start_consumers(
        &self,
        url: &str,
        stopped: &watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, WorkloadError> {
        let mut consumers = Vec::new();
        for number in 0..self.config.group_consumers {
            let context = ClientContext {
                client: connect(url)?,
                recorder: self.recorder.clone(),
                config: self.config.clone(),
            };
            consumers.push(tokio::spawn(run_consumer(context, number, stopped.clone())));
        }
        Ok(consumers)
    }

    /// Runs the group's consumers against `url` until the group has delivered every event of
    /// `final_order` (or three call timeouts passed), then records that they caught up: the
    /// checker then wants every event delivered.
    ///
    /// # Errors
    /// When `url` is not valid or a task panicked.
    pub async fn catch_up_group(
        &mut self,
        url: &str,
        final_order: &[Seen],
    ) -> Result<(), WorkloadError> {
        if self.config.group_consumers == 0 {
            return Ok(());
        }
        let (stop, stopped) = watch::channel(false);
        let consumers = self.start_consumers(url, &stopped)?;
        let deadline = Instant::now() + self.config.call_timeout * 3;
        while Instant::now() < deadline {
            let delivered: std::collections::HashSet<Uuid> = self
                .recorder
                .history
                .lock()
                .expect("no recorder panics")
                .group_deliveries
                .iter()
                .map(|delivery| delivery.event.id)
                .collect();
            if final_order
                .iter()
                .all(|event| delivered.contains(&event.id))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(true);
        for task in consumers {
            task.await.map_err(task_error)?;
        }
        self.recorder
            .history
            .lock()
            .expect("no recorder panics")
            .group_caught_up = true;
        Ok(())
    }

    fn workload_events(&self, events: &[RecordedEvent]) -> Vec<Seen> {
        events
            .iter()
            .filter(|event| event.stream_id().starts_with(&self.config.prefix))
            .map(seen)
            .collect()
    }
}

fn task_error(error: tokio::task::JoinError) -> WorkloadError {
    WorkloadError::Task(format!("{error}"))
}

fn seen(event: &RecordedEvent) -> Seen {
    Seen {
        id: event.id,
        stream: event.stream_id().to_owned(),
        revision: event.revision,
        position: event.position.commit,
    }
}

struct ClientContext {
    client: Client,
    recorder: Recorder,
    config: WorkloadConfig,
}

enum ReadTarget<'a> {
    Stream(&'a str, ReadStreamOptions),
    All(ReadAllOptions),
}

/// Every event of a read; `None` when the stream does not exist.
async fn read_events(
    client: &Client,
    target: ReadTarget<'_>,
) -> kurrentdb::Result<Option<Vec<RecordedEvent>>> {
    let reader = match &target {
        ReadTarget::Stream(stream, options) => client.read_stream(*stream, options).await,
        ReadTarget::All(options) => client.read_all(options).await,
    };
    let mut reader = match reader {
        Ok(reader) => reader,
        Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut events = Vec::new();
    loop {
        match reader.next().await {
            Ok(Some(resolved)) => {
                if let Some(event) = resolved.event {
                    events.push(event);
                }
            }
            Ok(None) => return Ok(Some(events)),
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
            Err(error) => return Err(error),
        }
    }
}

async fn run_client(
    context: ClientContext,
    mut state: ClientState,
    stopped: watch::Receiver<bool>,
) -> ClientState {
    while !*stopped.borrow() {
        let stream = format!(
            "{}{}",
            context.config.prefix,
            state.rng.gen_range(0..context.config.streams)
        );
        let roll = state.rng.gen_range(0..100);
        if roll < 55 {
            append(&context, &mut state, &stream).await;
        } else if roll < 75 {
            let head = state.heads.get(&stream).copied().flatten().unwrap_or(0);
            let from = state.rng.gen_range(0..=head + 1);
            read_stream(
                &context,
                &mut state,
                &stream,
                StreamReadFrom::Revision(from),
            )
            .await;
        } else if roll < 88 {
            read_stream(&context, &mut state, &stream, StreamReadFrom::EndBackwards).await;
        } else {
            let from = state.last_position.filter(|_| state.rng.gen_bool(0.8));
            read_all(&context, &state, from).await;
        }
    }
    state
}

fn expected_for(state: &mut ClientState, stream: &str) -> Expected {
    let head = state.heads.get(stream).copied();
    let roll = state.rng.gen_range(0..100);
    match (roll, head) {
        (0..15, _) => Expected::Any,
        (15..25, _) | (_, None | Some(None)) => Expected::NoStream,
        (25..40, _) => Expected::StreamExists,
        (_, Some(Some(revision))) => match state.rng.gen_range(0..10) {
            0 => Expected::Exact(revision.saturating_sub(1)),
            1 => Expected::Exact(revision + 1),
            _ => Expected::Exact(revision),
        },
    }
}

fn stream_state(expected: Expected) -> StreamState {
    match expected {
        Expected::Any => StreamState::Any,
        Expected::NoStream => StreamState::NoStream,
        Expected::StreamExists => StreamState::StreamExists,
        Expected::Exact(revision) => StreamState::StreamRevision(revision),
    }
}

async fn append(context: &ClientContext, state: &mut ClientState, stream: &str) {
    let expected = expected_for(state, stream);
    let count = state.rng.gen_range(1..=APPEND_EVENTS_MAX);
    let event_ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    let events: Vec<EventData> = event_ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let payload = serde_json::json!({ "client": state.number, "index": index });
            EventData::json("Checked", &payload)
                .expect("a JSON value serializes")
                .id(*id)
        })
        .collect();
    let options = AppendToStreamOptions::default().stream_state(stream_state(expected));
    let invoked_at = context.recorder.now();
    let answer = tokio::time::timeout(
        context.config.call_timeout,
        context.client.append_to_stream(stream, &options, events),
    )
    .await;
    let outcome = match answer {
        Ok(Ok(result)) => {
            state
                .heads
                .insert(stream.to_owned(), Some(result.next_expected_version));
            state.last_position = Some(result.position.commit);
            AppendOutcome::Acknowledged {
                last_revision: result.next_expected_version,
                position: result.position.commit,
            }
        }
        Ok(Err(kurrentdb::Error::WrongExpectedVersion { current, .. })) => {
            let current = match current {
                CurrentRevision::Current(revision) => Some(revision),
                CurrentRevision::NoStream => None,
            };
            state.heads.insert(stream.to_owned(), current);
            AppendOutcome::WrongExpected { current }
        }
        Ok(Err(error)) => AppendOutcome::Unknown {
            error: format!("{error}"),
        },
        Err(_) => AppendOutcome::Unknown {
            error: "no answer within the call timeout".to_owned(),
        },
    };
    context.recorder.record(
        state.number,
        invoked_at,
        Action::Append {
            stream: stream.to_owned(),
            expected,
            event_ids,
            outcome,
        },
    );
}

async fn read_stream(
    context: &ClientContext,
    state: &mut ClientState,
    stream: &str,
    from: StreamReadFrom,
) {
    let (options, max_count) = match from {
        StreamReadFrom::Revision(revision) => (
            ReadStreamOptions::default()
                .forwards()
                .position(StreamPosition::Position(revision))
                .max_count(STREAM_READ_COUNT as usize),
            STREAM_READ_COUNT,
        ),
        StreamReadFrom::EndBackwards => (
            ReadStreamOptions::default()
                .backwards()
                .position(StreamPosition::End)
                .max_count(STREAM_HEAD_READ_COUNT as usize),
            STREAM_HEAD_READ_COUNT,
        ),
    };
    let invoked_at = context.recorder.now();
    let answer = tokio::time::timeout(
        context.config.call_timeout,
        read_events(&context.client, ReadTarget::Stream(stream, options)),
    )
    .await;
    let result = match answer {
        Ok(Ok(Some(events))) => {
            let events: Vec<Seen> = events.iter().map(seen).collect();
            if let (StreamReadFrom::EndBackwards, Some(head)) = (from, events.first()) {
                state.heads.insert(stream.to_owned(), Some(head.revision));
            }
            ReadResult::Events {
                reached_end: (events.len() as u64) < max_count,
                events,
            }
        }
        Ok(Ok(None)) => ReadResult::NotFound,
        Ok(Err(error)) => ReadResult::Failed {
            error: format!("{error}"),
        },
        Err(_) => ReadResult::Failed {
            error: "no answer within the call timeout".to_owned(),
        },
    };
    context.recorder.record(
        state.number,
        invoked_at,
        Action::ReadStream {
            stream: stream.to_owned(),
            from,
            max_count,
            result,
        },
    );
}

async fn read_all(context: &ClientContext, state: &ClientState, from_position: Option<u64>) {
    let start = match from_position {
        Some(position) => StreamPosition::Position(Position {
            commit: position,
            prepare: position,
        }),
        None => StreamPosition::Start,
    };
    let options = ReadAllOptions::default()
        .forwards()
        .position(start)
        .max_count(ALL_READ_COUNT as usize)
        .filter(SubscriptionFilter::on_stream_name().add_prefix(&context.config.prefix));
    let invoked_at = context.recorder.now();
    let answer = tokio::time::timeout(
        context.config.call_timeout,
        read_events(&context.client, ReadTarget::All(options)),
    )
    .await;
    let result = match answer {
        Ok(Ok(Some(events))) => {
            // Filtered by the server: fewer than asked for means nothing followed.
            let reached_end = (events.len() as u64) < ALL_READ_COUNT;
            ReadResult::Events {
                events: events
                    .iter()
                    .filter(|event| event.stream_id().starts_with(&context.config.prefix))
                    .map(seen)
                    .collect(),
                reached_end,
            }
        }
        Ok(Ok(None)) => ReadResult::NotFound,
        Ok(Err(error)) => ReadResult::Failed {
            error: format!("{error}"),
        },
        Err(_) => ReadResult::Failed {
            error: "no answer within the call timeout".to_owned(),
        },
    };
    context.recorder.record(
        state.number,
        invoked_at,
        Action::ReadAll {
            from_position,
            max_count: ALL_READ_COUNT,
            result,
        },
    );
}

#[path = "workload_subscribers.rs"]
mod subscribers;

use subscribers::{run_consumer, run_subscriber};
