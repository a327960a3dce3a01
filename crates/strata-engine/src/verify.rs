//! `verify`: checks every frame's checksum and every index-file, index-run and event id
//! file entry against the log, without changing anything.

use std::fmt;
use std::path::Path;

use strata_core::Result;

use crate::index::{Index, RecentIds};
use crate::index_file::{
    claimed_coverage, keeps_secondary_indexes, list_index_files, load_index_file,
};
use crate::io::Seam;
use crate::log_reader::LogReader;
use crate::recovery::{open_segments, read_clean_marker};
use crate::replay::{ReplayStep, Replayed, replay};
use crate::segments::{OpenMode, Segments, list_segments, recorded_segment_size};
use crate::store::lock_directory;
use crate::tail::{Claim, ClaimSource, LostData, lost_end, scan_after_stop, skip_segment_header};

/// How far a verification has got.
#[derive(Clone, Copy, Debug)]
pub struct VerifyProgress {
    pub checked_bytes: u64,
    pub total_bytes: u64,
}

/// What a verification found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub segments: u64,
    pub segment_size_bytes: u64,
    /// Position after the last committed transaction.
    pub log_end: u64,
    pub events: u64,
    pub streams: usize,
    pub index_files: u64,
    /// Sorted runs (`index-runs/`) in the chain the next open uses.
    pub index_runs: u64,
    pub index_entries_checked: u64,
    /// Event id files (`index-ids/`) in the chain the next open uses.
    pub id_files: u64,
    /// Their entries checked against the log.
    pub id_entries_checked: u64,
    /// Segments rewritten by a scavenge (format version 3: removed records are skip frames).
    pub scavenged_segments: u64,
    /// Index entries that point at events a scavenge removed (they read as removed).
    pub index_entries_removed: u64,
    /// Bytes after the last commit that the next open will drop (a torn final write).
    pub torn_tail: bool,
    /// Valid event frames behind the damage that ends the log, dropped with the torn tail
    /// (after a power loss, unsynced pages reach the disk in any order).
    pub frames_after_torn_tail: u64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.is_ok(),
            "segments": self.segments,
            "segment_size_bytes": self.segment_size_bytes,
            "log_end": self.log_end,
            "events": self.events,
            "streams": self.streams,
            "index_files": self.index_files,
            "index_runs": self.index_runs,
            "index_entries_checked": self.index_entries_checked,
            "id_files": self.id_files,
            "id_entries_checked": self.id_entries_checked,
            "scavenged_segments": self.scavenged_segments,
            "index_entries_removed": self.index_entries_removed,
            "torn_tail": self.torn_tail,
            "frames_after_torn_tail": self.frames_after_torn_tail,
            "problems": self.problems,
        })
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "segments:              {} × {} bytes",
            self.segments, self.segment_size_bytes
        )?;
        writeln!(f, "log end:               {}", self.log_end)?;
        writeln!(f, "events (checksummed):  {}", self.events)?;
        writeln!(f, "streams:               {}", self.streams)?;
        writeln!(f, "index files:           {}", self.index_files)?;
        writeln!(f, "index runs:            {}", self.index_runs)?;
        writeln!(f, "index entries checked: {}", self.index_entries_checked)?;
        writeln!(
            f,
            "event id files:        {} ({} entries checked)",
            self.id_files, self.id_entries_checked
        )?;
        if self.scavenged_segments > 0 {
            writeln!(
                f,
                "scavenged segments:    {} ({} index entries point at removed events)",
                self.scavenged_segments, self.index_entries_removed
            )?;
        }
        if self.torn_tail {
            writeln!(
                f,
                "torn tail:             yes (an unacknowledged final write; dropped at next open)"
            )?;
        }
        if self.frames_after_torn_tail > 0 {
            writeln!(
                f,
                "frames after the tear: {} (never acknowledged; dropped with the torn tail)",
                self.frames_after_torn_tail
            )?;
        }
        if self.problems.is_empty() {
            write!(f, "result:                OK")
        } else {
            writeln!(
                f,
                "result:                {} problem(s)",
                self.problems.len()
            )?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            Ok(())
        }
    }
}

/// Verifies the store in `data_dir`, which must not be open elsewhere.
///
/// # Errors
/// [`Error::DirectoryInUse`] when a process has the store open; I/O errors. Damage is
/// reported in [`VerifyReport::problems`], not as an error.
pub fn verify(data_dir: &Path, progress: &mut dyn FnMut(VerifyProgress)) -> Result<VerifyReport> {
    let _lock = lock_directory(data_dir)?;
    let log_dir = data_dir.join("log");
    let mut report = VerifyReport::default();
    if list_segments(&log_dir)
        .map(|segments| segments.is_empty())
        .unwrap_or(true)
    {
        report.problems.push(format!(
            "{} holds no segment: it is not a Strata store",
            log_dir.display()
        ));
        return Ok(report);
    }
    report.segment_size_bytes = match recorded_segment_size(&log_dir) {
        Ok(size_bytes) => size_bytes,
        Err(error) => {
            report.problems.push(error.to_string());
            return Ok(report);
        }
    };
    let segments = match open_segments(
        &log_dir,
        report.segment_size_bytes,
        OpenMode::ReadOnly,
        &Seam::default(),
    ) {
        Ok(segments) => segments,
        Err(error) => {
            report.problems.push(error.to_string());
            return Ok(report);
        }
    };
    report.segments = segments.count();
    report.scavenged_segments = (0..report.segments)
        .filter(|&segment_index| segments.is_scavenged(segment_index))
        .count() as u64;
    let total_bytes = report.segments * report.segment_size_bytes;
    let mut log_index = Index::default();
    let mut recent_ids = RecentIds::new(1);
    let mut on_progress = |step: ReplayStep| {
        if let ReplayStep::Read(checked_bytes) = step {
            progress(VerifyProgress {
                checked_bytes,
                total_bytes,
            });
        }
    };
    let replayed = match replay(
        &segments,
        &mut log_index,
        &mut recent_ids,
        0,
        &mut on_progress,
    ) {
        Ok(replayed) => replayed,
        Err(error) => {
            report.problems.push(error.to_string());
            return Ok(report);
        }
    };
    progress(VerifyProgress {
        checked_bytes: total_bytes,
        total_bytes,
    });
    report.log_end = replayed.committed_end;
    report.events = log_index.events_total();
    report.streams = log_index.stream_count();
    judge_tail(data_dir, &segments, &replayed, &mut report)?;
    check_index_files(data_dir, &segments, &log_index, &mut report)?;
    check_index_runs(data_dir, &segments, &log_index, &mut report)?;
    check_id_files(data_dir, &segments, &mut report)?;
    Ok(report)
}

/// What lies after the readable log: lost acknowledged data (a problem) or a torn tail.
fn judge_tail(
    data_dir: &Path,
    segments: &Segments,
    replayed: &Replayed,
    report: &mut VerifyReport,
) -> Result<()> {
    let after_stop = scan_after_stop(segments, replayed.stopped_at, &mut |_, _| {})?;
    let mut claims = index_file_claims(data_dir)?;
    claims.extend(read_clean_marker(data_dir).map(|end| Claim {
        end,
        source: ClaimSource::CleanMarker,
    }));
    claims.extend(after_stop.sync_mark.clone());
    let end = skip_segment_header(replayed.committed_end, report.segment_size_bytes);
    match lost_end(&claims, end, report.segment_size_bytes) {
        Some(claim) => report.problems.push(
            LostData {
                segments,
                claim,
                end,
                replayed,
            }
            .to_string(),
        ),
        None => {
            report.torn_tail = replayed.has_torn_tail()
                || after_stop.event_frames > 0
                || segments.short_count() > 0;
            report.frames_after_torn_tail = after_stop.event_frames;
        }
    }
    Ok(())
}

/// What each intact index file says of the log's end.
fn index_file_claims(data_dir: &Path) -> Result<Vec<Claim>> {
    Ok(list_index_files(&data_dir.join("index"))?
        .into_iter()
        .filter_map(|(_, path)| {
            claimed_coverage(&path).map(|coverage| Claim {
                end: coverage.covers_to,
                source: ClaimSource::IndexFile(path),
            })
        })
        .collect())
}

/// A summary the open would trust must say what the index file says (one it would not
/// trust is rewritten by the next tail-only open, and is no problem).
fn check_summary(path: &Path, report: &mut VerifyReport) {
    let Some(summary) = crate::index_summary::read_summary(path) else {
        return;
    };
    let counted = std::fs::read(path)
        .map_err(|error| error.to_string())
        .and_then(|bytes| crate::index_file::summarize(&bytes));
    if counted.as_ref() != Ok(&summary) {
        report.problems.push(format!(
            "the summary of index file {} does not match it (a tail-only open would count it wrongly; remove {})",
            path.display(),
            crate::index_summary::summary_path(path).display()
        ));
    }
}

/// Whether `position` held an event a scavenge removed (its segment was rewritten and it
/// is not there any more).
fn removed_by_scavenge(segments: &Segments, reader: &LogReader<'_>, position: u64) -> bool {
    segments.is_scavenged(segments.segment_of(position))
        && matches!(reader.read_event_if_present(position), Ok(None))
}

/// Checks the event id files the next open would use against the log: each holds every
/// event of its range (tombstones aside) exactly once, and nothing else but events a
/// scavenge removed. A damaged file is a problem the store mends (it builds it again).
fn check_id_files(data_dir: &Path, segments: &Segments, report: &mut VerifyReport) -> Result<()> {
    let reader = LogReader::new(segments);
    let dir = crate::id_index::ids_dir(data_dir);
    let (chain, dropped) = crate::id_index::open_chain(&dir, report.log_end, false)?;
    for reason in dropped {
        report.problems.push(format!(
            "event id file {reason} (the store builds it again)"
        ));
    }
    for file in chain {
        report.id_files += 1;
        let scanned =
            crate::id_index::scan_ids(segments, file.covers_from, file.covers_to, usize::MAX);
        let mut from_log = match scanned {
            Ok((from_log, _)) => from_log,
            Err(error) => {
                report.problems.push(format!(
                    "event id file {}: its log range cannot be read: {error}",
                    file.path().display()
                ));
                continue;
            }
        };
        from_log.sort_unstable();
        let filed: Result<Vec<(u64, u64)>> = file.scan().collect();
        let filed = match filed {
            Ok(filed) => filed,
            Err(error) => {
                report
                    .problems
                    .push(format!("{error} (the store builds it again)"));
                continue;
            }
        };
        report.id_entries_checked += filed.len() as u64;
        let mut logged = from_log.iter().peekable();
        for entry in &filed {
            while let Some(missing) = logged.next_if(|logged| *logged < entry) {
                report.problems.push(format!(
                    "event id file {} lacks the event at {}",
                    file.path().display(),
                    missing.1
                ));
            }
            if logged.next_if_eq(&entry).is_some() {
                continue;
            }
            if removed_by_scavenge(segments, &reader, entry.1) {
                report.index_entries_removed += 1;
                continue;
            }
            report.problems.push(format!(
                "event id file {} names position {} for an id the event there lacks",
                file.path().display(),
                entry.1
            ));
        }
        for missing in logged {
            report.problems.push(format!(
                "event id file {} lacks the event at {}",
                file.path().display(),
                missing.1
            ));
        }
    }
    Ok(())
}

/// Every position in the index files must be the log's position for that revision, and
/// the metadata they hold what the log's last `$$` event says.
fn check_index_files(
    data_dir: &Path,
    segments: &Segments,
    log_index: &Index,
    report: &mut VerifyReport,
) -> Result<()> {
    // An entry may point at an event a scavenge removed: it must read as removed.
    let reader = LogReader::new(segments);
    let removed = |position: u64| removed_by_scavenge(segments, &reader, position);
    let files = list_index_files(&data_dir.join("index"))?;
    report.index_files = files.len() as u64;
    // The files say whether the store keeps the secondary indexes; the first one decides.
    let kept = files
        .first()
        .and_then(|(_, path)| keeps_secondary_indexes(path))
        .unwrap_or(true);
    let mut file_index = Index::new(kept);
    for (_, path) in &files {
        if let Err(reason) = load_index_file(path, &mut file_index) {
            report.problems.push(format!(
                "index file {} {reason} (the next open rebuilds the index from the log)",
                path.display()
            ));
            return Ok(());
        }
        check_summary(path, report);
    }
    for (stream, entry) in file_index.streams() {
        let from_log = log_index.stream(stream);
        for (revision, position) in entry.positions.iter().enumerate() {
            report.index_entries_checked += 1;
            if from_log.and_then(|log| log.positions.get(revision)) != Some(position) {
                if removed(*position) {
                    report.index_entries_removed += 1;
                    continue;
                }
                report.problems.push(format!(
                    "index entry {stream}@{revision} → position {position} does not match the log"
                ));
            }
        }
        if entry.tombstone_position.is_some()
            && from_log.and_then(|log| log.tombstone_position) != entry.tombstone_position
        {
            report.problems.push(format!(
                "index tombstone of {stream} does not match the log"
            ));
        }
        if let Some(metadata) = &entry.metadata {
            report.index_entries_checked += 1;
            // Only when no newer metadata event follows the files' range.
            let metadata_stream = stream.metadata_stream();
            let last_in_files = file_index
                .stream(&metadata_stream)
                .and_then(|entry| entry.positions.last());
            let last_in_log = log_index
                .stream(&metadata_stream)
                .and_then(|entry| entry.positions.last());
            if last_in_files == last_in_log
                && from_log.and_then(|log| log.metadata.as_ref()) != Some(metadata)
            {
                report.problems.push(format!(
                    "the index files' metadata of {stream} does not match the log"
                ));
            }
        }
    }
    for (kind, name, postings) in file_index.secondary.iter() {
        report.index_entries_checked += postings.positions.len() as u64;
        let from_log = log_index.secondary.positions(kind, name);
        let kept: Vec<u64> = postings
            .positions
            .iter()
            .copied()
            .filter(|&position| {
                let gone = from_log.binary_search(&position).is_err() && removed(position);
                report.index_entries_removed += u64::from(gone);
                !gone
            })
            .collect();
        if !from_log.starts_with(&kept) {
            report.problems.push(format!(
                "the index files' secondary index {name:?} ({kind:?}) does not match the log"
            ));
        }
    }
    Ok(())
}

/// Checks the sorted runs the next open would use (the chain from the log's start, the
/// longest run first where two start at the same place) entry by entry against the log.
/// A damaged run is a problem the next open mends (it rebuilds the run); superseded runs
/// and `.tmp` leftovers of a crash are not.
fn check_index_runs(
    data_dir: &Path,
    segments: &Segments,
    log_index: &Index,
    report: &mut VerifyReport,
) -> Result<()> {
    use crate::run_file::{KIND_STREAM, Run, run_file_name};
    let reader = LogReader::new(segments);
    let removed = |position: u64| removed_by_scavenge(segments, &reader, position);
    let dir = crate::index_saver::runs_dir(data_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "run") {
            continue;
        }
        match Run::open_to_check(&path) {
            Ok(run)
                if path.file_name().and_then(|name| name.to_str())
                    == Some(run_file_name(run.covers_from, run.covers_to).as_str()) =>
            {
                runs.push(run);
            }
            Ok(_) => report.problems.push(format!(
                "index run {} is not named after its coverage (the next open rebuilds it)",
                path.display()
            )),
            Err(reason) => report.problems.push(format!(
                "index run {} {reason} (the next open rebuilds it)",
                path.display()
            )),
        }
    }
    runs.sort_by_key(|run| (run.covers_from, std::cmp::Reverse(run.covers_to)));
    let mut at = crate::format::SEGMENT_HEADER_BYTES;
    for run in runs {
        if run.covers_from != at || run.covers_to <= at {
            continue;
        }
        at = run.covers_to;
        report.index_runs += 1;
        if run.covers_to > report.log_end {
            report.problems.push(format!(
                "index run {} reaches past the log's end {}",
                run.path().display(),
                report.log_end
            ));
            continue;
        }
        if let Err(error) = run.check_whole() {
            let reason = match error {
                strata_core::Error::Corrupt { detail } => detail,
                other => format!("run {}: {other}", run.path().display()),
            };
            report
                .problems
                .push(format!("index {reason} (the next open rebuilds it)"));
            continue;
        }
        for entry in run.scan()? {
            let entry = entry?;
            let name = String::from_utf8_lossy(&entry.key);
            let from_log: &[u64] = if entry.kind == KIND_STREAM {
                log_index
                    .stream(&*name)
                    .map_or(&[], |stream| stream.positions.as_slice())
            } else {
                match crate::secondary::Kind::from_byte(entry.kind) {
                    Some(kind) => log_index.secondary.positions(kind, &name),
                    None => &[],
                }
            };
            for (offset, &position) in entry.positions.iter().enumerate() {
                report.index_entries_checked += 1;
                let revision = entry.first_revision as usize + offset;
                // A stream's revisions are fixed; a secondary key's index revisions shift
                // when a rebuilt index lacks events a scavenge removed, so there only
                // membership is checked.
                let matches = if entry.kind == KIND_STREAM {
                    from_log.get(revision) == Some(&position)
                } else {
                    from_log.binary_search(&position).is_ok()
                };
                if !matches {
                    if removed(position) {
                        report.index_entries_removed += 1;
                        continue;
                    }
                    report.problems.push(format!(
                        "index run entry {name}@{revision} (kind {}) → position {position} does not match the log",
                        entry.kind
                    ));
                }
            }
            if let Some(tombstone) = entry.tombstone {
                report.index_entries_checked += 1;
                let in_log = log_index
                    .stream(&*name)
                    .and_then(|stream| stream.tombstone_position);
                if in_log != Some(tombstone) {
                    report.problems.push(format!(
                        "index run tombstone of {name} does not match the log"
                    ));
                }
            }
        }
    }
    Ok(())
}
