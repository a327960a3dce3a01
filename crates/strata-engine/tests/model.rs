//! Model-based property test: random appends (alone and in concurrent batches), re-sends
//! of earlier appends with their ids, metadata (`$maxCount`, `$maxAge`, `$tb`), soft
//! deletes and tombstones with every expected revision, checks without writing, clock
//! moves, reads and reopens of the engine, compared step by step with a plain in-memory
//! model of the contract.
//!
//! The model is written here from KurrentDB's rules, independently of
//! `strata_core::rules`: the point is a second opinion. Cases: 24 by default (CI), more
//! with `PROPTEST_CASES`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use strata_core::{
    AppendResult, Error, EventId, EventStore, ExpectedRevision, Limits, ManualClock, Position,
    ProposedEvent, ReadAllOptions, ReadStreamOptions, Revision, StreamName, StreamSlice,
    StreamState, Timestamp,
};
use strata_engine::{Config, Store};

const STREAMS: [&str; 4] = ["cart-1", "cart-2", "order-1", "$system-1"];

/// `$tb` of a soft-deleted stream.
const DELETED: u64 = i64::MAX as u64;

/// Proptest cases when `PROPTEST_CASES` does not say.
const CASES_DEFAULT: u32 = 24;

#[derive(Clone, Debug)]
enum Op {
    Write(WriteOp),
    /// Write operations sent together, so that they share groups and the writer plans
    /// them against heads not yet published.
    Concurrent(Vec<WriteOp>),
    ReadStream {
        stream: usize,
        metadata_stream: bool,
        backwards: bool,
        from: u64,
        count: usize,
    },
    ReadAll {
        backwards: bool,
        count: usize,
    },
    Check {
        stream: usize,
        expected: ExpectedRevision,
    },
    Advance {
        seconds: u64,
    },
    Reopen,
}

#[derive(Clone, Debug)]
enum WriteOp {
    Append {
        stream: usize,
        expected: ExpectedRevision,
        sizes: Vec<usize>,
    },
    /// Sends an earlier append's events again, with its expected revision or with `Any`.
    Resend { pick: usize, any: bool },
    Metadata {
        stream: usize,
        expected: ExpectedRevision,
        max_count: Option<u64>,
        max_age_seconds: Option<u64>,
        truncate_before: Option<u64>,
    },
    Delete {
        stream: usize,
        expected: ExpectedRevision,
        tombstone: bool,
    },
}

fn expected_strategy() -> impl Strategy<Value = ExpectedRevision> {
    prop_oneof![
        3 => Just(ExpectedRevision::Any),
        1 => Just(ExpectedRevision::NoStream),
        1 => Just(ExpectedRevision::StreamExists),
        2 => (0u64..6).prop_map(ExpectedRevision::Exact),
    ]
}

fn write_strategy() -> impl Strategy<Value = WriteOp> {
    let size = prop_oneof![8 => 0usize..300, 1 => 10_000usize..40_000];
    let truncate_before = prop_oneof![
        4 => Just(None),
        1 => (0u64..6).prop_map(Some),
        1 => Just(Some(DELETED)),
    ];
    prop_oneof![
        10 => (0..STREAMS.len(), expected_strategy(), prop::collection::vec(size, 1..5))
            .prop_map(|(stream, expected, sizes)| WriteOp::Append { stream, expected, sizes }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, any)| WriteOp::Resend { pick, any }),
        2 => (
            0..STREAMS.len(),
            expected_strategy(),
            prop::option::of(1u64..4),
            prop::option::of(1u64..30),
            truncate_before,
        )
            .prop_map(|(stream, expected, max_count, max_age_seconds, truncate_before)| {
                WriteOp::Metadata { stream, expected, max_count, max_age_seconds, truncate_before }
            }),
        2 => (0..STREAMS.len(), expected_strategy(), any::<bool>())
            .prop_map(|(stream, expected, tombstone)| WriteOp::Delete { stream, expected, tombstone }),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => write_strategy().prop_map(Op::Write),
        3 => prop::collection::vec(write_strategy(), 2..6).prop_map(Op::Concurrent),
        3 => (0..STREAMS.len(), any::<bool>(), any::<bool>(), 0u64..8, 1usize..6)
            .prop_map(|(stream, metadata_stream, backwards, from, count)| Op::ReadStream {
                stream, metadata_stream, backwards, from, count,
            }),
        1 => (any::<bool>(), 1usize..50).prop_map(|(backwards, count)| Op::ReadAll { backwards, count }),
        1 => (0..STREAMS.len(), expected_strategy())
            .prop_map(|(stream, expected)| Op::Check { stream, expected }),
        1 => (1u64..40).prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Reopen),
    ]
}

/// One event as the model keeps it.
#[derive(Clone, Debug)]
struct ModelEvent {
    id: EventId,
    event_type: String,
    data: Vec<u8>,
    created_nanos: i64,
}

#[derive(Default)]
struct ModelStream {
    events: Vec<ModelEvent>,
    tombstoned: bool,
}

impl ModelStream {
    fn last(&self) -> Option<u64> {
        (self.events.len() as u64).checked_sub(1)
    }

    fn state(&self) -> StreamState {
        match (self.tombstoned, self.last()) {
            (true, _) => StreamState::Tombstoned,
            (false, Some(last)) => StreamState::At(Revision(last)),
            (false, None) => StreamState::NoStream,
        }
    }
}

/// A write, made concrete: its events and ids are fixed before it is sent.
#[derive(Clone, Debug)]
enum Write {
    Append {
        stream: String,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    },
    Delete {
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
    },
}

/// What the model says a write comes to.
#[derive(Debug, PartialEq)]
enum Predicted {
    /// Written; the append's last revision (0 for a delete).
    Written(u64),
    /// A re-send: the original's last revision and position.
    AlreadyThere(u64, Position),
    Wrong(StreamState),
    Deleted(String),
}

/// What the store said, in the same terms.
#[derive(Debug)]
enum Observed {
    Appended(AppendResult),
    Deleted,
    Wrong(StreamState),
    StreamDeleted(String),
}

fn observed<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> Observed) -> Observed {
    match result {
        Ok(value) => ok(value),
        Err(Error::WrongExpectedRevision { actual, .. }) => Observed::Wrong(actual),
        Err(Error::StreamDeleted { stream }) => Observed::StreamDeleted(stream.to_string()),
        Err(other) => panic!("an error outside the rules: {other}"),
    }
}

#[derive(Default)]
struct Model {
    streams: HashMap<String, ModelStream>,
    /// `$all` in log order.
    all: Vec<(String, ModelEvent)>,
    now_nanos: i64,
    /// Where each event id the store wrote landed: the position of its append's last event.
    positions: HashMap<EventId, Position>,
}

fn metadata_stream_of(stream: &str) -> String {
    format!("$${stream}")
}

impl Model {
    fn stream(&self, name: &str) -> &ModelStream {
        static EMPTY: std::sync::OnceLock<ModelStream> = std::sync::OnceLock::new();
        self.streams
            .get(name)
            .unwrap_or_else(|| EMPTY.get_or_init(ModelStream::default))
    }

    /// The JSON object of the last event of `$$stream` (empty when none or not an object).
    fn metadata(&self, stream: &str) -> Map<String, Value> {
        self.stream(&metadata_stream_of(stream))
            .events
            .last()
            .and_then(|event| serde_json::from_slice::<Value>(&event.data).ok())
            .and_then(|value| match value {
                Value::Object(object) => Some(object),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn metadata_u64(&self, stream: &str, key: &str) -> Option<u64> {
        self.metadata(stream).get(key).and_then(Value::as_u64)
    }

    fn soft_deleted(&self, stream: &str) -> bool {
        !stream.starts_with("$$") && self.metadata_u64(stream, "$tb") == Some(DELETED)
    }

    fn push(&mut self, stream: &str, event_type: &str, id: EventId, data: Vec<u8>) {
        let event = ModelEvent {
            id,
            event_type: event_type.to_owned(),
            data,
            created_nanos: self.now_nanos,
        };
        self.all.push((stream.to_owned(), event.clone()));
        self.streams
            .entry(stream.to_owned())
            .or_default()
            .events
            .push(event);
    }

    /// The refusals every write to `stream` starts with.
    fn refusal(&self, stream: &str) -> Option<Predicted> {
        if let Some(described) = stream.strip_prefix("$$")
            && self.stream(described).tombstoned
            && self.stream(stream).events.is_empty()
        {
            return Some(Predicted::Deleted(described.to_owned()));
        }
        self.stream(stream)
            .tombstoned
            .then(|| Predicted::Deleted(stream.to_owned()))
    }

    /// Whether `expected` holds, re-sends aside; `Err` is the refusal.
    fn expectation(&self, stream: &str, expected: ExpectedRevision) -> Result<(), Predicted> {
        let current = self.stream(stream);
        let soft_deleted = self.soft_deleted(stream);
        let holds = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::StreamExists if soft_deleted => {
                return Err(Predicted::Deleted(stream.to_owned()));
            }
            ExpectedRevision::StreamExists => {
                current.last().is_some()
                    || !self.stream(&metadata_stream_of(stream)).events.is_empty()
            }
            ExpectedRevision::NoStream => current.last().is_none() || soft_deleted,
            ExpectedRevision::Exact(revision) => current.last() == Some(revision),
        };
        if holds {
            Ok(())
        } else {
            Err(Predicted::Wrong(current.state()))
        }
    }

    /// What checking `expected` without writing answers: the last revision, or a refusal.
    fn check(&self, stream: &str, expected: ExpectedRevision) -> Result<Option<u64>, Predicted> {
        if let Some(refused) = self.refusal(stream) {
            return Err(refused);
        }
        self.expectation(stream, expected)?;
        Ok(self.stream(stream).last())
    }

    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedRevision,
        events: &[ProposedEvent],
    ) -> Predicted {
        if let Some(refused) = self.refusal(stream) {
            return refused;
        }
        let current = self.stream(stream);
        let resent_from = match (expected, current.last()) {
            (ExpectedRevision::Any | ExpectedRevision::StreamExists, _) => {
                if let Err(refused) = self.expectation(stream, expected) {
                    return refused;
                }
                current
                    .events
                    .iter()
                    .rposition(|event| event.id == events[0].id)
            }
            (ExpectedRevision::NoStream, Some(_)) => Some(0),
            (ExpectedRevision::Exact(revision), Some(last)) if revision < last => {
                Some(revision as usize + 1)
            }
            _ => None,
        };
        if let Some(first) = resent_from
            && current
                .events
                .get(first)
                .is_some_and(|event| event.id == events[0].id)
        {
            let all_there = events.iter().enumerate().all(|(offset, event)| {
                current
                    .events
                    .get(first + offset)
                    .is_some_and(|stored| stored.id == event.id)
            });
            if !all_there {
                return Predicted::Wrong(current.state());
            }
            let last_id = events[events.len() - 1].id;
            return Predicted::AlreadyThere(
                (first + events.len() - 1) as u64,
                self.positions[&last_id],
            );
        }
        if let Err(refused) = self.expectation(stream, expected) {
            return refused;
        }
        self.write(stream, events)
    }

    fn write(&mut self, stream: &str, events: &[ProposedEvent]) -> Predicted {
        let revives = self.soft_deleted(stream);
        let undeletes = stream
            .strip_prefix("$$")
            .filter(|described| self.soft_deleted(described) && !self.stream(described).tombstoned);
        let undeletes = undeletes.map(str::to_owned);
        let first = self.stream(stream).events.len() as u64;
        let revived_metadata = self.metadata(stream);
        for event in events {
            self.push(stream, &event.event_type, event.id, event.data.to_vec());
        }
        let last = first + events.len() as u64 - 1;
        if let Some(described) = undeletes {
            let written = serde_json::from_slice::<Value>(&events[events.len() - 1].data);
            if let Ok(Value::Object(mut metadata)) = written {
                let next = self.stream(&described).events.len() as u64;
                metadata.insert("$tb".into(), json!(next));
                self.push_metadata(&described, Value::Object(metadata));
            }
        } else if revives {
            let mut metadata = revived_metadata;
            metadata.insert("$tb".into(), json!(first));
            self.push_metadata(stream, Value::Object(metadata));
        }
        Predicted::Written(last)
    }

    fn push_metadata(&mut self, stream: &str, metadata: Value) {
        let metadata_stream = metadata_stream_of(stream);
        let revision = self.stream(&metadata_stream).events.len() as u64;
        let name = StreamName::new(&metadata_stream).unwrap();
        let id = EventId::of_store_record(&name, revision);
        let data = serde_json::to_vec(&metadata).unwrap();
        self.push(&metadata_stream, "$metadata", id, data);
    }

    fn delete(&mut self, stream: &str, expected: ExpectedRevision, tombstone: bool) -> Predicted {
        if self.stream(stream).tombstoned {
            return Predicted::Deleted(stream.to_owned());
        }
        if let Err(refused) = self.expectation(stream, expected) {
            return refused;
        }
        if tombstone {
            self.streams
                .entry(stream.to_owned())
                .or_default()
                .tombstoned = true;
            let event = ModelEvent {
                id: EventId::from_u128(0),
                event_type: "$streamDeleted".to_owned(),
                data: Vec::new(),
                created_nanos: self.now_nanos,
            };
            self.all.push((stream.to_owned(), event));
            return Predicted::Written(0);
        }
        let current = self.stream(stream);
        if current.events.is_empty() && self.stream(&metadata_stream_of(stream)).events.is_empty() {
            return Predicted::Wrong(current.state());
        }
        self.push_metadata(stream, json!({ "$tb": DELETED }));
        Predicted::Written(0)
    }

    fn apply(&mut self, write: &Write) -> Predicted {
        match write {
            Write::Append {
                stream,
                expected,
                events,
            } => self.append(stream, *expected, events),
            Write::Delete {
                stream,
                expected,
                tombstone,
            } => self.delete(stream, *expected, *tombstone),
        }
    }

    /// Visible (revision, event) of a stream; `Err(stream)` when it reads as deleted,
    /// `None` when it is not found.
    fn visible(&self, stream: &str) -> Result<Option<Vec<(u64, ModelEvent)>>, String> {
        if let Some(described) = stream.strip_prefix("$$")
            && self.stream(described).tombstoned
        {
            return Err(described.to_owned());
        }
        let current = self.stream(stream);
        if current.tombstoned {
            return Err(stream.to_owned());
        }
        let Some(last) = current.last() else {
            return Ok(None);
        };
        let numbered = current
            .events
            .iter()
            .cloned()
            .enumerate()
            .map(|(revision, event)| (revision as u64, event));
        if stream.starts_with("$$") {
            return Ok(Some(numbered.skip(last as usize).collect()));
        }
        if self.soft_deleted(stream) {
            return Ok(None);
        }
        let truncate_before = self.metadata_u64(stream, "$tb").unwrap_or(0);
        let max_count = self.metadata_u64(stream, "$maxCount");
        let max_age_nanos = self
            .metadata_u64(stream, "$maxAge")
            .map(|seconds| i64::try_from(seconds).unwrap() * 1_000_000_000);
        Ok(Some(
            numbered
                .filter(|(revision, event)| {
                    *revision >= truncate_before
                        && max_count.is_none_or(|count| last - revision < count)
                        && max_age_nanos
                            .is_none_or(|age| self.now_nanos - event.created_nanos <= age)
                })
                .collect(),
        ))
    }
}

fn config(clock: &ManualClock) -> Config {
    Config {
        segment_size_bytes: 192 * 1024,
        limits: Limits {
            event_bytes_max: 64 * 1024,
            append_bytes_max: 256 * 1024,
            ..Limits::default()
        },
        index_checkpoint_interval_bytes: 48 * 1024,
        clock: clock.clock(),
        ..Config::small_for_tests()
    }
}

/// Data compared as written, `$metadata` as the JSON it holds (key order aside).
fn comparable(event_type: &str, data: &[u8]) -> Value {
    if event_type == "$metadata" {
        serde_json::from_slice(data).unwrap_or(Value::Null)
    } else {
        Value::String(String::from_utf8_lossy(data).into_owned())
    }
}

async fn check_stream(
    store: &Store,
    model: &Model,
    stream: &str,
    backwards: bool,
    from: u64,
    count: usize,
) {
    let name = StreamName::new(stream).unwrap();
    let options = if backwards {
        ReadStreamOptions::backwards()
    } else {
        ReadStreamOptions::forwards()
    };
    let result = store
        .read_stream(&name, options.from_revision(from).max_count(count))
        .await;
    match (model.visible(stream), result) {
        (Err(deleted), Err(Error::StreamDeleted { stream })) => {
            assert_eq!(stream.as_str(), deleted, "the stream named as deleted");
        }
        (Ok(None), Ok(StreamSlice::NotFound)) => {}
        (Ok(Some(visible)), Ok(StreamSlice::Found { events, .. })) => {
            let mut wanted: Vec<_> = if backwards {
                visible
                    .into_iter()
                    .rev()
                    .filter(|(revision, _)| *revision <= from)
                    .collect()
            } else {
                visible
                    .into_iter()
                    .filter(|(revision, _)| *revision >= from)
                    .collect()
            };
            wanted.truncate(count);
            let wanted: Vec<_> = wanted
                .iter()
                .map(|(revision, event)| (*revision, comparable(&event.event_type, &event.data)))
                .collect();
            let got: Vec<_> = events
                .iter()
                .map(|event| (event.revision.0, comparable(&event.event_type, &event.data)))
                .collect();
            assert_eq!(
                got, wanted,
                "stream {name} read backwards={backwards} from {from} count {count}"
            );
        }
        (wanted, got) => panic!("stream {name}: model says {wanted:?}, store says {got:?}"),
    }
}

async fn check_all(store: &Store, model: &Model, backwards: bool, count: usize) {
    let options = if backwards {
        ReadAllOptions::backwards()
    } else {
        ReadAllOptions::forwards()
    };
    let slice = store.read_all(options.max_count(count)).await.unwrap();
    let got: Vec<_> = slice
        .events
        .iter()
        .map(|event| {
            let data = comparable(&event.event_type, &event.data);
            (event.stream.to_string(), event.event_type.clone(), data)
        })
        .collect();
    let mut wanted: Vec<_> = model
        .all
        .iter()
        .map(|(stream, event)| {
            let data = comparable(&event.event_type, &event.data);
            (stream.clone(), event.event_type.clone(), data)
        })
        .collect();
    if backwards {
        wanted.reverse();
    }
    wanted.truncate(count);
    assert_eq!(got, wanted, "$all backwards={backwards} count {count}");
    let positions: Vec<_> = slice.events.iter().map(|event| event.position).collect();
    let ordered = if backwards {
        positions.windows(2).all(|pair| pair[0] > pair[1])
    } else {
        positions.windows(2).all(|pair| pair[0] < pair[1])
    };
    assert!(
        ordered,
        "$all positions must be strictly ordered: {positions:?}"
    );
}

/// An append the store wrote, for re-sends; `epoch` counts reopens (a re-send with `Any`
/// or `StreamExists` is recognised only among ids the store still remembers: those since
/// it opened).
struct Sent {
    stream: String,
    expected: ExpectedRevision,
    events: Vec<ProposedEvent>,
    first_revision: u64,
    epoch: u32,
}

struct Run {
    dir: tempfile::TempDir,
    clock: ManualClock,
    store: Arc<Store>,
    model: Model,
    sent: Vec<Sent>,
    epoch: u32,
    counter: u32,
}

impl Run {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_at(Timestamp(1_700_000_000_000_000_000));
        let store = Store::open(dir.path(), config(&clock)).unwrap();
        let model = Model {
            now_nanos: clock.now().0,
            ..Model::default()
        };
        Self {
            dir,
            clock,
            store,
            model,
            sent: Vec::new(),
            epoch: 0,
            counter: 0,
        }
    }

    /// Fixes the events and ids of a write.
    fn materialize(&mut self, op: &WriteOp) -> Option<Write> {
        Some(match op {
            WriteOp::Append {
                stream,
                expected,
                sizes,
            } => {
                let events = sizes
                    .iter()
                    .map(|&size| {
                        self.counter += 1;
                        let mut bytes = format!("{}:", self.counter).into_bytes();
                        bytes.resize(size.max(bytes.len()), b'x');
                        ProposedEvent::binary("Happened", bytes)
                    })
                    .collect();
                Write::Append {
                    stream: STREAMS[*stream].to_owned(),
                    expected: *expected,
                    events,
                }
            }
            WriteOp::Resend { pick, any } => {
                let sent = self.sent.get(pick % self.sent.len().max(1))?;
                let remembered = sent.epoch == self.epoch;
                let weak = matches!(
                    sent.expected,
                    ExpectedRevision::Any | ExpectedRevision::StreamExists
                );
                let expected = match (*any, remembered, weak) {
                    (true, true, _) => ExpectedRevision::Any,
                    (false, true, _) | (false, false, false) => sent.expected,
                    // Before a reopen: where the events landed, which the store checks.
                    _ => match sent.first_revision.checked_sub(1) {
                        Some(before) => ExpectedRevision::Exact(before),
                        None => ExpectedRevision::NoStream,
                    },
                };
                Write::Append {
                    stream: sent.stream.clone(),
                    expected,
                    events: sent.events.clone(),
                }
            }
            WriteOp::Metadata {
                stream,
                expected,
                max_count,
                max_age_seconds,
                truncate_before,
            } => {
                let mut metadata = Map::new();
                let keys = [
                    ("$maxCount", max_count),
                    ("$maxAge", max_age_seconds),
                    ("$tb", truncate_before),
                ];
                for (key, value) in keys {
                    if let Some(value) = value {
                        metadata.insert(key.into(), json!(value));
                    }
                }
                metadata.insert("owner".into(), json!("model"));
                let data = serde_json::to_vec(&Value::Object(metadata)).unwrap();
                Write::Append {
                    stream: metadata_stream_of(STREAMS[*stream]),
                    expected: *expected,
                    events: vec![ProposedEvent::json("$metadata", data)],
                }
            }
            WriteOp::Delete {
                stream,
                expected,
                tombstone,
            } => Write::Delete {
                stream: STREAMS[*stream].to_owned(),
                expected: *expected,
                tombstone: *tombstone,
            },
        })
    }

    async fn perform(store: &Store, write: &Write) -> Observed {
        match write {
            Write::Append {
                stream,
                expected,
                events,
            } => {
                let name = StreamName::new(stream).unwrap();
                observed(
                    store.append(&name, *expected, events.clone()).await,
                    Observed::Appended,
                )
            }
            Write::Delete {
                stream,
                expected,
                tombstone,
            } => {
                let name = StreamName::new(stream).unwrap();
                let result = if *tombstone {
                    store.tombstone_stream(&name, *expected).await
                } else {
                    store.delete_stream(&name, *expected).await
                };
                observed(result, |_| Observed::Deleted)
            }
        }
    }

    /// Compares what the store did with what the model predicts, and remembers new appends.
    fn settle(&mut self, write: Write, observed: Observed) {
        let predicted = self.model.apply(&write);
        match (&predicted, &observed) {
            (Predicted::Written(revision), Observed::Appended(result)) => {
                assert_eq!(result.current_revision.0, *revision, "{write:?}");
                if let Write::Append {
                    stream,
                    expected,
                    events,
                } = write
                {
                    for event in &events {
                        self.model.positions.insert(event.id, result.position);
                    }
                    let first_revision = revision + 1 - events.len() as u64;
                    self.sent.push(Sent {
                        stream,
                        expected,
                        events,
                        first_revision,
                        epoch: self.epoch,
                    });
                }
            }
            (Predicted::Written(_), Observed::Deleted) => {}
            (Predicted::AlreadyThere(revision, position), Observed::Appended(result)) => {
                assert_eq!(result.current_revision.0, *revision, "re-send {write:?}");
                assert_eq!(result.position, *position, "re-send {write:?}");
            }
            (Predicted::Wrong(state), Observed::Wrong(actual)) => {
                assert_eq!(actual, state, "{write:?}");
            }
            (Predicted::Deleted(stream), Observed::StreamDeleted(named)) => {
                assert_eq!(named, stream, "{write:?}");
            }
            _ => panic!("{write:?}: model predicts {predicted:?}, store did {observed:?}"),
        }
    }

    async fn step(&mut self, op: Op) {
        match op {
            Op::Write(write) => {
                if let Some(write) = self.materialize(&write) {
                    let observed = Self::perform(&self.store, &write).await;
                    self.settle(write, observed);
                }
            }
            Op::Concurrent(writes) => {
                let writes: Vec<Write> = writes
                    .iter()
                    .filter_map(|write| self.materialize(write))
                    .collect();
                // Sent in order (the writer's queue is first in, first out), answered
                // together: the model applies them in the same order.
                let store = &self.store;
                let observed = futures::future::join_all(
                    writes.iter().map(|write| Self::perform(store, write)),
                )
                .await;
                for (write, observed) in writes.into_iter().zip(observed) {
                    self.settle(write, observed);
                }
            }
            Op::ReadStream {
                stream,
                metadata_stream,
                backwards,
                from,
                count,
            } => {
                let name = if metadata_stream {
                    metadata_stream_of(STREAMS[stream])
                } else {
                    STREAMS[stream].to_owned()
                };
                check_stream(&self.store, &self.model, &name, backwards, from, count).await;
            }
            Op::ReadAll { backwards, count } => {
                check_all(&self.store, &self.model, backwards, count).await;
            }
            Op::Check { stream, expected } => self.check(STREAMS[stream], expected).await,
            Op::Advance { seconds } => {
                self.clock.advance(Duration::from_secs(seconds));
                self.model.now_nanos = self.clock.now().0;
            }
            Op::Reopen => {
                self.store.close();
                self.store = Store::open(self.dir.path(), config(&self.clock)).unwrap();
                self.epoch += 1;
            }
        }
    }

    async fn check(&self, stream: &str, expected: ExpectedRevision) {
        let name = StreamName::new(stream).unwrap();
        let checked = self.store.check_expected_revision(&name, expected).await;
        match (self.model.check(stream, expected), checked) {
            (Ok(revision), Ok(checked)) => {
                assert_eq!(
                    checked.map(|revision| revision.0),
                    revision,
                    "check {stream}"
                );
            }
            (Err(Predicted::Wrong(state)), Err(Error::WrongExpectedRevision { actual, .. })) => {
                assert_eq!(actual, state, "check {stream} with {expected}");
            }
            (Err(Predicted::Deleted(named)), Err(Error::StreamDeleted { stream })) => {
                assert_eq!(stream.as_str(), named);
            }
            (wanted, got) => panic!("check {stream} with {expected}: {wanted:?} vs {got:?}"),
        }
    }

    async fn finish(self) {
        check_all(&self.store, &self.model, false, usize::MAX).await;
        for stream in STREAMS {
            check_stream(&self.store, &self.model, stream, false, 0, usize::MAX).await;
            let metadata_stream = metadata_stream_of(stream);
            check_stream(
                &self.store,
                &self.model,
                &metadata_stream,
                false,
                0,
                usize::MAX,
            )
            .await;
        }
        self.store.close();
        let report = strata_engine::verify(self.dir.path(), &mut |_| {}).unwrap();
        assert!(report.is_ok(), "verify after the run: {report}");
    }
}

async fn run(ops: Vec<Op>) {
    let mut run = Run::new();
    for op in ops {
        run.step(op).await;
    }
    run.finish().await;
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES_DEFAULT)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops));
    }
}
