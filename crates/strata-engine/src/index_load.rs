//! Loading the index files at open. They must follow each other without a gap, end where
//! a frame of the log ends, and be of the current version; otherwise the index is rebuilt
//! from the whole log (the log is the truth). Either way every intact file's `covers_to` is kept as a claim on how
//! far the log reached, so that a log shorter than its index files is found out.

use std::path::{Path, PathBuf};

use strata_core::Result;

use crate::format::{SEGMENT_HEADER_BYTES, decode_frame};
use crate::index::Index;
use crate::index_file::{
    STREAM_RECORD_BYTES_MIN, announced_stream_count, claimed_coverage, count_from_recorded_summary,
    count_from_summary, index_file_name, list_index_files, load_index_file_after_runs,
};
use crate::log_reader::LogReader;
use crate::segments::Segments;
use crate::tail::{Claim, ClaimSource};

pub(crate) struct LoadedIndex {
    /// Empty when the files are unusable.
    pub index: Index,
    pub files: Vec<(u64, PathBuf)>,
    /// Where the replay starts.
    pub covered_to: u64,
    /// What each intact file says of the log's end.
    pub claims: Vec<Claim>,
    /// Why the files cannot be used, if so: the index is rebuilt from the log.
    pub problem: Option<String>,
}

/// Loads the index files in order.
pub(crate) fn load_index(
    index_dir: &Path,
    segments: &Segments,
    system_streams: bool,
) -> Result<LoadedIndex> {
    load_index_after_runs(index_dir, segments, system_streams, 0)
}

/// Loads the index files in order; the stream records of files ending at or before
/// `runs_to` are only counted (the sorted runs hold them).
pub(crate) fn load_index_after_runs(
    index_dir: &Path,
    segments: &Segments,
    system_streams: bool,
    runs_to: u64,
) -> Result<LoadedIndex> {
    let mut files = list_index_files(index_dir)?;
    let mut index = Index::new(system_streams);
    if runs_to == 0 {
        reserve_streams(&mut index, &files);
    }
    let mut covered_to = SEGMENT_HEADER_BYTES;
    let mut problem = None;
    let mut claims = Vec::new();
    // Files the runs cover that are missing, counted from their summaries.
    let mut missing = Vec::new();
    let mut present = files.iter().peekable();
    let mut expected_sequence = 0u64;
    while let Some((sequence, path)) = present.peek() {
        let claim = |end| Claim {
            end,
            source: ClaimSource::IndexFile(path.clone()),
        };
        if problem.is_some() {
            claims.extend(claimed_coverage(path).map(|coverage| claim(coverage.covers_to)));
            present.next();
            continue;
        }
        if *sequence != expected_sequence {
            // A file the runs cover may be missing: its summary counts it, the index
            // saver writes it again.
            let gone = index_dir.join(index_file_name(expected_sequence));
            let counted = (runs_to > 0 && *sequence > expected_sequence)
                .then(|| count_from_recorded_summary(&gone, &mut index, covered_to, runs_to))
                .flatten();
            if let Some(coverage) = counted {
                covered_to = coverage.covers_to;
                missing.push((expected_sequence, gone));
                expected_sequence += 1;
                continue;
            }
            problem = Some(format!("index file {} is out of sequence", path.display()));
            claims.extend(claimed_coverage(path).map(|coverage| claim(coverage.covers_to)));
            present.next();
            continue;
        }
        present.next();
        expected_sequence += 1;
        // A file the runs cover is counted from its summary when it has a good one.
        let counted = (runs_to > 0)
            .then(|| count_from_summary(path, &mut index, runs_to))
            .flatten();
        match counted.map_or_else(|| load_index_file_after_runs(path, &mut index, runs_to), Ok) {
            Ok(coverage) => {
                claims.push(claim(coverage.covers_to));
                if coverage.covers_from == covered_to {
                    covered_to = coverage.covers_to;
                } else {
                    problem = Some(format!("index file {} leaves a gap", path.display()));
                }
            }
            Err(unusable) => {
                // A damaged file the runs cover: counted from what its summary recorded,
                // written again by the index saver (`index_file_mend`).
                let recorded = (runs_to > 0)
                    .then(|| count_from_recorded_summary(path, &mut index, covered_to, runs_to))
                    .flatten();
                if let Some(coverage) = recorded {
                    tracing::warn!(file = %path.display(), %unusable, "a damaged index file is written again from the log");
                    covered_to = coverage.covers_to;
                    continue;
                }
                claims.extend(unusable.coverage.map(|coverage| claim(coverage.covers_to)));
                problem = Some(format!("index file {} {unusable}", path.display()));
            }
        }
    }
    if problem.is_none() && !missing.is_empty() {
        files.extend(missing);
        files.sort_unstable();
    }
    if problem.is_none()
        && covered_to > SEGMENT_HEADER_BYTES
        && !frame_ends_at(segments, covered_to)
    {
        problem = Some(format!(
            "the index files cover the log up to position {covered_to}, where no frame ends"
        ));
    }
    if problem.is_some() {
        return Ok(LoadedIndex {
            index: Index::new(system_streams),
            files,
            covered_to: SEGMENT_HEADER_BYTES,
            claims,
            problem,
        });
    }
    Ok(LoadedIndex {
        index,
        files,
        covered_to,
        claims,
        problem,
    })
}

/// Sizes the index from the files' headers. Streams repeat across files, so the sum may
/// overshoot; it is capped by what the files' bytes could describe, and a failed
/// reservation only means the table grows as it loads. The counts are not checked yet (a
/// damaged header may announce anything), hence the saturating sum.
fn reserve_streams(index: &mut Index, files: &[(u64, PathBuf)]) {
    let announced = files
        .iter()
        .map(|(_, path)| announced_stream_count(path))
        .fold(0u64, u64::saturating_add);
    let file_bytes: u64 = files
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    index.reserve_streams(
        usize::try_from(announced.min(file_bytes / STREAM_RECORD_BYTES_MIN)).unwrap_or(0),
    );
}

/// True when a valid frame ends exactly at `position`.
pub(crate) fn frame_ends_at(segments: &Segments, position: u64) -> bool {
    let mut normalized = position;
    if normalized % segments.size_bytes() == SEGMENT_HEADER_BYTES {
        normalized -= SEGMENT_HEADER_BYTES;
    }
    if normalized < 8 || segments.segment_of(normalized - 1) >= segments.count() {
        return false;
    }
    let Ok(trailer) = segments.read(normalized - 4, 4) else {
        return false;
    };
    let frame_len = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().unwrap_or([0; 4]),
    ));
    if frame_len == 0 || frame_len > normalized {
        return false;
    }
    // A skip frame (records a scavenge removed) ends there: the scavenge keeps every index
    // file's end at the end of a frame or of a skip frame.
    if let Ok(head) = segments.read(normalized - frame_len, crate::format::SKIP_HEAD_BYTES)
        && head[8] == crate::format::KIND_SKIP
    {
        return matches!(
            crate::format::frame_length(&head, crate::log_reader::to_usize(frame_len)),
            Err(crate::format::FrameError::Skip(skip_len)) if skip_len as u64 == frame_len
        );
    }
    LogReader::new(segments)
        .read_frame(normalized - frame_len)
        .is_ok_and(|frame| {
            frame.len() as u64 == frame_len && decode_frame(&frame, frame.len()).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use strata_core::{
        EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamMetadata, StreamName,
    };

    use super::*;
    use crate::config::Config;
    use crate::index_file::rewrite_as_version_2;
    use crate::store::Store;

    async fn events_of(store: &Store, name: &str) -> usize {
        store
            .read_stream(
                &StreamName::new(name).unwrap(),
                ReadStreamOptions::forwards(),
            )
            .await
            .unwrap()
            .into_events()
            .len()
    }

    /// A store whose index files predate the secondary indexes (version 2): the open
    /// rebuilds the index from the log, so category reads find the old events, and the
    /// files it then writes load in order.
    #[tokio::test]
    async fn version_2_index_files_make_the_open_rebuild_the_secondary_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::small_for_tests();
        let store = Store::open(dir.path(), config.clone()).unwrap();
        let metadata = StreamMetadata {
            max_count: Some(2),
            ..StreamMetadata::default()
        };
        for number in 0..5 {
            let stream = StreamName::new(format!("old-{number}")).unwrap();
            store
                .set_stream_metadata(&stream, ExpectedRevision::Any, &metadata)
                .await
                .unwrap();
            let events = (0..4).map(|_| ProposedEvent::json("E", "{}")).collect();
            store
                .append(&stream, ExpectedRevision::Any, events)
                .await
                .unwrap();
        }
        store.close();
        drop(store);
        let files = list_index_files(&dir.path().join("index")).unwrap();
        assert!(!files.is_empty());
        for (_, path) in &files {
            rewrite_as_version_2(path);
        }

        let store = Store::open(dir.path(), config.clone()).unwrap();
        for number in 0..5 {
            assert_eq!(events_of(&store, &format!("old-{number}")).await, 2);
        }
        assert_eq!(events_of(&store, "$ce-old").await, 20);
        store
            .append(
                &StreamName::new("new-1").unwrap(),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("E", "{}")],
            )
            .await
            .unwrap();
        store.close();
        drop(store);

        for (_, path) in list_index_files(&dir.path().join("index")).unwrap() {
            assert!(claimed_coverage(&path).is_some());
        }
        let store = Store::open(dir.path(), config).unwrap();
        assert_eq!(events_of(&store, "old-3").await, 2);
        assert_eq!(events_of(&store, "$ce-old").await, 20);
        assert_eq!(events_of(&store, "$et-E").await, 21);
        store.close();
    }
}
