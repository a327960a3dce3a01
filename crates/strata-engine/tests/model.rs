//! Model-based property test: random appends (alone and in concurrent batches), re-sends
//! of earlier appends with their ids, metadata (`$maxCount`, `$maxAge`, `$tb`), soft
//! deletes and tombstones with every expected revision, checks without writing, clock
//! moves, reads and reopens of the engine, compared step by step with a plain in-memory
//! model of the contract.
//!
//! The model is written here from KurrentDB's rules, independently of
//! `strata_core::rules`: the point is a second opinion. Cases: 24 by default (CI), more
//! with `PROPTEST_CASES`.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use strata_core::{
    AppendResult, Error, EventStore, ExpectedRevision, Limits, ManualClock, ProposedEvent,
    ReadAllOptions, ReadStreamOptions, StreamName, StreamSlice, StreamState, Timestamp,
};
use strata_engine::{Config, Store};

#[path = "model/contract.rs"]
mod contract;

use contract::{DELETED, Model, Predicted, Write, metadata_stream_of};

const STREAMS: [&str; 4] = ["cart-1", "cart-2", "order-1", "$system-1"];

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
        let model = Model::starting_at(clock.now().0);
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
