//! Opening a store: load the index files, replay the log after them, and decide what the
//! end of the log is.
//!
//! A crash can leave the last groups partly written: frames without their commit frame, a
//! frame cut short, and after a power loss valid frames behind a damaged one (unsynced
//! pages reach the disk in any order). None of that was acknowledged, and it is dropped.
//! But when the clean-shutdown marker, an index file or a sync mark proves that the log
//! reached further than the replay can read, acknowledged events are lost: the open
//! fails, and nothing is changed, so the evidence stays for the operator (`strata verify`,
//! then `strata repair` to accept the loss).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use strata_core::{Error, Result};

use crate::config::Config;
use crate::format::SEGMENT_HEADER_BYTES;
use crate::index::{Index, RecentIds};
use crate::index_load::{load_index, load_index_after_runs};
use crate::io::Seam;
use crate::log_reader::to_usize;
use crate::replay::{REPLAY_CHUNK_BYTES, Replayed, replay};
use crate::run_file::{RunCheck, RunSet, open_runs};
use crate::segments::{
    OpenMode, Segments, create_segment, list_segments, open_segment, recorded_segment_size,
};
use crate::tail::{
    AfterStop, Claim, ClaimSource, LostData, lost_end, scan_after_stop, skip_segment_header,
};

pub(crate) const CLEAN_MARKER: &str = "CLEAN";

pub(crate) struct Recovered {
    pub segments: Segments,
    pub index: Index,
    pub recent_ids: RecentIds,
    /// Where the next frame goes; everything before is committed and synced.
    pub end: u64,
    pub index_file_sequence: u64,
    pub index_covered_to: u64,
    /// The intact sorted runs, chained from the log's start and within the index files'
    /// coverage; the index saver rebuilds the rest.
    pub runs: RunSet,
}

pub(crate) fn recover(data_dir: &Path, config: &Config) -> Result<Recovered> {
    let clean_end = read_clean_marker(data_dir);
    let (segments, created) = open_log(data_dir, config)?;
    let segment_size_bytes = segments.size_bytes();
    let mut recent_ids = RecentIds::new(config.recent_event_ids_max);
    let index_dir = data_dir.join("index");
    // With the index's memory holding only the tail, the intact runs hold the streams of
    // the index files they cover: those files' stream records are counted, not loaded.
    let mut runs_at_open = None;
    let mut runs_to = 0;
    if config.index_memory_tail_only {
        // Only their headers, fences and trailers are read: the other blocks are
        // checked when read, so the open does not grow with the runs.
        let (runs, dropped) = open_runs(
            &crate::index_saver::runs_dir(data_dir),
            SEGMENT_HEADER_BYTES,
            RunCheck::Open,
        )?;
        for reason in dropped {
            tracing::warn!(%reason, "an index run is rebuilt");
        }
        runs_to = runs.covers_to().unwrap_or(0);
        runs_at_open = Some(runs);
    }
    let mut loaded = load_index_after_runs(&index_dir, &segments, config.system_streams, runs_to)?;
    if runs_to > 0 && loaded.problem.is_none() && loaded.covered_to < runs_to {
        // The runs reach past the index files (dropped below): load the files whole.
        loaded = load_index(&index_dir, &segments, config.system_streams)?;
        runs_to = 0;
    }
    let mut index = loaded.index;
    if runs_to > 0
        && loaded.problem.is_none()
        && let Some(runs) = &runs_at_open
    {
        index.start_after_runs(std::sync::Arc::new(runs.clone()), runs_to);
    }
    let replayed = replay(
        &segments,
        &mut index,
        &mut recent_ids,
        loaded.covered_to,
        &mut |_| {},
    )?;
    let end = skip_segment_header(replayed.committed_end, segment_size_bytes);
    // A clean close vouches that the log ends exactly where the replay stopped.
    let vouched = created
        || (clean_end.map(|clean| skip_segment_header(clean, segment_size_bytes)) == Some(end)
            && !replayed.has_torn_tail());
    let after_stop = if vouched {
        AfterStop::default()
    } else {
        scan_after_stop(&segments, replayed.stopped_at, &mut |_, _| {})?
    };
    let mut claims = loaded.claims;
    claims.extend(clean_end.map(|end| Claim {
        end,
        source: ClaimSource::CleanMarker,
    }));
    claims.extend(after_stop.sync_mark.clone());
    refuse_if_lost(&segments, &replayed, end, &claims)?;
    // The open goes ahead: from here on, evidence that has been weighed may be cleared.
    segments.extend_short()?;
    let index_file_sequence = match &loaded.problem {
        Some(problem) => {
            tracing::warn!(%problem, "rebuilding the index from the whole log");
            remove_index_files(&loaded.files)?;
            0
        }
        None => loaded.files.len() as u64,
    };
    if !vouched {
        drop_torn_tail(&segments, &replayed, &after_stop, end)?;
        // What the replay read may have come from the page cache of a process that died
        // before its own sync: make it durable before publishing it as such.
        segments.sync(segments.segment_of(loaded.covered_to.min(end))..segments.count())?;
    }
    let runs = match runs_at_open {
        Some(mut runs) => {
            for reason in runs.retain_up_to(loaded.covered_to) {
                tracing::warn!(%reason, "an index run is rebuilt");
            }
            runs
        }
        None => open_index_runs(data_dir, loaded.covered_to)?,
    };
    if clean_end.is_some() {
        remove_clean_marker(data_dir)?;
    }
    Ok(Recovered {
        runs,
        segments,
        index,
        recent_ids,
        end,
        index_file_sequence,
        index_covered_to: loaded.covered_to,
    })
}

/// Opens the sorted runs that chain from the log's start, each checked whole (every
/// block's checksum: the open reads the index files whole anyway, and memory, which holds
/// every position, rebuilds what is dropped); damaged ones, those cut off by them and those reaching past where the
/// index files end (`index_covered_to`, which the open has checked against the log) are
/// removed, to be rebuilt.
fn open_index_runs(data_dir: &Path, index_covered_to: u64) -> Result<RunSet> {
    let dir = crate::index_saver::runs_dir(data_dir);
    let (mut runs, mut dropped) = open_runs(&dir, SEGMENT_HEADER_BYTES, RunCheck::Whole)?;
    dropped.extend(runs.retain_up_to(index_covered_to));
    for reason in dropped {
        tracing::warn!(%reason, "an index run is rebuilt");
    }
    Ok(runs)
}

/// Opens the segments (an existing store keeps the segment size it was created with), or
/// makes segment 0 of a new store; says whether the store is new.
fn open_log(data_dir: &Path, config: &Config) -> Result<(Segments, bool)> {
    let log_dir = data_dir.join("log");
    for dir in [&log_dir, &data_dir.join("index")] {
        std::fs::create_dir_all(dir)
            .map_err(|error| Error::io(format!("creating {}", dir.display()), error))?;
    }
    crate::segments::remove_scavenge_leftovers(&log_dir)?;
    let created = list_segments(&log_dir)?.is_empty();
    let segment_size_bytes = if created {
        config.segment_size_bytes
    } else {
        recorded_segment_size(&log_dir)?
    };
    let segments = open_segments(
        &log_dir,
        segment_size_bytes,
        OpenMode::Recover,
        &Seam::from_config(config),
    )?;
    if created {
        segments.push(create_segment(&log_dir, 0, segment_size_bytes)?);
    }
    Ok((segments, created))
}

/// Fails, changing nothing, when a claim reaches past the readable end.
fn refuse_if_lost(
    segments: &Segments,
    replayed: &Replayed,
    end: u64,
    claims: &[Claim],
) -> Result<()> {
    let Some(claim) = lost_end(claims, end, segments.size_bytes()) else {
        return Ok(());
    };
    let lost = LostData {
        segments,
        claim,
        end,
        replayed,
    };
    tracing::error!(%lost, "refusing to open");
    Err(lost.to_error())
}

/// Zeroes everything after `end`, saying what is dropped.
fn drop_torn_tail(
    segments: &Segments,
    replayed: &Replayed,
    after_stop: &AfterStop,
    end: u64,
) -> Result<()> {
    if replayed.has_torn_tail() || after_stop.event_frames > 0 {
        tracing::warn!(
            at = end,
            stopped_at = replayed.stopped_at,
            valid_frames_after = after_stop.event_frames,
            "dropping a torn tail left by a crash (nothing after the end was acknowledged)"
        );
    }
    zero_after(segments, end)
}

fn remove_index_files(files: &[(u64, std::path::PathBuf)]) -> Result<()> {
    for (_, path) in files {
        std::fs::remove_file(path)
            .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
        crate::index_summary::remove_summary(path);
    }
    Ok(())
}

/// Opens every segment of `log_dir`, checking that none is missing.
pub(crate) fn open_segments(
    log_dir: &Path,
    size_bytes: u64,
    mode: OpenMode,
    seam: &Seam,
) -> Result<Segments> {
    let segment_indexes = list_segments(log_dir)?;
    let mut files = Vec::with_capacity(segment_indexes.len());
    for (expected, &segment_index) in segment_indexes.iter().enumerate() {
        if segment_index != expected as u64 {
            return Err(Error::Corrupt {
                detail: format!("segment {expected} is missing from {}", log_dir.display()),
            });
        }
        files.push(open_segment(
            log_dir,
            segment_index,
            size_bytes,
            mode,
            seam,
        )?);
    }
    Ok(Segments::new(
        log_dir.to_path_buf(),
        size_bytes,
        files,
        seam.clone(),
    ))
}

/// The log end a clean shutdown recorded (it says the log past it is zero), if the
/// marker is there and intact. Reading it changes nothing: it is removed only once an
/// open has weighed it and goes ahead.
pub(crate) fn read_clean_marker(data_dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(data_dir.join(CLEAN_MARKER)).ok()?;
    if bytes.len() != 12
        || u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]))
            != crc32c::crc32c(&bytes[..8])
    {
        return None;
    }
    Some(u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8])))
}

/// Removes the clean-shutdown marker, durably: from now on the store may be written.
pub(crate) fn remove_clean_marker(data_dir: &Path) -> Result<()> {
    let path = data_dir.join(CLEAN_MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => crate::segments::sync_dir(data_dir),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io(format!("removing {}", path.display()), error)),
    }
}

/// Writes the clean-shutdown marker (called by the syncer as it stops).
pub(crate) fn write_clean_marker(data_dir: &Path, end: u64) -> Result<()> {
    let mut bytes = end.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&end.to_le_bytes()).to_le_bytes());
    let path = data_dir.join(CLEAN_MARKER);
    std::fs::write(&path, &bytes)
        .and_then(|()| File::open(&path)?.sync_all())
        .map_err(|error| Error::io(format!("writing {}", path.display()), error))?;
    crate::segments::sync_dir(data_dir)
}

/// Zeroes whatever lies after the committed end, so later appends never sit next to
/// stale frames of a torn write.
pub(crate) fn zero_after(segments: &Segments, end: u64) -> Result<()> {
    let zeros = vec![0u8; to_usize(REPLAY_CHUNK_BYTES)];
    for segment_index in segments.segment_of(end)..segments.count() {
        let segment_start = segments.segment_start(segment_index);
        let mut position = end.max(segment_start + SEGMENT_HEADER_BYTES);
        let segment_end = segments.segment_start(segment_index + 1);
        let file = segments.file(segment_index)?;
        let mut dirty = false;
        while position < segment_end {
            let length = to_usize(REPLAY_CHUNK_BYTES.min(segment_end - position));
            let chunk = segments.read(position, length)?;
            if chunk.iter().any(|&byte| byte != 0) {
                file.write_all_at(&zeros[..length], position - segment_start)
                    .map_err(|error| {
                        Error::io(format!("zeroing {}", segments.describe(position)), error)
                    })?;
                dirty = true;
            }
            position += length as u64;
        }
        if dirty {
            file.sync_data()
                .map_err(|error| Error::io(format!("syncing {}", segments.describe(end)), error))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};

    use super::*;
    use crate::format::{EventRecord, encode_event_marked};
    use crate::store::Store;

    fn record(revision: u64, commit: bool) -> EventRecord<'static> {
        EventRecord {
            stream: "s",
            revision,
            id: 0x5eed_0000 + u128::from(revision),
            event_type: "Crafted",
            json: false,
            created_nanos: 0,
            data: b"crafted after the end",
            metadata: &[],
            commit,
        }
    }

    /// A closed store whose stream `s` has 3 events, as a crash leaves it (no marker, no
    /// index file); returns the directory and the end of its log.
    async fn crashed_store() -> (tempfile::TempDir, u64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        let stream = StreamName::new("s").unwrap();
        for _ in 0..3 {
            store
                .append(
                    &stream,
                    ExpectedRevision::Any,
                    vec![ProposedEvent::json("E", "{}")],
                )
                .await
                .unwrap();
        }
        store.close();
        drop(store);
        std::fs::remove_file(dir.path().join(CLEAN_MARKER)).unwrap();
        for entry in std::fs::read_dir(dir.path().join("index")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let segments = open_segments(
            &dir.path().join("log"),
            Config::small_for_tests().segment_size_bytes,
            OpenMode::ReadOnly,
            &Seam::default(),
        )
        .unwrap();
        let replayed = replay(
            &segments,
            &mut Index::default(),
            &mut RecentIds::new(1),
            0,
            &mut |_| {},
        )
        .unwrap();
        (dir, replayed.committed_end)
    }

    /// Writes after the log's end, as the page cache of a crashed machine might have: group
    /// A (revisions 3 and 4) with its first frame damaged, then group B (revision 5) whose
    /// sync mark is `mark_of_b`.
    fn write_two_groups_the_first_torn(dir: &Path, end: u64, mark_of_b: impl Fn(u64) -> u64) {
        let mut bytes = Vec::new();
        encode_event_marked(&mut bytes, &record(3, false), Some(end));
        encode_event_marked(&mut bytes, &record(4, true), None);
        let end_of_a = end + bytes.len() as u64;
        encode_event_marked(&mut bytes, &record(5, true), Some(mark_of_b(end_of_a)));
        // Inside A's first frame (its sync mark): the frame fails its checksum.
        bytes[60] ^= 0x01;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("log").join("0000000000.seg"))
            .unwrap();
        file.write_all_at(&bytes, end).unwrap();
    }

    async fn events_of_s(store: &Store) -> Vec<strata_core::RecordedEvent> {
        store
            .read_stream(
                &StreamName::new("s").unwrap(),
                ReadStreamOptions::forwards(),
            )
            .await
            .unwrap()
            .into_events()
    }

    /// After a power loss, group B reached the disk and group A (written before it) did
    /// not, whole: B's sync mark says A was not synced when B was written, so nothing
    /// acknowledged is lost and both are dropped as a torn tail.
    #[tokio::test]
    async fn valid_frames_behind_an_unsynced_tear_are_a_torn_tail() {
        let (dir, end) = crashed_store().await;
        write_two_groups_the_first_torn(dir.path(), end, |_| end);
        let store = Store::open(dir.path(), Config::small_for_tests())
            .expect("an unsynced tear followed by unsynced frames opens");
        assert_eq!(events_of_s(&store).await.len(), 3);
        let next = store
            .append(
                &StreamName::new("s").unwrap(),
                ExpectedRevision::Exact(2),
                vec![ProposedEvent::json("E", "{}")],
            )
            .await
            .unwrap();
        assert_eq!(next.position.0, end, "the torn tail was dropped");
        store.close();
    }

    /// B's sync mark says A had been synced (so possibly acknowledged) when B was written:
    /// A's damage is a loss, and the open refuses, naming the mark and both ends.
    #[tokio::test]
    async fn a_tear_before_a_later_sync_mark_refuses_to_open() {
        let (dir, end) = crashed_store().await;
        write_two_groups_the_first_torn(dir.path(), end, |end_of_a| end_of_a);
        match Store::open(dir.path(), Config::small_for_tests()).map(|_| ()) {
            Err(Error::Corrupt { detail }) => assert!(
                detail.contains("sync mark") && detail.contains(&format!("position {end}")),
                "{detail}"
            ),
            other => panic!("expected Error::Corrupt, got {other:?}"),
        }
    }

    /// A sync mark that claims more than the log before its own frame is not genuine (a
    /// frame forged inside event data could say anything) and proves nothing.
    #[tokio::test]
    async fn a_sync_mark_past_its_own_frame_is_ignored() {
        let (dir, end) = crashed_store().await;
        write_two_groups_the_first_torn(dir.path(), end, |_| u64::MAX / 2);
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        assert_eq!(events_of_s(&store).await.len(), 3);
        store.close();
    }
}
