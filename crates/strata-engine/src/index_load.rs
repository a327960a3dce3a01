//! Loading the index files at open. They must follow each other without a gap and end
//! where a frame of the log ends; otherwise the index is rebuilt from the whole log (the
//! log is the truth). Either way every intact file's `covers_to` is kept as a claim on how
//! far the log reached, so that a log shorter than its index files is found out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{Result, StreamMetadata, StreamName};

use crate::format::{SEGMENT_HEADER_BYTES, decode_frame};
use crate::index::Index;
use crate::index_file::{
    Loaded, STREAM_RECORD_BYTES_MIN, announced_stream_count, claimed_coverage, list_index_files,
    load_index_file,
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

/// Loads the index files in order, and the metadata of `$$` streams that version 1 files
/// leave to be read from the log.
pub(crate) fn load_index(index_dir: &Path, segments: &Segments) -> Result<LoadedIndex> {
    let files = list_index_files(index_dir)?;
    let mut index = Index::default();
    reserve_streams(&mut index, &files);
    let mut covered_to = SEGMENT_HEADER_BYTES;
    let mut problem = None;
    let mut claims = Vec::new();
    let mut metadata_to_read = HashSet::new();
    for (expected_sequence, (sequence, path)) in files.iter().enumerate() {
        let claim = |end| Claim {
            end,
            source: ClaimSource::IndexFile(path.clone()),
        };
        if problem.is_some() {
            claims.extend(claimed_coverage(path).map(|coverage| claim(coverage.covers_to)));
            continue;
        }
        if *sequence != expected_sequence as u64 {
            problem = Some(format!("index file {} is out of sequence", path.display()));
            claims.extend(claimed_coverage(path).map(|coverage| claim(coverage.covers_to)));
            continue;
        }
        let mut loaded = Loaded::default();
        match load_index_file(path, &mut index, &mut loaded) {
            Ok(coverage) => {
                claims.push(claim(coverage.covers_to));
                if coverage.covers_from == covered_to {
                    covered_to = coverage.covers_to;
                    metadata_to_read.extend(loaded.metadata_to_read);
                    for described in loaded.metadata_loaded {
                        metadata_to_read.remove(&described.metadata_stream());
                    }
                } else {
                    problem = Some(format!("index file {} leaves a gap", path.display()));
                }
            }
            Err(unusable) => {
                claims.extend(unusable.coverage.map(|coverage| claim(coverage.covers_to)));
                problem = Some(format!("index file {} {unusable}", path.display()));
            }
        }
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
            index: Index::default(),
            files,
            covered_to: SEGMENT_HEADER_BYTES,
            claims,
            problem,
        });
    }
    read_metadata(segments, &mut index, metadata_to_read)?;
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
/// reservation only means the table grows as it loads.
fn reserve_streams(index: &mut Index, files: &[(u64, PathBuf)]) {
    let announced: u64 = files
        .iter()
        .map(|(_, path)| announced_stream_count(path))
        .sum();
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
    LogReader::new(segments)
        .read_frame(normalized - frame_len)
        .is_ok_and(|frame| {
            frame.len() as u64 == frame_len && decode_frame(&frame, frame.len()).is_ok()
        })
}

/// Parses the metadata of the given `$$` streams from their last event: one read each.
/// Only streams last written in a range of a version 1 index file need it; what is read
/// is saved in the next index file.
fn read_metadata(
    segments: &Segments,
    index: &mut Index,
    metadata_streams: HashSet<StreamName>,
) -> Result<()> {
    let reader = LogReader::new(segments);
    let mut found = Vec::new();
    for stream in metadata_streams {
        let (Some(described), Some(&position)) = (
            stream.described_stream(),
            index
                .stream(&stream)
                .and_then(|entry| entry.positions.last()),
        ) else {
            continue;
        };
        let event = reader.read_event(position)?;
        found.push((
            described,
            StreamMetadata::from_json(&stream, &event.data).unwrap_or_default(),
        ));
    }
    for (stream, metadata) in found {
        index.set_metadata(&stream, Arc::new(metadata));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions};

    use super::*;
    use crate::config::Config;
    use crate::index_file::rewrite_as_version_1;
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

    /// A store whose index files were written before they held metadata: its `$$` streams
    /// are read from the log at open, and the next index file holds their metadata.
    #[tokio::test]
    async fn version_1_index_files_load_with_metadata_read_from_the_log() {
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
            rewrite_as_version_1(path);
        }

        let store = Store::open(dir.path(), config.clone()).unwrap();
        for number in 0..5 {
            assert_eq!(events_of(&store, &format!("old-{number}")).await, 2);
        }
        // One more append, so that closing writes an index file.
        store
            .append(
                &StreamName::new("new").unwrap(),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("E", "{}")],
            )
            .await
            .unwrap();
        store.close();
        drop(store);

        // The newest file continues the others: they load in order.
        let mut index = Index::default();
        let mut loaded = Loaded::default();
        for (_, path) in list_index_files(&dir.path().join("index")).unwrap() {
            loaded = Loaded::default();
            load_index_file(&path, &mut index, &mut loaded).unwrap();
        }
        let mut described: Vec<String> = loaded
            .metadata_loaded
            .iter()
            .map(|stream| stream.to_string())
            .collect();
        described.sort();
        assert_eq!(described, ["old-0", "old-1", "old-2", "old-3", "old-4"]);
        let store = Store::open(dir.path(), config).unwrap();
        assert_eq!(events_of(&store, "old-3").await, 2);
        store.close();
    }
}
