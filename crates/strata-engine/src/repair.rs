//! `repair`: accepts the loss of everything from a position of the log on, so that a store
//! which refuses to open (acknowledged events are lost, or the log is damaged) opens again.
//! Planning changes nothing; [`Repair::apply`] does it, in an order that a crash can
//! interrupt at any point (a repeated repair finishes the job).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use strata_core::{Error, Result};

use crate::format::SEGMENT_HEADER_BYTES;
use crate::id_index::ids_dir;
use crate::index::{Index, RecentIds};
use crate::index_file::{claimed_coverage, list_index_files};
use crate::index_saver::runs_dir;
use crate::io::Seam;
use crate::recovery::{CLEAN_MARKER, open_segments, remove_clean_marker, zero_after};
use crate::replay::{ReplayStep, Replayed, replay};
use crate::segments::{
    OpenMode, Segments, list_segments, recorded_segment_size, segment_file_name, sync_dir,
};
use crate::store::lock_directory;
use crate::tail::{scan_after_stop, skip_segment_header};

/// Events of one stream that a repair drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedStream {
    pub stream: String,
    /// Readable, committed events dropped (a tombstone counts as one).
    pub events: u64,
    /// Valid event frames at or after the end of the readable log that are not part of it.
    pub frames_after_end: u64,
}

/// What a repair will drop; printed before anything is done.
#[derive(Clone, Debug)]
pub struct RepairPlan {
    pub data_dir: PathBuf,
    pub truncate_at: u64,
    /// Where the readable, committed log ends today.
    pub log_end: u64,
    /// Log positions that will be zeroed or removed.
    pub dropped_positions: Range<u64>,
    /// Committed events in `[truncate_at, log_end)`.
    pub dropped_events: u64,
    /// Valid event frames at or after the end of the readable log that are not part of
    /// it: a transaction without its commit frame, frames behind the damage.
    pub frames_after_end: u64,
    pub dropped_streams: Vec<DroppedStream>,
    pub index_files_removed: Vec<PathBuf>,
    /// Sorted runs (`index-runs/`) reaching past the cut; the next open rebuilds them.
    pub index_runs_removed: Vec<PathBuf>,
    /// Event id files (`index-ids/`) reaching past the cut; the next open builds them again.
    pub id_files_removed: Vec<PathBuf>,
    pub segments_removed: Vec<PathBuf>,
    pub clean_marker_removed: bool,
}

impl fmt::Display for RepairPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store:                  {}", self.data_dir.display())?;
        writeln!(f, "readable log ends at:   {}", self.log_end)?;
        writeln!(f, "truncate at:            {}", self.truncate_at)?;
        writeln!(
            f,
            "log positions dropped:  {}..{} ({} bytes)",
            self.dropped_positions.start,
            self.dropped_positions.end,
            self.dropped_positions.end - self.dropped_positions.start
        )?;
        writeln!(f, "readable events dropped: {}", self.dropped_events)?;
        writeln!(
            f,
            "frames dropped after the readable log: {}",
            self.frames_after_end
        )?;
        for dropped in &self.dropped_streams {
            writeln!(
                f,
                "  {}: {} readable event(s), {} frame(s) after the readable log",
                dropped.stream, dropped.events, dropped.frames_after_end
            )?;
        }
        for path in &self.index_files_removed {
            writeln!(f, "index file removed:     {}", path.display())?;
        }
        for path in &self.index_runs_removed {
            writeln!(f, "index run removed:      {}", path.display())?;
        }
        for path in &self.id_files_removed {
            writeln!(f, "event id file removed:  {}", path.display())?;
        }
        for path in &self.segments_removed {
            writeln!(f, "segment removed:        {}", path.display())?;
        }
        if self.clean_marker_removed {
            writeln!(f, "clean-shutdown marker removed")?;
        }
        write!(
            f,
            "after the repair the store opens with its log ending at {}",
            self.truncate_at
        )
    }
}

/// A planned repair, holding the store's directory lock until it is applied or dropped.
pub struct Repair {
    plan: RepairPlan,
    segments: Segments,
    _lock: File,
}

impl Repair {
    /// Works out what cutting the log at `truncate_at` drops. Changes nothing.
    ///
    /// # Errors
    /// [`Error::DirectoryInUse`] when a process has the store open;
    /// [`Error::InvalidArgument`] when `truncate_at` is not the end of a transaction of
    /// the readable log (or the log's start); [`Error::Corrupt`] when the log cannot be
    /// read at all (no segment, a damaged first segment header); I/O errors.
    pub fn plan(data_dir: &Path, truncate_at: u64) -> Result<Repair> {
        let lock = lock_directory(data_dir)?;
        let log_dir = data_dir.join("log");
        if list_segments(&log_dir)?.is_empty() {
            return Err(Error::Corrupt {
                detail: format!(
                    "{} holds no segment: it is not a Strata store",
                    log_dir.display()
                ),
            });
        }
        let segment_size_bytes = recorded_segment_size(&log_dir)?;
        let segments = open_segments(
            &log_dir,
            segment_size_bytes,
            OpenMode::Recover,
            &Seam::default(),
        )?;
        let mut log_index = Index::default();
        let mut is_boundary = truncate_at == SEGMENT_HEADER_BYTES;
        let replayed = replay(
            &segments,
            &mut log_index,
            &mut RecentIds::new(1),
            0,
            &mut |step| {
                if let ReplayStep::Committed(end) = step
                    && skip_segment_header(end, segment_size_bytes) == truncate_at
                {
                    is_boundary = true;
                }
            },
        )?;
        let log_end = skip_segment_header(replayed.committed_end, segment_size_bytes);
        if !is_boundary || truncate_at > log_end {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "position {truncate_at} is not where a transaction of the readable log \
                     ends; the readable log ends at {log_end} (`strata verify` and the \
                     failed open name it)"
                ),
            });
        }
        let dropped = dropped_by_cut(&segments, &log_index, &replayed, truncate_at)?;
        let kept_segments = segments.segment_of(truncate_at) + 1;
        let plan = RepairPlan {
            data_dir: data_dir.to_path_buf(),
            truncate_at,
            log_end,
            dropped_positions: truncate_at..segments.count() * segment_size_bytes,
            dropped_events: dropped.values().map(|stream| stream.events).sum(),
            frames_after_end: dropped.values().map(|stream| stream.frames_after_end).sum(),
            dropped_streams: dropped.into_values().collect(),
            index_files_removed: index_files_beyond(data_dir, truncate_at)?,
            index_runs_removed: ranges_beyond(&runs_dir(data_dir), ".run", truncate_at)?,
            id_files_removed: ranges_beyond(&ids_dir(data_dir), ".ids", truncate_at)?,
            segments_removed: (kept_segments..segments.count())
                .map(|index| log_dir.join(segment_file_name(index)))
                .collect(),
            clean_marker_removed: data_dir.join(CLEAN_MARKER).exists(),
        };
        Ok(Repair {
            plan,
            segments,
            _lock: lock,
        })
    }

    pub fn plan_details(&self) -> &RepairPlan {
        &self.plan
    }

    /// Drops everything from the planned position on: the clean-shutdown marker and the
    /// index files reaching past it first (they would refuse the open), then the log.
    ///
    /// # Errors
    /// I/O errors; a repair cut short by one can be run again.
    pub fn apply(self) -> Result<()> {
        let plan = &self.plan;
        remove_clean_marker(&plan.data_dir)?;
        for path in plan.index_files_removed.iter().rev() {
            std::fs::remove_file(path)
                .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
            crate::index_summary::remove_summary(path);
        }
        sync_dir(&plan.data_dir.join("index"))?;
        for path in &plan.index_runs_removed {
            std::fs::remove_file(path)
                .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
        }
        if !plan.index_runs_removed.is_empty() {
            sync_dir(&runs_dir(&plan.data_dir))?;
        }
        for path in &plan.id_files_removed {
            std::fs::remove_file(path)
                .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
        }
        if !plan.id_files_removed.is_empty() {
            sync_dir(&ids_dir(&plan.data_dir))?;
        }
        let kept_segments = self.segments.segment_of(plan.truncate_at) + 1;
        self.segments.truncate(kept_segments);
        self.segments.extend_short()?;
        zero_after(&self.segments, plan.truncate_at)?;
        for path in plan.segments_removed.iter().rev() {
            std::fs::remove_file(path)
                .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
        }
        sync_dir(&plan.data_dir.join("log"))?;
        tracing::warn!(
            truncate_at = plan.truncate_at,
            dropped_events = plan.dropped_events,
            "repaired: the log was cut"
        );
        Ok(())
    }
}

/// What cutting at `truncate_at` drops, by stream: committed events from there on, the
/// frames of a transaction without its commit frame, and valid frames behind the stop.
fn dropped_by_cut(
    segments: &Segments,
    log_index: &Index,
    replayed: &Replayed,
    truncate_at: u64,
) -> Result<BTreeMap<String, DroppedStream>> {
    let mut dropped: BTreeMap<String, DroppedStream> = BTreeMap::new();
    for (stream, entry) in log_index.streams() {
        let events = entry
            .positions
            .iter()
            .filter(|&&position| position >= truncate_at)
            .count() as u64
            + u64::from(
                entry
                    .tombstone_position
                    .is_some_and(|position| position >= truncate_at),
            );
        if events > 0 {
            dropped_stream(&mut dropped, stream.as_str()).events += events;
        }
    }
    for stream in &replayed.uncommitted {
        dropped_stream(&mut dropped, stream.as_str()).frames_after_end += 1;
    }
    scan_after_stop(segments, replayed.stopped_at, &mut |_, event| {
        dropped_stream(&mut dropped, event.stream).frames_after_end += 1;
    })?;
    Ok(dropped)
}

fn dropped_stream<'a>(
    dropped: &'a mut BTreeMap<String, DroppedStream>,
    stream: &str,
) -> &'a mut DroppedStream {
    dropped
        .entry(stream.to_owned())
        .or_insert_with(|| DroppedStream {
            stream: stream.to_owned(),
            events: 0,
            frames_after_end: 0,
        })
}

/// Files of `dir` (sorted runs, event id files: `<from>-<to><suffix>`) to remove: every file
/// that is not one ending at or before `truncate_at` (unfinished `.tmp` files included).
fn ranges_beyond(dir: &Path, suffix: &str, truncate_at: u64) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(format!("listing {}", dir.display()), error)),
    };
    let mut beyond = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|error| Error::io(format!("listing {}", dir.display()), error))?
            .path();
        let ends_at = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(suffix))
            .and_then(|name| name.split_once('-'))
            .and_then(|(_, to)| to.parse::<u64>().ok());
        if ends_at.is_none_or(|to| to > truncate_at) {
            beyond.push(path);
        }
    }
    beyond.sort();
    Ok(beyond)
}

/// Index files to remove: every file after the longest run of intact files that follow
/// each other from the log's start and end at or before `truncate_at`.
fn index_files_beyond(data_dir: &Path, truncate_at: u64) -> Result<Vec<PathBuf>> {
    let files = list_index_files(&data_dir.join("index"))?;
    let mut covered_to = SEGMENT_HEADER_BYTES;
    let mut kept = 0;
    for (expected_sequence, (sequence, path)) in files.iter().enumerate() {
        match claimed_coverage(path) {
            Some(coverage)
                if *sequence == expected_sequence as u64
                    && coverage.covers_from == covered_to
                    && coverage.covers_to <= truncate_at =>
            {
                covered_to = coverage.covers_to;
                kept += 1;
            }
            _ => break,
        }
    }
    Ok(files.into_iter().skip(kept).map(|(_, path)| path).collect())
}
