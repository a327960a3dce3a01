//! Power loss, simulated under the segment files (`Faults`, feature `fault-injection`): a
//! store takes concurrent appends until the power goes at a random write or sync (or during
//! the recovery of the previous loss). Each page written since its file's last sync then
//! reaches the disk whole, not at all, or torn at 512-byte sectors — in no particular
//! order, so valid frames may sit behind a torn one. The store is opened again without
//! faults, thousands of times over on small segments, and every time:
//! - it opens (a power loss that lost nothing acknowledged never makes a store unopenable),
//! - every acknowledged event is there, at its stream, revision and position, with its data,
//! - no batch is seen in part, and `$all` begins with everything the previous open saw,
//! - `verify` finds no problem right after the loss (a torn tail is allowed).
//!
//! `STRATA_POWER_LOSS_CRASHES` sets the number of losses (default 2,000),
//! `STRATA_POWER_LOSS_SEED` the seed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use strata_core::{
    Error, EventId, EventStore, ExpectedRevision, Limits, ProposedEvent, ReadAllOptions,
    RecordedEvent, StreamName, StreamState,
};
use strata_engine::faults::Faults;
use strata_engine::{Config, Store, verify};

const CRASHES_DEFAULT: u64 = 2_000;
/// Losses in one directory before starting a fresh one (keeps the logs, and each open, small).
const CRASHES_PER_DIRECTORY: u64 = 10;
const TASKS: u64 = 3;
const STREAMS: u64 = 4;
/// The loss comes at one of the first this-many writes and syncs of a run.
const OPERATIONS_BEFORE_LOSS_MAX: u64 = 48;
/// Appends a task makes at most before the loss must have come.
const APPENDS_PER_TASK_MAX: u64 = 100_000;

fn config() -> Config {
    Config {
        segment_size_bytes: 128 * 1024,
        limits: Limits {
            event_bytes_max: 16 * 1024,
            append_bytes_max: 256 * 1024,
            ..Limits::default()
        },
        index_checkpoint_interval_bytes: 24 * 1024,
        recent_event_ids_max: 10_000,
        ..Config::default()
    }
}

/// One acknowledged append.
#[derive(Debug)]
struct Ack {
    stream: StreamName,
    current_revision: u64,
    position: u64,
    ids: Vec<u128>,
}

/// Mostly small events; one in 16 is several pages long, so groups straddle pages and
/// segments fill and roll over.
fn event_data(id: u128) -> Vec<u8> {
    let mixed = splitmix64(id as u64 ^ (id >> 64) as u64);
    let pad_bytes = if mixed.is_multiple_of(16) {
        3_000 + (mixed >> 8) % 9_000
    } else {
        20 + (mixed >> 8) % 400
    };
    let pad = char::from(b'a' + (mixed >> 40) as u8 % 26);
    format!(
        r#"{{"id":"{id:032x}","pad":"{}"}}"#,
        pad.to_string().repeat(pad_bytes as usize)
    )
    .into_bytes()
}

fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Appends from one task until the store fails (the power is gone).
async fn append_until_the_power_goes(store: Arc<Store>, acks: Arc<Mutex<Vec<Ack>>>, seed: u64) {
    let mut random = StdRng::seed_from_u64(seed);
    for counter in 0..APPENDS_PER_TASK_MAX {
        let stream = StreamName::new(format!("power-{}", random.gen_range(0..STREAMS))).unwrap();
        let size = if random.gen_bool(0.6) {
            1
        } else {
            random.gen_range(2..5)
        };
        let ids: Vec<u128> = (0..size)
            .map(|offset| (u128::from(seed) << 64) | u128::from(counter * 8 + offset))
            .collect();
        let events = ids
            .iter()
            .enumerate()
            .map(|(index, &id)| {
                ProposedEvent::binary("PowerLost", event_data(id))
                    .with_id(EventId::from_u128(id))
                    .with_metadata(format!("{:032x} {size} {index}", ids[0]))
            })
            .collect();
        let expected = if random.gen_bool(0.5) {
            ExpectedRevision::Any
        } else {
            match store.stream_state(&stream).await {
                Ok(StreamState::At(revision)) => ExpectedRevision::Exact(revision.0),
                _ => ExpectedRevision::NoStream,
            }
        };
        match store.append(&stream, expected, events).await {
            Ok(result) => acks.lock().push(Ack {
                stream,
                current_revision: result.current_revision.0,
                position: result.position.0,
                ids,
            }),
            Err(Error::WrongExpectedRevision { .. }) => {}
            Err(Error::Poisoned { .. } | Error::Io { .. }) => return,
            Err(error) => panic!("unexpected error before the power went: {error}"),
        }
    }
    panic!("the power loss never came");
}

/// Opens the store with a power loss planned, appends until it comes, drops the store.
/// Returns what was acknowledged.
fn run_until_power_loss(runtime: &tokio::runtime::Runtime, dir: &Path, seed: u64) -> Vec<Ack> {
    let mut random = StdRng::seed_from_u64(seed);
    let faults = Faults::new();
    faults.lose_power_at(random.gen_range(0..OPERATIONS_BEFORE_LOSS_MAX), seed);
    let config = Config {
        faults: Some(faults.clone()),
        ..config()
    };
    // The loss may come while the open recovers from the previous one.
    let Ok(store) = Store::open(dir, config) else {
        assert!(
            faults.power_loss().is_some(),
            "the open failed without a power loss"
        );
        return Vec::new();
    };
    let acks = Arc::new(Mutex::new(Vec::new()));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                tokio::spawn(append_until_the_power_goes(
                    store.clone(),
                    acks.clone(),
                    seed ^ (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert!(faults.power_loss().is_some());
    store.close();
    drop(store);
    std::mem::take(&mut *acks.lock())
}

async fn read_whole_all(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut options = ReadAllOptions::forwards().max_count(500);
    loop {
        let slice = store.read_all(options.clone()).await.unwrap();
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        options = options.from_position(slice.next_position);
    }
}

/// Opens without faults and checks everything; returns `$all` as (id, position) pairs.
async fn check_reopened(
    dir: &Path,
    acks: &[Ack],
    previous: &[(EventId, u64)],
    what: &str,
) -> Vec<(EventId, u64)> {
    let store = Store::open(dir, config())
        .unwrap_or_else(|error| panic!("{what}: the store does not open: {error}"));
    let all = read_whole_all(&store).await;
    let seen: Vec<(EventId, u64)> = all
        .iter()
        .map(|event| (event.id, event.position.0))
        .collect();
    assert!(
        seen.len() >= previous.len() && seen[..previous.len()] == *previous,
        "{what}: $all no longer begins with what the previous open saw"
    );
    let mut at = 0;
    while at < all.len() {
        let mark = String::from_utf8(all[at].metadata.to_vec()).unwrap();
        let fields: Vec<&str> = mark.split(' ').collect();
        let size: usize = fields[1].parse().unwrap();
        assert_eq!(
            fields[2], "0",
            "{what}: $all starts in the middle of a batch at {at}"
        );
        for index in 0..size {
            let event = all
                .get(at + index)
                .unwrap_or_else(|| panic!("{what}: batch {} is cut short", fields[0]));
            let expected = format!("{} {size} {index}", fields[0]);
            assert_eq!(
                event.metadata,
                expected.as_bytes(),
                "{what}: batch not whole"
            );
            assert_eq!(
                event.data,
                event_data(event.id.as_u128()),
                "{what}: wrong data"
            );
        }
        at += size;
    }
    let mut by_stream: HashMap<(StreamName, u64), (u128, u64)> = HashMap::new();
    for event in &all {
        by_stream.insert(
            (event.stream.clone(), event.revision.0),
            (event.id.as_u128(), event.position.0),
        );
    }
    for ack in acks {
        let first = ack.current_revision + 1 - ack.ids.len() as u64;
        for (offset, &id) in ack.ids.iter().enumerate() {
            let revision = first + offset as u64;
            let found = by_stream.get(&(ack.stream.clone(), revision));
            assert_eq!(
                found.map(|(found_id, _)| *found_id),
                Some(id),
                "{what}: acknowledged event {}@{revision} is lost",
                ack.stream
            );
        }
        assert_eq!(
            by_stream[&(ack.stream.clone(), ack.current_revision)].1,
            ack.position,
            "{what}: acknowledged position of {}@{} differs",
            ack.stream,
            ack.current_revision
        );
    }
    store.close();
    seen
}

fn scratch_dir() -> tempfile::TempDir {
    // A RAM disk keeps thousands of opens cheap; the simulation needs no real disk.
    if Path::new("/dev/shm").is_dir()
        && let Ok(dir) = tempfile::Builder::new().tempdir_in("/dev/shm")
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

#[test]
fn every_acknowledged_append_survives_thousands_of_power_losses() {
    let crashes: u64 = std::env::var("STRATA_POWER_LOSS_CRASHES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CRASHES_DEFAULT);
    let seed: u64 = std::env::var("STRATA_POWER_LOSS_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0x90_7e_12_05);
    eprintln!("{crashes} power losses, seed {seed} (STRATA_POWER_LOSS_CRASHES / _SEED)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut dir = scratch_dir();
    let mut acks = Vec::new();
    let mut seen = Vec::new();
    let (mut torn_tails, mut frames_behind_tears, mut acknowledged) = (0, 0, 0);
    for crash in 0..crashes {
        if crash % CRASHES_PER_DIRECTORY == 0 {
            dir = scratch_dir();
            acks.clear();
            seen.clear();
        }
        let crash_seed = seed.wrapping_add(crash.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let new_acks = run_until_power_loss(&runtime, dir.path(), crash_seed);
        acknowledged += new_acks.len();
        acks.extend(new_acks);
        let what = format!("loss {crash} (seed {crash_seed})");
        let report = verify(dir.path(), &mut |_| {}).unwrap();
        assert!(
            report.is_ok(),
            "{what}: verify right after the loss:\n{report}"
        );
        torn_tails += u64::from(report.torn_tail);
        frames_behind_tears += u64::from(report.frames_after_torn_tail > 0);
        seen = runtime.block_on(check_reopened(dir.path(), &acks, &seen, &what));
    }
    eprintln!(
        "{acknowledged} appends acknowledged; {torn_tails} torn tails dropped, \
         {frames_behind_tears} of them with valid frames behind the tear"
    );
    assert!(
        acknowledged as u64 > crashes,
        "too little was acknowledged to test anything"
    );
    assert!(
        torn_tails > 0,
        "no loss left a torn tail: the simulation tests nothing"
    );
}
