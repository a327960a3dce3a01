//! Model-based property test: random appends, reads, deletes, tombstones and reopens of
//! the engine, compared step by step with a plain in-memory model of the contract.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use strata_core::{
    Error, EventStore, ExpectedRevision, Limits, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    StreamName, StreamSlice,
};
use strata_engine::{Config, Store};

const STREAMS: [&str; 4] = ["cart-1", "cart-2", "order-1", "$system-1"];

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expected: ExpectedRevision,
        sizes: Vec<usize>,
    },
    ReadStream {
        stream: usize,
        backwards: bool,
        from: u64,
        count: usize,
    },
    ReadAll {
        backwards: bool,
        count: usize,
    },
    Delete {
        stream: usize,
    },
    Tombstone {
        stream: usize,
    },
    Reopen,
}

fn expected_strategy() -> impl Strategy<Value = ExpectedRevision> {
    prop_oneof![
        3 => Just(ExpectedRevision::Any),
        1 => Just(ExpectedRevision::NoStream),
        1 => Just(ExpectedRevision::StreamExists),
        2 => (0u64..6).prop_map(ExpectedRevision::Exact),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let size = prop_oneof![8 => 0usize..300, 1 => 10_000usize..40_000];
    prop_oneof![
        10 => (0..STREAMS.len(), expected_strategy(), prop::collection::vec(size, 1..5))
            .prop_map(|(stream, expected, sizes)| Op::Append { stream, expected, sizes }),
        3 => (0..STREAMS.len(), any::<bool>(), 0u64..8, 1usize..6)
            .prop_map(|(stream, backwards, from, count)| Op::ReadStream { stream, backwards, from, count }),
        2 => (any::<bool>(), 1usize..50).prop_map(|(backwards, count)| Op::ReadAll { backwards, count }),
        1 => (0..STREAMS.len()).prop_map(|stream| Op::Delete { stream }),
        1 => (0..STREAMS.len()).prop_map(|stream| Op::Tombstone { stream }),
        1 => Just(Op::Reopen),
    ]
}

/// What the contract says a stream is.
#[derive(Default)]
struct ModelStream {
    events: Vec<Vec<u8>>,
    tombstoned: bool,
    soft_deleted: bool,
    truncate_before: u64,
    metadata_events: u64,
}

type RevisionData = (u64, Vec<u8>);

#[derive(Default)]
struct Model {
    streams: HashMap<&'static str, ModelStream>,
    /// `$all` as (stream, event type, data) in log order.
    all: Vec<(String, String, Vec<u8>)>,
}

/// The outcome kinds the model predicts.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    WrongExpectedRevision,
    StreamDeleted,
}

fn outcome_of<T>(result: &Result<T, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(Error::WrongExpectedRevision { .. }) => Outcome::WrongExpectedRevision,
        Err(Error::StreamDeleted { .. }) => Outcome::StreamDeleted,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

impl Model {
    fn append(
        &mut self,
        name: &'static str,
        expected: ExpectedRevision,
        data: Vec<Vec<u8>>,
    ) -> Outcome {
        let stream = self.streams.entry(name).or_default();
        if stream.tombstoned {
            return Outcome::StreamDeleted;
        }
        let last = (stream.events.len() as u64).checked_sub(1);
        let allowed = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::StreamExists if stream.soft_deleted => return Outcome::StreamDeleted,
            ExpectedRevision::StreamExists => last.is_some() || stream.metadata_events > 0,
            ExpectedRevision::NoStream => last.is_none() || stream.soft_deleted,
            ExpectedRevision::Exact(revision) => last == Some(revision),
        };
        if !allowed {
            return Outcome::WrongExpectedRevision;
        }
        let first_new = stream.events.len() as u64;
        for event in data {
            self.all
                .push((name.to_owned(), "Happened".to_owned(), event.clone()));
            stream.events.push(event);
        }
        if stream.soft_deleted {
            stream.soft_deleted = false;
            stream.truncate_before = first_new;
            stream.metadata_events += 1;
            self.all
                .push((format!("$${name}"), "$metadata".to_owned(), Vec::new()));
        }
        Outcome::Ok
    }

    fn delete(&mut self, name: &'static str) -> Outcome {
        let stream = self.streams.entry(name).or_default();
        if stream.tombstoned {
            return Outcome::StreamDeleted;
        }
        if stream.events.is_empty() && stream.metadata_events == 0 {
            return Outcome::WrongExpectedRevision;
        }
        stream.soft_deleted = true;
        stream.metadata_events += 1;
        self.all
            .push((format!("$${name}"), "$metadata".to_owned(), Vec::new()));
        Outcome::Ok
    }

    fn tombstone(&mut self, name: &'static str) -> Outcome {
        let stream = self.streams.entry(name).or_default();
        if stream.tombstoned {
            return Outcome::StreamDeleted;
        }
        stream.tombstoned = true;
        self.all
            .push((name.to_owned(), "$streamDeleted".to_owned(), Vec::new()));
        Outcome::Ok
    }

    /// Visible (revision, data) of a stream, `Err` when tombstoned, `None` when not found.
    fn visible(&self, name: &str) -> Result<Option<Vec<RevisionData>>, ()> {
        let Some(stream) = self.streams.get(name) else {
            return Ok(None);
        };
        if stream.tombstoned {
            return Err(());
        }
        if stream.events.is_empty() || stream.soft_deleted {
            return Ok(None);
        }
        Ok(Some(
            stream
                .events
                .iter()
                .enumerate()
                .skip(stream.truncate_before as usize)
                .map(|(revision, data)| (revision as u64, data.clone()))
                .collect(),
        ))
    }
}

fn config() -> Config {
    Config {
        segment_size_bytes: 192 * 1024,
        limits: Limits {
            event_bytes_max: 64 * 1024,
            append_bytes_max: 256 * 1024,
            ..Limits::default()
        },
        index_checkpoint_interval_bytes: 48 * 1024,
        ..Config::small_for_tests()
    }
}

async fn check_stream(
    store: &Store,
    model: &Model,
    index: usize,
    backwards: bool,
    from: u64,
    count: usize,
) {
    let name = StreamName::new(STREAMS[index]).unwrap();
    let options = if backwards {
        ReadStreamOptions::backwards()
    } else {
        ReadStreamOptions::forwards()
    };
    let result = store
        .read_stream(&name, options.from_revision(from).max_count(count))
        .await;
    match (model.visible(STREAMS[index]), result) {
        (Err(()), Err(Error::StreamDeleted { .. })) => {}
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
            let got: Vec<_> = events
                .iter()
                .map(|event| (event.revision.0, event.data.to_vec()))
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
            (
                event.stream.to_string(),
                event.event_type.clone(),
                event.data.to_vec(),
            )
        })
        .collect();
    let mut wanted: Vec<_> = if backwards {
        model.all.iter().rev().cloned().collect()
    } else {
        model.all.clone()
    };
    wanted.truncate(count);
    // Metadata bodies are the engine's JSON; compare them by stream and type only.
    let strip = |rows: Vec<(String, String, Vec<u8>)>| -> Vec<(String, String, Vec<u8>)> {
        rows.into_iter()
            .map(|(stream, event_type, data)| {
                let data = if event_type == "$metadata" {
                    Vec::new()
                } else {
                    data
                };
                (stream, event_type, data)
            })
            .collect()
    };
    assert_eq!(
        strip(got),
        strip(wanted),
        "$all backwards={backwards} count {count}"
    );
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

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store: Arc<Store> = Store::open(dir.path(), config()).unwrap();
    let mut model = Model::default();
    let mut counter = 0u32;
    for op in ops {
        match op {
            Op::Append {
                stream,
                expected,
                sizes,
            } => {
                let data: Vec<Vec<u8>> = sizes
                    .iter()
                    .map(|&size| {
                        counter += 1;
                        let mut bytes = format!("{counter}:").into_bytes();
                        bytes.resize(size.max(bytes.len()), b'x');
                        bytes
                    })
                    .collect();
                let events = data
                    .iter()
                    .map(|bytes| ProposedEvent::binary("Happened", bytes.clone()))
                    .collect();
                let name = StreamName::new(STREAMS[stream]).unwrap();
                let result = store.append(&name, expected, events).await;
                let predicted = model.append(STREAMS[stream], expected, data);
                assert_eq!(
                    outcome_of(&result),
                    predicted,
                    "append to {name} with {expected}"
                );
            }
            Op::ReadStream {
                stream,
                backwards,
                from,
                count,
            } => {
                check_stream(&store, &model, stream, backwards, from, count).await;
            }
            Op::ReadAll { backwards, count } => check_all(&store, &model, backwards, count).await,
            Op::Delete { stream } => {
                let name = StreamName::new(STREAMS[stream]).unwrap();
                let result = store.delete_stream(&name, ExpectedRevision::Any).await;
                assert_eq!(
                    outcome_of(&result),
                    model.delete(STREAMS[stream]),
                    "delete {name}"
                );
            }
            Op::Tombstone { stream } => {
                let name = StreamName::new(STREAMS[stream]).unwrap();
                let result = store.tombstone_stream(&name, ExpectedRevision::Any).await;
                assert_eq!(
                    outcome_of(&result),
                    model.tombstone(STREAMS[stream]),
                    "tombstone {name}"
                );
            }
            Op::Reopen => {
                store.close();
                drop(store);
                store = Store::open(dir.path(), config()).unwrap();
            }
        }
    }
    check_all(&store, &model, false, usize::MAX).await;
    for index in 0..STREAMS.len() {
        check_stream(&store, &model, index, false, 0, usize::MAX).await;
    }
    store.close();
    let report = strata_engine::verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify after the run: {report}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}
