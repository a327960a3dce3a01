//! Sets of sorted runs: the chain of runs covering the log from its start
//! ([`RunSet`]: a key's head and positions across the runs, size-tiered merging), the
//! merge of two adjacent runs ([`merge_runs`]), and opening the runs of a directory
//! ([`open_runs`]). One run's file, its lookups and its checks are in `run_file`.

use std::path::{Path, PathBuf};

use strata_core::{Error, Result};

use crate::run_file::{Run, RunItem, RunScan, write_records};
use crate::run_record::RecordBytes;

/// Writes the merge of two adjacent runs (`older` covers the log up to where `newer`
/// starts) to `path`. A key in both keeps the older positions followed by the newer ones
/// (which must continue its revisions), the newer tombstone and metadata when set; the
/// record of a key in one run only is copied as it is (`run_record`).
pub(crate) fn merge_runs(older: &Run, newer: &Run, path: &Path) -> Result<()> {
    if older.covers_to != newer.covers_from {
        return Err(invalid(format!(
            "runs {} and {} are not adjacent",
            older.path().display(),
            newer.path().display()
        )));
    }
    let mut failure = None;
    let merged = MergeIter {
        older: Side::new(older.scan()?),
        newer: Side::new(newer.scan()?),
        failure: &mut failure,
    };
    let written = write_records(path, older.covers_from, newer.covers_to, merged);
    if let Some(error) = failure {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    written
}

/// One run of a merge: its records in order, the next one read ahead.
struct Side<'a> {
    scan: RunScan<'a>,
    next: Option<RecordBytes>,
}

impl<'a> Side<'a> {
    fn new(scan: RunScan<'a>) -> Self {
        Self { scan, next: None }
    }

    /// Reads the next record unless it is read already.
    fn fill(&mut self) -> Result<()> {
        if self.next.is_none() {
            self.next = self.scan.next_record().transpose()?;
        }
        Ok(())
    }
}

struct MergeIter<'a, 'f> {
    older: Side<'a>,
    newer: Side<'a>,
    failure: &'f mut Option<Error>,
}

impl Iterator for MergeIter<'_, '_> {
    type Item = RunItem;

    fn next(&mut self) -> Option<RunItem> {
        if self.failure.is_some() {
            return None;
        }
        if let Err(error) = self.older.fill().and_then(|()| self.newer.fill()) {
            *self.failure = Some(error);
            return None;
        }
        let order = match (&self.older.next, &self.newer.next) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.order_key().cmp(&b.order_key()),
        };
        match order {
            std::cmp::Ordering::Less => self.older.next.take().map(RunItem::Bytes),
            std::cmp::Ordering::Greater => self.newer.next.take().map(RunItem::Bytes),
            std::cmp::Ordering::Equal => {
                let a = self.older.next.take()?;
                let b = self.newer.next.take()?;
                match RecordBytes::joined(&a, &b) {
                    Ok(joined) => Some(RunItem::Bytes(joined)),
                    Err(error) => {
                        *self.failure = Some(error);
                        None
                    }
                }
            }
        }
    }
}

/// Runs covering consecutive ranges of the log, oldest first; a key's positions are the
/// concatenation of its records in them.
/// Runs chained from the log's start; cloned cheaply (the runs are shared), so that the
/// index can publish a snapshot that lookups read while the saver goes on.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunSet {
    runs: Vec<std::sync::Arc<Run>>,
}

/// What the runs hold of one key, without its positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHead {
    /// The revision after the last position held (0 when none).
    pub end_revision: u64,
    pub tombstone: Option<u64>,
    pub metadata: Option<Vec<u8>>,
}

impl RunSet {
    /// Adds the next run; it must start where the last one ends.
    pub(crate) fn push(&mut self, run: Run) -> Result<()> {
        if let Some(last) = self.runs.last()
            && last.covers_to != run.covers_from
        {
            return Err(invalid(format!(
                "run {} does not start where {} ends",
                run.path().display(),
                last.path().display()
            )));
        }
        self.runs.push(std::sync::Arc::new(run));
        Ok(())
    }

    pub(crate) fn runs(&self) -> &[std::sync::Arc<Run>] {
        &self.runs
    }

    /// Whether both sets hold the very same open runs.
    pub(crate) fn same_runs(&self, other: &RunSet) -> bool {
        self.runs.len() == other.runs.len()
            && self
                .runs
                .iter()
                .zip(&other.runs)
                .all(|(a, b)| std::sync::Arc::ptr_eq(a, b))
    }

    /// Where the runs end (None when there are none).
    pub(crate) fn covers_to(&self) -> Option<u64> {
        self.runs.last().map(|run| run.covers_to)
    }

    /// Bytes of memory the open runs hold.
    #[cfg(test)]
    pub(crate) fn resident_bytes(&self) -> usize {
        self.runs
            .iter()
            .map(|run| run.resident_bytes() + std::mem::size_of::<Run>())
            .sum::<usize>()
    }

    /// Drops (and removes the files of) the runs that reach past `limit`: the log or the
    /// index files they were written with no longer reach that far. Returns why each
    /// was dropped.
    pub(crate) fn retain_up_to(&mut self, limit: u64) -> Vec<String> {
        let keep = self.runs.partition_point(|run| run.covers_to <= limit);
        self.runs
            .drain(keep..)
            .map(|run| {
                let _ = std::fs::remove_file(run.path());
                format!(
                    "run {} reaches past {limit}, where the index files end",
                    run.path().display()
                )
            })
            .collect()
    }

    /// The head of a key: where its revisions end (the furthest any run says), its
    /// tombstone and metadata (newest run that sets them). `None` when no run holds the
    /// key.
    pub(crate) fn head(&self, kind: u8, key: &[u8]) -> Result<Option<KeyHead>> {
        let mut head: Option<KeyHead> = None;
        for run in self.runs.iter().rev() {
            let Some(record) = run.get(kind, key)? else {
                continue;
            };
            let found = head.get_or_insert_with(KeyHead::default);
            found.end_revision = found.end_revision.max(record.end_revision());
            if found.tombstone.is_none() {
                found.tombstone = record.tombstone;
            }
            if found.metadata.is_none() {
                found.metadata = record.metadata;
            }
        }
        Ok(head)
    }

    /// How many revisions the runs hold of a secondary key (where its revisions end):
    /// the newest run holding it says, so older runs are not read.
    pub(crate) fn end_revision(&self, kind: u8, key: &[u8]) -> Result<u64> {
        for run in self.runs.iter().rev() {
            if let Some(record) = run.get(kind, key)? {
                return Ok(record.end_revision());
            }
        }
        Ok(0)
    }

    /// The first revision the runs hold of a key (revisions below it were removed by a
    /// scavenge), with the positions of revisions `[from, to)` that they hold.
    pub(crate) fn revisions(
        &self,
        kind: u8,
        key: &[u8],
        from: u64,
        to: u64,
    ) -> Result<Option<(u64, Vec<u64>)>> {
        let mut first = None;
        let mut out = Vec::new();
        for run in &self.runs {
            let Some(record) = run.get(kind, key)? else {
                continue;
            };
            first.get_or_insert(record.first_revision);
            let start = from.max(record.first_revision);
            let end = to.min(record.end_revision());
            if start < end {
                out.extend(run.positions(
                    &record,
                    start - record.first_revision,
                    end - record.first_revision,
                )?);
            }
        }
        Ok(first.map(|first| (first, out)))
    }

    /// The positions of revisions `[from, to)` of a key, ascending; revisions the runs do
    /// not hold are left out.
    pub(crate) fn positions(&self, kind: u8, key: &[u8], from: u64, to: u64) -> Result<Vec<u64>> {
        Ok(self
            .revisions(kind, key, from, to)?
            .map(|(_, positions)| positions)
            .unwrap_or_default())
    }

    /// Merges the two newest runs while the newer is at least half the older's size, so
    /// that there are O(log n) runs and each position is rewritten O(log n) times. `name`
    /// gives the path of a run from its coverage. Returns how many merges were done.
    pub(crate) fn compact(&mut self, name: impl Fn(u64, u64) -> PathBuf) -> Result<usize> {
        let mut merges = 0;
        while self.runs.len() >= 2 {
            let newer = &self.runs[self.runs.len() - 1];
            let older = &self.runs[self.runs.len() - 2];
            if newer.position_count.max(newer.key_count) * 2
                < older.position_count.max(older.key_count)
            {
                break;
            }
            let path = name(older.covers_from, newer.covers_to);
            merge_runs(older, newer, &path)?;
            let merged = Run::open(&path)
                .map_err(|reason| corrupt(format!("merged run {} {reason}", path.display())))?;
            let newer = self.runs.pop().unwrap_or_else(|| unreachable!("two runs"));
            let older = self.runs.pop().unwrap_or_else(|| unreachable!("two runs"));
            self.runs.push(std::sync::Arc::new(merged));
            for replaced in [older, newer] {
                if replaced.path() != path {
                    let _ = std::fs::remove_file(replaced.path());
                }
            }
            merges += 1;
        }
        Ok(merges)
    }
}

/// How much of a run [`open_runs`] reads and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunCheck {
    /// The header, fences and trailer; the other blocks are checked when read.
    Open,
    /// Every block ([`Run::check_whole`]).
    Whole,
}

/// Opens the runs in `dir` (named `<covers_from>-<covers_to>.run`, 20 digits each) that
/// chain from `start`: where two intact runs start at the same place (a merge's output
/// and its inputs, after a crash between the rename and the removal), the longer wins.
/// Runs that fail their checks are removed (they are rebuilt from the log), as are `.tmp`
/// leftovers. `check` says how much of each run is read and checked. Returns the set and
/// why each dropped run was dropped.
pub(crate) fn open_runs(dir: &Path, start: u64, check: RunCheck) -> Result<(RunSet, Vec<String>)> {
    let mut dropped = Vec::new();
    let mut candidates = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((RunSet::default(), dropped));
        }
        Err(error) => return Err(Error::io(format!("listing {}", dir.display()), error)),
    };
    for entry in entries {
        let entry =
            entry.map_err(|error| Error::io(format!("listing {}", dir.display()), error))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(range) = name.strip_suffix(".run") else {
            continue;
        };
        let parsed = range
            .split_once('-')
            .and_then(|(from, to)| Some((from.parse::<u64>().ok()?, to.parse::<u64>().ok()?)));
        let opened = Run::open(&path).and_then(|run| {
            if check == RunCheck::Whole {
                // A damaged run's error names it and its file is removed.
                let named = format!("run {} ", path.display());
                run.check_whole().map_err(|error| match error {
                    Error::Corrupt { detail } => detail
                        .strip_prefix(&named)
                        .map_or_else(|| detail.clone(), str::to_owned),
                    other => other.to_string(),
                })?;
            }
            Ok(run)
        });
        match (parsed, opened) {
            (Some((from, to)), Ok(run)) if run.covers_from == from && run.covers_to == to => {
                candidates.push(run);
            }
            (_, Err(reason)) => {
                dropped.push(format!("run {} {reason}", path.display()));
                let _ = std::fs::remove_file(&path);
            }
            _ => {
                dropped.push(format!(
                    "run {} is not named after its coverage",
                    path.display()
                ));
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    // Longest first among runs starting at the same place.
    candidates.sort_by(|a, b| {
        (a.covers_from, std::cmp::Reverse(a.covers_to))
            .cmp(&(b.covers_from, std::cmp::Reverse(b.covers_to)))
    });
    let mut set = RunSet::default();
    let mut at = start;
    for run in candidates {
        if run.covers_from == at && run.covers_to > at {
            at = run.covers_to;
            set.runs.push(std::sync::Arc::new(run));
        } else if run.covers_to <= at {
            // Superseded by a merge that holds it.
            let _ = std::fs::remove_file(run.path());
        } else {
            // Cut off by a damaged run before it: the log is replayed from there and the
            // runs rebuilt, so this one would only shadow them.
            dropped.push(format!(
                "run {} does not start where the runs before it end ({at})",
                run.path().display()
            ));
            let _ = std::fs::remove_file(run.path());
        }
    }
    Ok((set, dropped))
}

/// The file name of the run covering `[from, to)`.
pub(crate) fn run_file_name(from: u64, to: u64) -> String {
    format!("{from:020}-{to:020}.run")
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument { reason }
}

fn corrupt(detail: String) -> Error {
    Error::Corrupt { detail }
}
