//! Test helper for `tests/crash.rs`, not a tool: opens the store in `DATA_DIR` (fsync
//! durability, small segments) and appends from several tasks until it is killed, printing
//! one line per acknowledged append.
//!
//! Usage: `strata-crash-writer DATA_DIR SEED [tail]`; `tail` opens the store with
//! `Config::index_memory_tail_only`. Prints `ready` once the store is open, then
//! `ack STREAM CURRENT_REVISION POSITION ID,ID,...` (ids in hex, in batch order) after each
//! acknowledged append. Every event's id is `SEED << 64 | task << 40 | counter`, its data is
//! [`event_data`] of its id and its metadata names its batch (the first id of the append),
//! the batch size and its index in the batch, so the parent can check both content and that
//! no batch is seen in part. One request in five is an atomic append to several streams
//! (one `ack` line per part, printed together): its batch spans every part.

use std::io::Write;
use std::process::ExitCode;

use strata_core::{
    AppendPart, Error, EventId, EventStore, ExpectedRevision, ProposedEvent, StreamName,
    StreamState,
};
use strata_engine::{Config, Durability, Store};

const TASKS: u64 = 4;
const STREAMS: u64 = 6;
const BATCH_EVENTS_MAX: u64 = 5;
/// Now and then a bulk append, whose long write a kill may cut.
const BULK_EVENTS_MIN: u64 = 50;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(data_dir), Some(seed), tail_only) = (
        args.get(1),
        args.get(2).and_then(|seed| seed.parse::<u64>().ok()),
        match args.get(3).map(String::as_str) {
            None => Some(false),
            Some("tail") => Some(true),
            Some(_) => None,
        },
    ) else {
        eprintln!("usage: strata-crash-writer DATA_DIR SEED [tail]");
        return ExitCode::from(2);
    };
    let Some(tail_only) = tail_only else {
        eprintln!("usage: strata-crash-writer DATA_DIR SEED [tail]");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(data_dir, seed, tail_only)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("strata-crash-writer: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(data_dir: &str, seed: u64, tail_only: bool) -> Result<(), Error> {
    let config = Config {
        durability: Durability::Fsync,
        index_memory_tail_only: tail_only,
        ..Config::small_for_tests()
    };
    let store = Store::open(data_dir, config)?;
    print_line("ready\n");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            append_forever(&store, seed, task).await
        }));
    }
    for task in tasks {
        task.await.map_err(|error| Error::InvalidArgument {
            reason: format!("an append task panicked: {error}"),
        })??;
    }
    Ok(())
}

async fn append_forever(store: &Store, seed: u64, task: u64) -> Result<(), Error> {
    let mut random = SplitMix64(seed ^ (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut counter = 0u64;
    loop {
        // One request in five is an atomic append to several streams, one part each.
        let part_count = if random.below(5) == 0 {
            2 + random.below(2)
        } else {
            1
        };
        let first_stream = random.below(STREAMS);
        let mut parts = Vec::new();
        let mut request_ids = Vec::new();
        for part in 0..part_count {
            let stream = StreamName::new(format!("crash-{}", (first_stream + part) % STREAMS))?;
            let size = match random.below(60) {
                0 => BULK_EVENTS_MIN + random.below(BULK_EVENTS_MIN),
                1..=20 => 1,
                _ => 1 + random.below(BATCH_EVENTS_MAX),
            };
            let ids: Vec<u128> = (0..size)
                .map(|offset| {
                    (u128::from(seed) << 64)
                        | (u128::from(task) << 40)
                        | u128::from(counter + offset)
                })
                .collect();
            counter += size;
            let expected = if random.below(2) == 0 {
                ExpectedRevision::Any
            } else {
                match store.stream_state(&stream).await? {
                    StreamState::At(revision) => ExpectedRevision::Exact(revision.0),
                    _ => ExpectedRevision::NoStream,
                }
            };
            request_ids.extend(ids.iter().copied());
            parts.push((stream, expected, ids));
        }
        let size = request_ids.len();
        let event = |index: usize, id: u128| {
            ProposedEvent::json("CrashTested", event_data(id))
                .with_id(EventId::from_u128(id))
                .with_metadata(format!(
                    r#"{{"batch":"{:032x}","size":{size},"index":{index}}}"#,
                    request_ids[0]
                ))
        };
        let mut index = 0;
        let mut append_parts = Vec::new();
        for (stream, expected, ids) in &parts {
            let events = ids
                .iter()
                .map(|&id| {
                    index += 1;
                    event(index - 1, id)
                })
                .collect();
            append_parts.push(AppendPart::write(stream.clone(), *expected, events));
        }
        let outcome = if append_parts.len() == 1 {
            let AppendPart {
                stream,
                expected,
                events,
            } = append_parts.remove(0);
            store
                .append(&stream, expected, events)
                .await
                .map(|result| vec![result])
        } else {
            store
                .append_multi(append_parts)
                .await
                .map(|result| result.parts.into_iter().map(|(_, result)| result).collect())
        };
        match outcome {
            Ok(results) => {
                let mut lines = String::new();
                for ((stream, _, ids), result) in parts.iter().zip(results) {
                    let ids: Vec<String> = ids.iter().map(|id| format!("{id:032x}")).collect();
                    lines.push_str(&format!(
                        "ack {stream} {} {} {}\n",
                        result.current_revision.0,
                        result.position.0,
                        ids.join(",")
                    ));
                }
                print_line(&lines);
            }
            // Another task appended to a stream since its state was read.
            Err(Error::WrongExpectedRevision { .. }) => {}
            Err(error) => return Err(error),
        }
    }
}

/// The data of the event with `id`; `tests/crash.rs` has the same function. Most events
/// are small; one in 64 is large, so segments fill unevenly and end in padding.
fn event_data(id: u128) -> String {
    let mixed = SplitMix64(id as u64 ^ (id >> 64) as u64).next();
    let pad_bytes = if mixed.is_multiple_of(64) {
        20_000 + (mixed >> 8) % 20_000
    } else {
        (mixed >> 8) % 1_200
    };
    let pad_char = char::from(b'a' + (mixed >> 40) as u8 % 26);
    format!(
        r#"{{"id":"{id:032x}","pad":"{}"}}"#,
        pad_char.to_string().repeat(pad_bytes as usize)
    )
}

/// Writes one whole line with one write and flushes it, so a kill never leaves half a line
/// that looks whole.
fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // The parent is gone; nobody is listening for acknowledgements any more.
        std::process::exit(3);
    }
}

/// A small deterministic generator (SplitMix64), enough to vary the workload by seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
