//! Mending the index files the sorted runs cover. A tail-only open
//! (`Config::index_memory_tail_only`) counts such a file from its summary, which checks
//! the file's length, header and trailing CRC32C but not its body; yet a run found damaged
//! later is rebuilt from those files (`run_heal`). So the index saver reads each of them
//! whole while it is idle, and writes one that fails its checks (or is missing between
//! two that are there) again from the log range it covers.
//!
//! The range is known from the neighbours: a file starts where the one before it ends (the
//! log's first frame for the first file) and ends where the next one starts (the last
//! file: where its summary says it ends). The log of that range gives every stream record,
//! tombstone, metadata and secondary key as the save wrote them; a stream's first revision
//! in the file is how many revisions it had before the range, which the runs (they cover
//! the log from its start past the range) tell by a binary search of its positions.
//! A range a scavenge touched is not written again (the removed events are gone from the
//! log, not from the file): the file stays damaged, and a run that then needs it makes the
//! next open rebuild the index from the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{Error, Result, StreamMetadata, StreamName};

use crate::format::{SEGMENT_HEADER_BYTES, TOMBSTONE_REVISION};
use crate::index::Index;
use crate::index_file::{claimed_coverage, list_index_files, summarize, write_index_file};
use crate::index_summary::recorded_coverage;
use crate::log_reader::{Flow, LogReader};
use crate::run_file::{KIND_STREAM, RunSet};
use crate::secondary::{KeyNames, RunKeys};
use crate::segments::Segments;

/// An index file to check, and where its range starts and ends when it must be written
/// again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CoveredFile {
    pub sequence: u64,
    pub path: PathBuf,
    pub covers_from: u64,
    /// `None` when nothing says where it ends (the last file, its summary unreadable):
    /// such a file cannot be written again.
    pub covers_to: Option<u64>,
}

/// An index file's sequence, its path, and the range its summary (or its header) gives.
type Listed = (u64, PathBuf, Option<(u64, u64)>);

/// The index files (present or missing) that runs ending at `runs_to` cover, with their
/// ranges as their neighbours say. Reads only the summaries (and, where a summary does not
/// match, the file's header through its checksum).
pub(crate) fn covered_files(index_dir: &Path, runs_to: u64) -> Result<Vec<CoveredFile>> {
    let present = list_index_files(index_dir)?;
    let coverage_of = |path: &Path| {
        recorded_coverage(path).or_else(|| {
            claimed_coverage(path).map(|coverage| (coverage.covers_from, coverage.covers_to))
        })
    };
    let mut by_sequence: Vec<Listed> = Vec::new();
    let Some(last_sequence) = present.last().map(|(sequence, _)| *sequence) else {
        return Ok(Vec::new());
    };
    let mut present = present.into_iter().peekable();
    for sequence in 0..=last_sequence {
        let path = match present.next_if(|(next, _)| *next == sequence) {
            Some((_, path)) => path,
            None => index_dir.join(format!("{sequence:010}.idx")),
        };
        let coverage = path.exists().then(|| coverage_of(&path)).flatten();
        by_sequence.push((sequence, path, coverage));
    }
    let mut covered = Vec::new();
    let mut covers_from = Some(SEGMENT_HEADER_BYTES);
    for at in 0..by_sequence.len() {
        let (sequence, path, coverage) = &by_sequence[at];
        let next_from = by_sequence
            .get(at + 1)
            .and_then(|(_, _, next)| next.map(|(from, _)| from));
        let covers_to = next_from.or(coverage.map(|(_, to)| to));
        let Some(from) = covers_from else { break };
        if covers_to.is_some_and(|to| to > runs_to) {
            break;
        }
        covered.push(CoveredFile {
            sequence: *sequence,
            path: path.clone(),
            covers_from: from,
            covers_to,
        });
        covers_from = covers_to;
    }
    Ok(covered)
}

/// Whether an index file is there and whole: its checksum and every record hold, and it
/// covers `[covers_from, covers_to)`.
pub(crate) fn file_is_whole(file: &CoveredFile) -> bool {
    let Ok(bytes) = std::fs::read(&file.path) else {
        return false;
    };
    summarize(&bytes).is_ok_and(|summary| {
        summary.covers_from == file.covers_from && Some(summary.covers_to) == file.covers_to
    })
}

/// Writes `file` again from the log (`secondary_kept`: the store keeps the secondary
/// indexes, so the file holds their postings).
///
/// # Errors
/// When its range is unknown, the log cannot be read or does not continue the streams
/// where the runs say they stand, or the file cannot be written.
pub(crate) fn rewrite_from_log(
    file: &CoveredFile,
    segments: &Segments,
    runs: &RunSet,
    secondary_kept: bool,
) -> Result<()> {
    let corrupt = |reason: String| Error::Corrupt {
        detail: format!(
            "index file {} cannot be written again: {reason}",
            file.path.display()
        ),
    };
    let covers_to = file
        .covers_to
        .ok_or_else(|| corrupt("nothing says where its range ends".into()))?;
    if runs.covers_to().is_none_or(|runs_to| runs_to < covers_to) {
        return Err(corrupt("the runs do not cover its range".into()));
    }
    // A scavenge rewrites segments, not index files: the file held the removed events'
    // positions under their keys, which the log no longer has. Written from the log, its
    // secondary keys would count fewer events than the runs say and shift the revisions of
    // a run healed from it. Checked again after the scan: a scavenge may replace a segment
    // while it runs, and a read of the new file sees it as scavenged (the flag lives in the
    // file's slot).
    let holds_scavenged = || {
        covers_to > file.covers_from
            && (segments.segment_of(file.covers_from)..=segments.segment_of(covers_to - 1))
                .any(|segment| segments.is_scavenged(segment))
    };
    if holds_scavenged() {
        return Err(corrupt("its range holds scavenged segments".into()));
    }
    let mut index = Index::new(secondary_kept);
    // Streams continue from revisions the runs hold.
    index.count_in_runs(0, 0, None, &[]);
    let mut transaction = Transaction::default();
    let mut failure = None;
    LogReader::new(segments).scan_forward(
        file.covers_from,
        covers_to,
        &mut |position, event, frame| {
            let stream = StreamName::from_stored(event.stream);
            if let Some(described) = stream.described_stream() {
                let metadata =
                    StreamMetadata::from_json(&described, &frame[event.data_range.clone()])
                        .unwrap_or_default();
                transaction.metadata.push((described, metadata));
            }
            let continues = transaction.runs.last().is_some_and(|run| {
                run.stream == stream
                    && event.revision != TOMBSTONE_REVISION
                    && run.first_revision + run.positions.len() as u64 == event.revision
            });
            if !continues {
                transaction.runs.push(EventRun {
                    stream,
                    first_revision: event.revision,
                    positions: Vec::new(),
                    keys: RunKeys::default(),
                });
            }
            let Some(run) = transaction.runs.last_mut() else {
                unreachable!("pushed above");
            };
            run.keys.push(
                &mut transaction.key_names,
                run.stream.as_str(),
                event.revision,
                event.event_type,
                &frame[event.metadata_range.clone()],
            );
            run.positions.push(position);
            if !event.is_commit() {
                return Ok(Flow::Continue);
            }
            match transaction.apply(&mut index, runs, file.covers_from) {
                Ok(()) => Ok(Flow::Continue),
                Err(reason) => {
                    failure = Some(reason);
                    Ok(Flow::Stop)
                }
            }
        },
    )?;
    if let Some(reason) = failure {
        return Err(corrupt(reason));
    }
    if !transaction.runs.is_empty() {
        return Err(corrupt("its range ends inside a transaction".into()));
    }
    if holds_scavenged() {
        return Err(corrupt(
            "a scavenge rewrote a segment of its range meanwhile".into(),
        ));
    }
    let streams = index.take_unsaved();
    let postings = index.secondary.take_unsaved();
    let index_dir = file
        .path
        .parent()
        .ok_or_else(|| corrupt("has no directory".into()))?;
    write_index_file(
        index_dir,
        file.sequence,
        file.covers_from,
        covers_to,
        &streams,
        &postings,
        secondary_kept,
    )
}

/// The events of one transaction read so far, as the writer hands them to the index:
/// runs of consecutive events of one stream, then the metadata they set.
#[derive(Default)]
struct Transaction {
    runs: Vec<EventRun>,
    metadata: Vec<(StreamName, StreamMetadata)>,
    key_names: KeyNames,
}

struct EventRun {
    stream: StreamName,
    first_revision: u64,
    positions: Vec<u64>,
    keys: RunKeys,
}

impl Transaction {
    /// Adds the transaction to `index` (each stream started where it stood at
    /// `covers_from`), and empties it.
    fn apply(
        &mut self,
        index: &mut Index,
        runs: &RunSet,
        covers_from: u64,
    ) -> std::result::Result<(), String> {
        for run in self.runs.drain(..) {
            start_stream(index, runs, covers_from, &run.stream)?;
            if run.first_revision != TOMBSTONE_REVISION {
                let expected = index.stream(&run.stream).map_or(0, |entry| {
                    entry.first_revision + entry.positions.len() as u64
                });
                if run.first_revision < expected {
                    return Err(format!(
                        "the log has revision {} of stream {} where {expected} was due",
                        run.first_revision, run.stream
                    ));
                }
                // Revisions a scavenge removed, as a replay marks them.
                index.mark_removed_below(&run.stream, run.first_revision);
            }
            index.add_events(&run.stream, run.first_revision, &run.positions, &run.keys);
        }
        for (described, metadata) in self.metadata.drain(..) {
            start_stream(index, runs, covers_from, &described)?;
            index.set_metadata(&described, Arc::new(metadata));
        }
        Ok(())
    }
}

/// Starts `stream`'s record at the revision it had where the range starts.
fn start_stream(
    index: &mut Index,
    runs: &RunSet,
    covers_from: u64,
    stream: &StreamName,
) -> std::result::Result<(), String> {
    if index.stream(stream).is_some() {
        return Ok(());
    }
    let first_revision = revisions_before(runs, stream.as_str().as_bytes(), covers_from)
        .map_err(|error| format!("the runs cannot say where stream {stream} stands: {error}"))?;
    index.load_positions(stream.as_str(), first_revision, &[], None);
    Ok(())
}

/// How many revisions of a stream the log held before `position`: the first revision the
/// runs hold at or after it (binary search over the revisions they hold).
fn revisions_before(runs: &RunSet, key: &[u8], position: u64) -> Result<u64> {
    let Some(head) = runs.head(KIND_STREAM, key)? else {
        return Ok(0);
    };
    let (mut low, mut high) = match runs.revisions(KIND_STREAM, key, 0, 0)? {
        Some((first, _)) => (first, head.end_revision),
        None => return Ok(0),
    };
    while low < high {
        let middle = low + (high - low) / 2;
        match runs
            .positions(KIND_STREAM, key, middle, middle + 1)?
            .first()
        {
            Some(&at) if at < position => low = middle + 1,
            Some(_) => high = middle,
            None => {
                return Err(Error::Corrupt {
                    detail: format!("the runs hold no position for revision {middle}"),
                });
            }
        }
    }
    Ok(low)
}
