use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// What a key holds in the model the runs are checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    positions: Vec<u64>,
    tombstone: Option<u64>,
    metadata: Option<Vec<u8>>,
}

/// Random entries for the log range `[from, to)`, continuing `model`; some keys hold
/// enough positions not to fit in one record read.
fn random_entries(
    rng: &mut StdRng,
    model: &mut BTreeMap<(u8, Vec<u8>), Model>,
    from: u64,
    to: u64,
    keys: usize,
) -> Vec<RunEntry> {
    let mut by_key: BTreeMap<(u8, Vec<u8>), RunEntry> = BTreeMap::new();
    let mut position = from;
    while position + 64 <= to {
        let kind = if rng.gen_bool(0.7) {
            KIND_STREAM
        } else {
            rng.gen_range(1..=5)
        };
        let key_number = if rng.gen_bool(0.05) {
            0
        } else {
            rng.gen_range(0..keys)
        };
        let key = format!("key-{key_number}").into_bytes();
        let known = model.entry((kind, key.clone())).or_default();
        let entry = by_key
            .entry((kind, key.clone()))
            .or_insert_with(|| RunEntry {
                kind,
                key,
                first_revision: known.positions.len() as u64,
                ..RunEntry::default()
            });
        entry.positions.push(position);
        known.positions.push(position);
        if kind == KIND_STREAM && rng.gen_bool(0.01) {
            entry.metadata = Some(format!("{{\"$maxCount\":{position}}}").into_bytes());
            known.metadata.clone_from(&entry.metadata);
        }
        if kind == KIND_STREAM && rng.gen_bool(0.002) {
            position += 64;
            entry.tombstone = Some(position);
            known.tombstone = Some(position);
        }
        position += 64;
    }
    let mut entries: Vec<RunEntry> = by_key.into_values().collect();
    sort_entries(&mut entries).unwrap();
    entries
}

fn check_against(set: &RunSet, model: &BTreeMap<(u8, Vec<u8>), Model>) {
    for ((kind, key), expected) in model {
        let head = set.head(*kind, key).unwrap().expect("key present");
        assert_eq!(head.end_revision, expected.positions.len() as u64);
        assert_eq!(head.tombstone, expected.tombstone);
        assert_eq!(head.metadata, expected.metadata);
        let all = set.positions(*kind, key, 0, u64::MAX).unwrap();
        assert_eq!(
            &all,
            &expected.positions,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
        let count = expected.positions.len() as u64;
        if count > 2 {
            let middle = set.positions(*kind, key, 1, count - 1).unwrap();
            assert_eq!(middle, expected.positions[1..count as usize - 1]);
        }
    }
    assert_eq!(set.head(KIND_STREAM, b"absent").unwrap(), None);
    assert!(set.positions(3, b"absent", 0, 10).unwrap().is_empty());
}

#[test]
fn a_run_answers_what_was_written_without_loading_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut model = BTreeMap::new();
    let entries = random_entries(&mut rng, &mut model, 64, 64 * 40_000, 600);
    assert!(
        entries
            .iter()
            .any(|entry| entry.positions.len() * 8 > RECORD_READ_BYTES)
    );
    let path = dir.path().join(run_file_name(64, 64 * 40_000));
    write_run(&path, 64, 64 * 40_000, entries.clone()).unwrap();
    let run = Run::open(&path).unwrap();
    assert_eq!(run.key_count, entries.len() as u64);
    // The fences and the key filter (10 bits a key).
    assert!(
        run.resident_bytes()
            <= (entries.len() / FENCE_STRIDE + 1) * 8 * 2 + (entries.len() * 10 / 64 + 1) * 8
    );
    let scanned: Vec<RunEntry> = run.scan().unwrap().map(Result::unwrap).collect();
    assert_eq!(scanned, entries);
    let mut set = RunSet::default();
    set.push(run).unwrap();
    check_against(&set, &model);
}

#[test]
fn keys_sharing_a_hash_block_and_many_blocks_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries: Vec<RunEntry> = (0..5_000u64)
        .map(|number| RunEntry {
            kind: (number % 6) as u8,
            key: format!("s{number}").into_bytes(),
            first_revision: number,
            positions: vec![64 + number * 8],
            ..RunEntry::default()
        })
        .collect();
    sort_entries(&mut entries).unwrap();
    let path = dir.path().join("a.run");
    write_run(&path, 64, 64 + 5_000 * 8, entries.clone()).unwrap();
    let run = Run::open(&path).unwrap();
    for entry in &entries {
        let record = run.get(entry.kind, &entry.key).unwrap().unwrap();
        assert_eq!(record.first_revision, entry.first_revision);
        assert_eq!(run.positions(&record, 0, 1).unwrap(), entry.positions);
        // The same name under another kind is another key.
        let other = (entry.kind + 1) % 6;
        if let Some(found) = run.get(other, &entry.key).unwrap() {
            assert_ne!(found.first_revision, entry.first_revision);
        }
    }
}

#[test]
fn writing_refuses_unsorted_duplicate_or_out_of_range_entries() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |key: &str, positions: Vec<u64>| RunEntry {
        kind: KIND_STREAM,
        key: key.as_bytes().to_vec(),
        positions,
        ..RunEntry::default()
    };
    let mut twice = vec![entry("a", vec![64]), entry("a", vec![128])];
    assert!(sort_entries(&mut twice).is_err());
    let path = dir.path().join("x.run");
    let mut pair = vec![entry("a", vec![64]), entry("b", vec![128])];
    sort_entries(&mut pair).unwrap();
    pair.reverse();
    assert!(write_run(&path, 64, 256, pair).is_err());
    assert!(write_run(&path, 64, 256, vec![entry("a", vec![128, 64])]).is_err());
    assert!(write_run(&path, 64, 100, vec![entry("a", vec![128])]).is_err());
    assert!(!path.exists(), "a refused run leaves no file to trust");
}

fn written_run(dir: &Path) -> (PathBuf, BTreeMap<(u8, Vec<u8>), Model>) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut model = BTreeMap::new();
    let entries = random_entries(&mut rng, &mut model, 64, 64 * 3_000, 100);
    let path = dir.join(run_file_name(64, 64 * 3_000));
    write_run(&path, 64, 64 * 3_000, entries).unwrap();
    (path, model)
}

/// Every key's answer from `set`: its head and all its positions, or the error.
fn answers(
    set: &RunSet,
    model: &BTreeMap<(u8, Vec<u8>), Model>,
) -> Vec<Result<(KeyHead, Vec<u64>)>> {
    model
        .keys()
        .map(|(kind, key)| {
            let head = set.head(*kind, key)?.unwrap_or_default();
            Ok((head, set.positions(*kind, key, 0, u64::MAX)?))
        })
        .collect()
}

#[test]
fn a_damaged_or_truncated_run_is_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (path, model) = written_run(dir.path());
    let good = std::fs::read(&path).unwrap();
    let expected: Vec<(KeyHead, Vec<u64>)> = model
        .values()
        .map(|known| {
            let head = KeyHead {
                end_revision: known.positions.len() as u64,
                tombstone: known.tombstone,
                metadata: known.metadata.clone(),
            };
            (head, known.positions.clone())
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(3);
    let (mut at_open, mut at_read) = (0, 0);
    // One flip in three in the parts the open reads (header, fences, trailer), which are
    // a small part of the file.
    let fences_offset = u64_at(&good[good.len() - RUN_TRAILER_BYTES as usize..], 40) as usize;
    for trial in 0..300 {
        let mut bytes = good.clone();
        let at = match trial % 6 {
            0 => rng.gen_range(0..RUN_HEADER_BYTES as usize),
            1 => rng.gen_range(fences_offset..bytes.len()),
            _ => rng.gen_range(0..bytes.len()),
        };
        bytes[at] ^= 1 << rng.gen_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        // Found at open (header, fences, trailer), or else by the reads that touch the
        // flipped block: every answer is the written one or an error, never another.
        let Ok(run) = Run::open(&path) else {
            at_open += 1;
            continue;
        };
        at_read += 1;
        let mut set = RunSet::default();
        set.push(run).unwrap();
        let answers = answers(&set, &model);
        assert_eq!(answers.len(), expected.len());
        let mut failed = false;
        for (answer, expected) in answers.iter().zip(&expected) {
            match answer {
                Ok(answer) => assert_eq!(answer, expected, "flipped a bit at {at}"),
                Err(error) => {
                    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
                    failed = true;
                }
            }
        }
        // Every key is read, so every block is: the damage is found, and the run's file
        // removed for the next open to rebuild.
        assert!(failed, "flipped a bit at {at} and every answer came back");
        assert!(
            !path.exists(),
            "flipped a bit at {at}; the run is still there"
        );
        assert!(set.runs()[0].is_discarded());
        assert!(set.runs()[0].check_whole().is_err());
        // And a whole check finds it too.
        std::fs::write(&path, &bytes).unwrap();
        let check = Run::open_to_check(&path).unwrap().check_whole();
        assert!(
            matches!(check, Err(Error::Corrupt { .. })),
            "flipped a bit at {at}"
        );
        assert!(path.exists(), "checking only leaves the file");
    }
    assert!(
        at_open > 0 && at_read > 0,
        "{at_open} at open, {at_read} at read"
    );
    for cut in [0, 10, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(Run::open(&path).is_err(), "cut at {cut}");
    }
    // The intact run checks whole.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(
        Run::open(&path).unwrap().check_whole().unwrap(),
        model.len() as u64
    );
}

#[test]
fn opening_reads_only_the_header_fences_and_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, model) = written_run(dir.path());
    let good = std::fs::read(&path).unwrap();
    // Zero every record and directory byte: the open cannot tell, the reads can.
    let run = Run::open(&path).unwrap();
    let fences_offset = u64_at(&good[good.len() - RUN_TRAILER_BYTES as usize..], 40) as usize;
    drop(run);
    let mut bytes = good.clone();
    bytes[RUN_HEADER_BYTES as usize..fences_offset].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let run = Run::open(&path).unwrap();
    assert_eq!(run.key_count, model.len() as u64);
    let mut set = RunSet::default();
    set.push(run).unwrap();
    assert!(answers(&set, &model).iter().all(Result::is_err));
}

#[test]
fn long_position_lists_are_read_chunk_by_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let count = POSITIONS_PER_CHUNK * 3 + 7;
    let positions: Vec<u64> = (0..count).map(|at| 64 + at * 64).collect();
    let mut entries = vec![
        RunEntry {
            kind: KIND_STREAM,
            key: b"long".to_vec(),
            first_revision: 5,
            positions: positions.clone(),
            ..RunEntry::default()
        },
        RunEntry {
            kind: 2,
            key: vec![b'k'; 700],
            metadata: Some(vec![b'm'; 900]),
            positions: positions[..POSITIONS_PER_CHUNK as usize].to_vec(),
            ..RunEntry::default()
        },
    ];
    sort_entries(&mut entries).unwrap();
    let path = dir.path().join(run_file_name(64, 64 + count * 64));
    write_run(&path, 64, 64 + count * 64, entries.clone()).unwrap();
    let run = Run::open(&path).unwrap();
    let record = run.get(KIND_STREAM, b"long").unwrap().unwrap();
    assert_eq!((record.first_revision, record.count), (5, count));
    let edges = [0, 1, 511, 512, 513, 1023, 1024, 1536, count - 1, count];
    for &from in &edges {
        for &to in &edges {
            let expected = if from < to {
                positions[from as usize..to as usize].to_vec()
            } else {
                Vec::new()
            };
            assert_eq!(
                run.positions(&record, from, to).unwrap(),
                expected,
                "{from}..{to}"
            );
        }
    }
    let record = run.get(2, &vec![b'k'; 700]).unwrap().unwrap();
    assert_eq!(record.metadata, Some(vec![b'm'; 900]));
    assert_eq!(
        run.positions(&record, 0, u64::MAX).unwrap(),
        positions[..POSITIONS_PER_CHUNK as usize]
    );
    let scanned: Vec<RunEntry> = run.scan().unwrap().map(Result::unwrap).collect();
    assert_eq!(scanned, entries);
    assert_eq!(run.check_whole().unwrap(), 2);
}

#[test]
fn damaged_runs_and_leftovers_are_dropped_at_open_and_the_rest_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = BTreeMap::new();
    let mut ranges = Vec::new();
    for step in 0..3u64 {
        let (from, to) = (64 + step * 64_000, 64 + (step + 1) * 64_000);
        let entries = random_entries(&mut rng, &mut model, from, to, 50);
        write_run(&dir.path().join(run_file_name(from, to)), from, to, entries).unwrap();
        ranges.push((from, to));
    }
    std::fs::write(dir.path().join("junk.run.tmp"), b"half").unwrap();
    let (set, dropped) = open_runs(dir.path(), 64, RunCheck::Whole).unwrap();
    assert!(dropped.is_empty());
    assert_eq!(set.runs().len(), 3);
    check_against(&set, &model);
    assert!(!dir.path().join("junk.run.tmp").exists());
    drop(set);

    // Damage the middle run's records: an open that checks only the trailer and fences
    // keeps it (reads find the damage); one that checks whole runs stops the chain
    // before it, so the log after the first run is replayed (and the runs rebuilt)
    // instead of answering from a damaged file.
    let middle = dir.path().join(run_file_name(ranges[1].0, ranges[1].1));
    let mut bytes = std::fs::read(&middle).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&middle, bytes).unwrap();
    let (set, dropped) = open_runs(dir.path(), 64, RunCheck::Open).unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(set.runs().len(), 3);
    drop(set);
    let (set, dropped) = open_runs(dir.path(), 64, RunCheck::Whole).unwrap();
    assert_eq!(set.covers_to(), Some(ranges[0].1));
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert!(dropped[0].contains("checksum"), "{dropped:?}");
    assert!(!middle.exists());
}

#[test]
fn merging_keeps_every_answer_and_a_crash_after_it_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut model = BTreeMap::new();
    let mut set = RunSet::default();
    let mut to = 64;
    // Runs of falling size are not merged; then an equal one triggers merges.
    for size in [40_000u64, 15_000, 6_000, 6_000] {
        let from = to;
        to = from + size * 64;
        let entries = random_entries(&mut rng, &mut model, from, to, 300);
        let path = dir.path().join(run_file_name(from, to));
        write_run(&path, from, to, entries).unwrap();
        set.push(Run::open(&path).unwrap()).unwrap();
        let merges = set
            .compact(|from, to| dir.path().join(run_file_name(from, to)))
            .unwrap();
        check_against(&set, &model);
        if size == 6_000 && set.runs().len() < 3 {
            assert!(merges > 0);
        }
    }
    assert!(set.runs().len() < 4, "the last run was merged");
    let covered = set.covers_to();
    drop(set);

    // A crash between a merge's rename and the removal of its inputs leaves both: the
    // longer run wins and the inputs go.
    let (set, _) = open_runs(dir.path(), 64, RunCheck::Whole).unwrap();
    let first = &set.runs()[0];
    let (from, to) = (first.covers_from, first.covers_to);
    let kept: Vec<PathBuf> = set.runs().iter().map(|run| run.path().to_owned()).collect();
    drop(set);
    let (older_from, older_to) = (from, from + 64);
    let stale = dir.path().join(run_file_name(older_from, older_to));
    write_run(&stale, older_from, older_to, Vec::new()).unwrap();
    assert!(to > older_to);
    let (set, dropped) = open_runs(dir.path(), 64, RunCheck::Whole).unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(set.covers_to(), covered);
    assert_eq!(
        set.runs()
            .iter()
            .map(|run| run.path().to_owned())
            .collect::<Vec<_>>(),
        kept
    );
    assert!(!stale.exists());
    check_against(&set, &model);
}

/// A record of the stream `s`.
fn stream_s(first_revision: u64, positions: Vec<u64>) -> RunEntry {
    RunEntry {
        kind: KIND_STREAM,
        key: b"s".to_vec(),
        first_revision,
        positions,
        ..RunEntry::default()
    }
}

/// Two adjacent runs in `dir`, `[64, 256)` holding `older` and `[256, 512)` holding `newer`,
/// the path of their merge into `[64, 512)`, and the merge's outcome.
fn two_runs_merged(
    dir: &Path,
    older: RunEntry,
    newer: RunEntry,
) -> (Run, Run, PathBuf, Result<()>) {
    let older_path = dir.join(run_file_name(64, 256));
    let newer_path = dir.join(run_file_name(256, 512));
    write_run(&older_path, 64, 256, vec![older]).unwrap();
    write_run(&newer_path, 256, 512, vec![newer]).unwrap();
    let (older, newer) = (
        Run::open(&older_path).unwrap(),
        Run::open(&newer_path).unwrap(),
    );
    let merged = dir.join(run_file_name(64, 512));
    let outcome = merge_runs(&older, &newer, &merged);
    (older, newer, merged, outcome)
}

/// A newer record that starts before the older one ends: two runs claim one revision.
#[test]
fn merging_refuses_runs_that_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, merged, outcome) = two_runs_merged(
        dir.path(),
        stream_s(0, vec![64, 96]),
        stream_s(1, vec![320]),
    );
    assert!(matches!(outcome, Err(Error::Corrupt { .. })), "{outcome:?}");
    assert!(Run::open(&merged).is_err(), "no merged run to trust");
}

/// A newer record that starts past the older one's end was saved after a scavenge removed
/// the revisions before it (a prefix of the stream, the older's among them): the merge
/// keeps the newer revisions alone.
#[test]
fn merging_keeps_the_newer_revisions_when_a_scavenge_removed_those_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, merged, outcome) = two_runs_merged(
        dir.path(),
        stream_s(0, vec![64]),
        stream_s(5, vec![320, 384]),
    );
    outcome.unwrap();
    let mut set = RunSet::default();
    set.push(Run::open(&merged).unwrap()).unwrap();
    assert_eq!(
        set.head(KIND_STREAM, b"s").unwrap().unwrap().end_revision,
        7
    );
    assert_eq!(
        set.revisions(KIND_STREAM, b"s", 0, 10).unwrap(),
        Some((5, vec![320, 384]))
    );
}

/// Review (rev2): a newer record holding no position but saying the stream's revisions
/// end later (a save leaves out the revisions a scavenge removed, always a prefix) keeps
/// saying so once merged: the runs' head answers alike before and after the merge.
#[test]
fn merging_keeps_where_a_record_without_positions_ends_the_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let (older, newer, merged, outcome) = two_runs_merged(
        dir.path(),
        stream_s(0, vec![64, 128]),
        stream_s(5, Vec::new()),
    );
    let mut set = RunSet::default();
    set.push(older).unwrap();
    set.push(newer).unwrap();
    let before = set.head(KIND_STREAM, b"s").unwrap().unwrap().end_revision;
    assert_eq!(before, 5);
    outcome.unwrap();
    let mut set = RunSet::default();
    set.push(Run::open(&merged).unwrap()).unwrap();
    let after = set.head(KIND_STREAM, b"s").unwrap().unwrap().end_revision;
    assert_eq!(after, before, "where the stream's revisions end, merged");
}

/// Run by [`a_run_build_killed_midway_is_never_trusted`] in a child process: writes runs
/// (and merges them) in a loop until killed.
#[test]
#[ignore = "child process of a_run_build_killed_midway_is_never_trusted"]
fn child_writes_runs_until_killed() {
    let Ok(dir) = std::env::var("STRATA_RUN_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut rng = StdRng::seed_from_u64(13);
    let mut model = BTreeMap::new();
    let mut set = RunSet::default();
    let mut to = 64;
    loop {
        let from = to;
        to = from + 50_000 * 64;
        let entries = random_entries(&mut rng, &mut model, from, to, 5_000);
        let path = dir.join(run_file_name(from, to));
        write_run(&path, from, to, entries).unwrap();
        set.push(Run::open(&path).unwrap()).unwrap();
        set.compact(|from, to| dir.join(run_file_name(from, to)))
            .unwrap();
        println!("run written up to {to}");
    }
}

#[test]
fn a_run_build_killed_midway_is_never_trusted() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    for kill_after_runs in [1usize, 4] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "run_file::tests::child_writes_runs_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("STRATA_RUN_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after_runs {
            let line = lines.next().expect("the child writes runs").unwrap();
            if line.starts_with("run written") {
                seen += 1;
            }
        }
        // SIGKILL while the next run (or a merge) is being written.
        std::thread::sleep(std::time::Duration::from_millis(30));
        child.kill().unwrap();
        child.wait().unwrap();
        let (set, dropped) = open_runs(dir.path(), 64, RunCheck::Whole).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        let covered = set
            .covers_to()
            .expect("runs written before the kill remain");
        // Every run that chains is whole: replaying its keys from the start agrees with it.
        let mut rng = StdRng::seed_from_u64(13);
        let mut model = BTreeMap::new();
        let mut to = 64;
        while to < covered {
            let from = to;
            to = from + 50_000 * 64;
            random_entries(&mut rng, &mut model, from, to, 5_000);
        }
        assert_eq!(to, covered);
        check_against(&set, &model);
        drop(set);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
}

/// The figures in docs/BENCHMARKS.md ("On-disk index runs"): an index of `EVENTS` events in
/// `STREAMS` streams (event `j` is revision `j / STREAMS` of stream `j % STREAMS`, at log
/// position `64 + 128 j`), saved as main's index file and as a run. Each `bench_*` test
/// is run alone (its own process), with `STRATA_RUN_BENCH_DIR`, `STRATA_RUN_BENCH_EVENTS`
/// and `STRATA_RUN_BENCH_STREAMS` set; they print what they measure.
mod bench {
    use std::time::Instant;

    use super::*;
    use crate::index::{Index, UnsavedStream};
    use crate::index_file::{list_index_files, load_index_file, write_index_file};

    struct Setup {
        dir: PathBuf,
        events: u64,
        streams: u64,
    }

    fn setup() -> Option<Setup> {
        let dir = PathBuf::from(std::env::var("STRATA_RUN_BENCH_DIR").ok()?);
        let number = |name: &str| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or_else(|| panic!("{name} must be set"))
        };
        Some(Setup {
            dir,
            events: number("STRATA_RUN_BENCH_EVENTS"),
            streams: number("STRATA_RUN_BENCH_STREAMS"),
        })
    }

    fn name(stream: u64) -> String {
        format!("order-{stream}")
    }

    fn positions(setup: &Setup, stream: u64) -> Vec<u64> {
        (stream..setup.events)
            .step_by(setup.streams as usize)
            .map(|event| 64 + 128 * event)
            .collect()
    }

    fn end(setup: &Setup) -> u64 {
        64 + 128 * setup.events
    }

    fn status(field: &str) -> String {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|line| line.starts_with(field))
            .map(|line| {
                line.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }

    fn report(what: &str, started: Instant) {
        println!(
            "{what}: {:.3} s, VmRSS {}, VmHWM {}",
            started.elapsed().as_secs_f64(),
            status("VmRSS:"),
            status("VmHWM:")
        );
    }

    #[test]
    #[ignore = "benchmark: writes the files the other bench_ tests open"]
    fn bench_build() {
        let Some(setup) = setup() else { return };
        std::fs::create_dir_all(setup.dir.join("index")).unwrap();
        std::fs::create_dir_all(setup.dir.join("runs")).unwrap();
        let started = Instant::now();
        // main's format, the streams split over files of at most 1,000,000 streams each
        // (main's saver writes one file per 64 MiB of log; its open reads every file whole
        // either way, and never checks these files' coverage against each other here).
        let chunk = 1_000_000u64;
        let mut from = 64;
        for (sequence, first) in (0..setup.streams).step_by(chunk as usize).enumerate() {
            let last = (first + chunk).min(setup.streams);
            let unsaved: Vec<UnsavedStream> = (first..last)
                .map(|stream| UnsavedStream {
                    stream: strata_core::StreamName::new(name(stream)).unwrap(),
                    first_revision: 0,
                    positions: positions(&setup, stream),
                    tombstone_position: None,
                    metadata: None,
                })
                .collect();
            let to = if last == setup.streams {
                end(&setup)
            } else {
                from + 1
            };
            write_index_file(
                &setup.dir.join("index"),
                sequence as u64,
                from,
                to,
                &unsaved,
                &[],
                false,
            )
            .unwrap();
            from = to;
        }
        report("index files written", started);
        let started = Instant::now();
        let mut order: Vec<(u64, u64)> = (0..setup.streams)
            .map(|stream| (key_hash(KIND_STREAM, name(stream).as_bytes()), stream))
            .collect();
        order.sort_unstable();
        let entries = order.into_iter().map(|(_, stream)| RunEntry {
            kind: KIND_STREAM,
            key: name(stream).into_bytes(),
            first_revision: 0,
            positions: positions(&setup, stream),
            ..RunEntry::default()
        });
        write_run(
            &setup.dir.join("runs").join(run_file_name(64, end(&setup))),
            64,
            end(&setup),
            entries,
        )
        .unwrap();
        report("run written", started);
    }

    /// Random streams looked up after the open, as a writer checking heads and a reader
    /// reading streams would.
    fn sample(setup: &Setup) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(1);
        (0..100_000)
            .map(|_| rng.gen_range(0..setup.streams))
            .collect()
    }

    #[test]
    #[ignore = "benchmark: main's open of its index files"]
    fn bench_open_index_files() {
        let Some(setup) = setup() else { return };
        report("before open", Instant::now());
        let started = Instant::now();
        let mut index = Index::new(false);
        for (_, path) in list_index_files(&setup.dir.join("index")).unwrap() {
            load_index_file(&path, &mut index).unwrap();
        }
        report("index files loaded (main's open)", started);
        let started = Instant::now();
        let mut found = 0u64;
        for stream in sample(&setup) {
            let name = name(stream);
            let entry = index.stream(name.as_str()).unwrap();
            found += entry.positions.len() as u64;
            assert_eq!(entry.positions, positions(&setup, stream));
        }
        report(
            &format!("100,000 stream reads ({found} positions)"),
            started,
        );
    }

    #[test]
    #[ignore = "benchmark: opening the run"]
    fn bench_open_run() {
        let Some(setup) = setup() else { return };
        report("before open", Instant::now());
        let started = Instant::now();
        let (set, dropped) = open_runs(&setup.dir.join("runs"), 64, RunCheck::Open).unwrap();
        assert!(dropped.is_empty());
        report(
            &format!("run opened ({} bytes of fences)", set.resident_bytes()),
            started,
        );
        let started = Instant::now();
        let mut found = 0u64;
        for stream in sample(&setup) {
            let name = name(stream);
            let head = set.head(KIND_STREAM, name.as_bytes()).unwrap().unwrap();
            let read = set
                .positions(KIND_STREAM, name.as_bytes(), 0, head.end_revision)
                .unwrap();
            found += read.len() as u64;
            assert_eq!(read, positions(&setup, stream));
        }
        report(
            &format!("100,000 stream heads + reads ({found} positions)"),
            started,
        );
    }
}

/// Runs written from what the live index hands its saver (one per checkpoint, merged as
/// they come) answer every stream and secondary key as the in-memory index does.
#[test]
fn runs_saved_from_the_index_answer_as_the_index() {
    use crate::format::TOMBSTONE_REVISION;
    use crate::index::{Index, live_positions};
    use crate::secondary::{KeyNames, Kind, RunKeys};
    use strata_core::StreamName;

    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(21);
    let mut index = Index::new(true);
    let mut types = KeyNames::default();
    let mut set = RunSet::default();
    let mut revisions: BTreeMap<String, u64> = BTreeMap::new();
    let mut tombstoned = std::collections::BTreeSet::new();
    let mut position = 64u64;
    let mut saved_to = 64u64;
    for checkpoint in 0..6 {
        for _ in 0..2_000 {
            let category = ["order", "cart", "user"][rng.gen_range(0..3)];
            let stream = format!("{category}-{}", rng.gen_range(0..150));
            if tombstoned.contains(&stream) {
                continue;
            }
            let name = StreamName::new(stream.clone()).unwrap();
            let revision = revisions.entry(stream.clone()).or_default();
            if rng.gen_bool(0.003) {
                let keys = RunKeys::default();
                index.add_events(&name, TOMBSTONE_REVISION, &[position], &keys);
                tombstoned.insert(stream);
            } else {
                let count = rng.gen_range(1..4u64);
                let positions: Vec<u64> = (0..count).map(|k| position + k * 64).collect();
                let mut keys = RunKeys::default();
                for k in 0..count {
                    let event_type = ["Placed", "Paid"][rng.gen_range(0..2)];
                    let metadata = if rng.gen_bool(0.1) {
                        br#"{"$correlationId":"c-1"}"#.as_slice()
                    } else {
                        b"{}".as_slice()
                    };
                    keys.push(&mut types, &stream, *revision + k, event_type, metadata);
                }
                index.add_events(&name, *revision, &positions, &keys);
                *revision += count;
                position += (count - 1) * 64;
            }
            position += 64;
        }
        let entries =
            entries_from_unsaved(index.take_unsaved(), index.secondary.take_unsaved()).unwrap();
        let path = dir.path().join(run_file_name(saved_to, position));
        write_run(&path, saved_to, position, entries).unwrap();
        set.push(Run::open(&path).unwrap()).unwrap();
        set.compact(|from, to| dir.path().join(run_file_name(from, to)))
            .unwrap();
        saved_to = position;
        assert!(set.runs().len() <= 1 + checkpoint, "runs are merged");
    }
    for (name, entry) in index.streams() {
        let key = name.as_str().as_bytes();
        let head = set.head(KIND_STREAM, key).unwrap().unwrap();
        assert_eq!(head.end_revision, entry.positions.len() as u64);
        assert_eq!(head.tombstone, entry.tombstone_position);
        let positions = set.positions(KIND_STREAM, key, 0, u64::MAX).unwrap();
        assert_eq!(positions, live_positions(&entry.positions));
    }
    let mut keys_checked = 0;
    for (kind, name, postings) in index.secondary.iter() {
        let positions = set
            .positions(kind as u8, name.as_bytes(), 0, u64::MAX)
            .unwrap();
        assert_eq!(positions, postings.positions, "{kind:?} {name}");
        keys_checked += 1;
    }
    assert!(
        keys_checked >= 3 + 2 + 1 + 1 + 3,
        "categories, types, correlation, starts"
    );
    assert!(
        !set.positions(Kind::Correlation as u8, b"c-1", 0, u64::MAX)
            .unwrap()
            .is_empty()
    );
}

/// Rewrites a run as version 2 wrote it: no key filter.
fn rewrite_without_filter(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let mut trailer = bytes[bytes.len() - RUN_TRAILER_BYTES as usize..].to_vec();
    let fences_end = u64_at(&trailer, 40) + u64_at(&trailer, 16).div_ceil(FENCE_STRIDE as u64) * 8;
    let mut out = bytes[..fences_end as usize].to_vec();
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    trailer[48..52].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(
            crc32c::crc32c(&out[..RUN_HEADER_BYTES as usize]),
            &out[u64_at(&trailer, 40) as usize..],
        ),
        &trailer[..68],
    );
    trailer[68..72].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&trailer);
    std::fs::write(path, out).unwrap();
}

/// A run written before the key filter (version 2) still opens and answers every key,
/// present and absent; the same run with its filter answers the same, and keys it does
/// not hold are mostly refused by the filter alone.
#[test]
fn a_run_without_a_key_filter_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut model = BTreeMap::new();
    let entries = random_entries(&mut rng, &mut model, 64, 64 * 20_000, 400);
    let path = dir.path().join(run_file_name(64, 64 * 20_000));
    write_run(&path, 64, 64 * 20_000, entries.clone()).unwrap();
    let filtered = Run::open(&path).unwrap();
    let filter = filtered.filter.clone().unwrap();
    let absent: Vec<Vec<u8>> = (0..2_000)
        .map(|number| format!("absent-{number}").into_bytes())
        .collect();
    let refused = absent
        .iter()
        .filter(|key| !filter.may_contain(key_hash(KIND_STREAM, key)))
        .count();
    assert!(
        refused > 1_900,
        "only {refused} of 2,000 absent keys refused"
    );
    drop(filtered);

    rewrite_without_filter(&path);
    let run = Run::open(&path).unwrap();
    assert!(run.filter.is_none());
    assert_eq!(run.check_whole().unwrap(), entries.len() as u64);
    for key in &absent {
        assert!(run.get(KIND_STREAM, key).unwrap().is_none());
    }
    let mut set = RunSet::default();
    set.push(run).unwrap();
    check_against(&set, &model);
}
