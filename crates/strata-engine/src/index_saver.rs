//! Writes index files on a thread of its own, so saving never delays acknowledgements.
//!
//! Files are written in the order they are handed over. After one fails, later ones are
//! dropped: a later file would leave a gap, and opening replays the log from the last
//! file written instead.
//!
//! Beside each index file the saver writes a sorted run (`run_file`) of the same range in
//! `index-runs/`, then merges the newest runs while they are of similar size (so there are
//! O(log n) of them). When the open found fewer runs than index files (a run damaged,
//! deleted, or not written before a crash), the saver first rebuilds the missing range
//! from the index, before any new run. A run that cannot be written stops the runs (not
//! the index files) until the next open, which rebuilds what is missing.

use std::path::{Path, PathBuf};

use hashbrown::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use crate::checked_files::CheckedFiles;
use crate::index::UnsavedStream;
use crate::index_file::write_index_file;
use crate::index_file_mend::{CoveredFile, covered_files, file_is_whole, rewrite_from_log};
use crate::run_file::{
    Run, RunEntry, RunSet, entries_from_unsaved, key_hash, run_file_name, write_run,
};
use crate::secondary::{Kind, UnsavedPostings};
use crate::shared::Shared;

/// The directory of the sorted runs, beside the index files' (kept apart so that tools
/// and tests that treat `index/` as a flat list of index files keep doing so).
pub(crate) fn runs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index-runs")
}

/// How many keys a run rebuilt at open copies out of the index per read lock (few in
/// tests, so that their rebuilds cross many chunk boundaries).
const CATCH_UP_KEYS_PER_LOCK: usize = if cfg!(test) { 7 } else { 4096 };

/// What the saver starts from: the runs found at open, and where the index files end.
pub(crate) struct RunsAtOpen {
    pub runs: RunSet,
    /// Where the first run starts when there is none.
    pub start: u64,
    pub index_covered_to: u64,
}

pub(crate) struct IndexFileContents {
    pub sequence: u64,
    pub covers_from: u64,
    pub covers_to: u64,
    pub streams: Vec<UnsavedStream>,
    pub postings: Vec<UnsavedPostings>,
    pub secondary_kept: bool,
}

/// What the saver's thread is handed, in order.
enum Work {
    File(IndexFileContents),
    /// Answered once every file handed over before it is written (or dropped).
    Flushed(Sender<()>),
}

pub(crate) struct IndexSaver {
    files: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

/// Index files checked between two writes of the record of checked files.
const CHECKS_PER_SAVE: usize = 256;

impl IndexSaver {
    pub(crate) fn start(index_dir: PathBuf, shared: Arc<Shared>, at_open: RunsAtOpen) -> Self {
        let (files, to_write) = channel::<Work>();
        let thread = std::thread::Builder::new()
            .name("strata-index-saver".into())
            .spawn(move || {
                let mut runs = RunWriter::new(shared, at_open);
                runs.catch_up();
                runs.publish();
                let mut failed = false;
                // Each covered file is read whole once after it is written, not at every
                // open (`checked_files`).
                let mut checked = CheckedFiles::load(&index_dir);
                let mut to_check: Vec<CoveredFile> = runs
                    .covered_index_files()
                    .into_iter()
                    .filter(|file| checked.checked(&file.path) == 0)
                    .rev()
                    .collect();
                let mut unsaved_checks = 0;
                loop {
                    // Saves come first; the covered index files are checked between them.
                    // `to_check` is in reverse: the next file to check is the last.
                    let work = match to_check.last() {
                        Some(_) => match to_write.try_recv() {
                            Ok(work) => work,
                            Err(TryRecvError::Empty) => {
                                let Some(file) = to_check.pop() else { continue };
                                if runs.mend_index_file(&file) {
                                    checked.set(&file.path, 1);
                                    unsaved_checks += 1;
                                }
                                // The record is rewritten whole: every so many files, not
                                // after each (a crash costs those checks again, no more).
                                if unsaved_checks >= CHECKS_PER_SAVE
                                    || (to_check.is_empty() && unsaved_checks > 0)
                                {
                                    checked.save();
                                    unsaved_checks = 0;
                                }
                                continue;
                            }
                            Err(TryRecvError::Disconnected) => break,
                        },
                        None => match to_write.recv() {
                            Ok(work) => work,
                            Err(_) => break,
                        },
                    };
                    let contents = match work {
                        Work::File(contents) => contents,
                        Work::Flushed(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    if failed {
                        continue;
                    }
                    let written = write_index_file(
                        &index_dir,
                        contents.sequence,
                        contents.covers_from,
                        contents.covers_to,
                        &contents.streams,
                        &contents.postings,
                        contents.secondary_kept,
                    );
                    if let Err(error) = written {
                        tracing::warn!(%error, "could not save an index file; opening will replay the log after the last one saved");
                        failed = true;
                        continue;
                    }
                    let mut contents = contents;
                    runs.resolve_first_revisions(contents.covers_from, &mut contents.postings);
                    let IndexFileContents {
                        covers_from,
                        covers_to,
                        streams,
                        postings,
                        ..
                    } = contents;
                    runs.add(covers_from, covers_to, || {
                        entries_from_unsaved(streams, postings)
                    });
                }
                if unsaved_checks > 0 {
                    checked.save();
                }
            })
            .ok();
        if thread.is_none() {
            tracing::warn!("could not start the index saver; opening will replay the whole log");
        }
        Self {
            files: Some(files),
            thread,
        }
    }

    pub(crate) fn save(&self, contents: IndexFileContents) {
        if let Some(files) = &self.files {
            let _ = files.send(Work::File(contents));
        }
    }

    /// Answers `done` once every file handed over so far is written (or dropped after a
    /// failure), so a caller can rely on the files being there.
    pub(crate) fn flushed(&self, done: Sender<()>) {
        match &self.files {
            Some(files) => {
                if let Err(unsent) = files.send(Work::Flushed(done))
                    && let Work::Flushed(done) = unsent.0
                {
                    let _ = done.send(());
                }
            }
            None => {
                let _ = done.send(());
            }
        }
    }

    /// Waits until every file handed over is written (or dropped after a failure).
    pub(crate) fn finish(&mut self) {
        self.files.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The saver's side of the sorted runs.
struct RunWriter {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// Where the first run starts.
    start: u64,
    runs: RunSet,
    /// Where the runs end.
    end: u64,
    /// Where the index files ended at open.
    index_covered_to: u64,
    /// A run could not be written: no more until the next open.
    stopped: bool,
}

impl RunWriter {
    fn new(shared: Arc<Shared>, at_open: RunsAtOpen) -> Self {
        let dir = runs_dir(&shared.data_dir);
        let stopped = match std::fs::create_dir_all(&dir) {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "cannot create the runs directory; no runs are written");
                true
            }
        };
        Self {
            shared,
            dir,
            start: at_open.start,
            end: at_open.runs.covers_to().unwrap_or(at_open.start),
            runs: at_open.runs,
            index_covered_to: at_open.index_covered_to,
            stopped,
        }
    }

    /// Rebuilds the runs of the range the index files cover and the runs do not, from the
    /// index (which holds all of it), while the store serves: the keys are listed and
    /// sorted into run order once, then their entries are copied out
    /// [`CATCH_UP_KEYS_PER_LOCK`] keys at a time under a short read lock and streamed into
    /// the run, so neither appends nor memory wait for the whole range.
    fn catch_up(&mut self) {
        if self.end >= self.index_covered_to {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let shared = &*shared;
        let (from, to) = (self.end, self.index_covered_to);
        tracing::info!(from, to, "rebuilding the index runs of a range");
        let keys_after_runs = shared.index.read().secondary.keys_after_runs();
        let runs_counts = match self.runs_counts(keys_after_runs) {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(%error, "cannot read the index runs; no runs are written until the next open");
                self.stopped = true;
                return;
            }
        };
        self.add(from, to, || {
            let mut keys = shared.index.read().run_keys();
            keys.sort_by(|a, b| {
                (key_hash(a.0, a.1.as_bytes()), a.0, a.1.as_bytes()).cmp(&(
                    key_hash(b.0, b.1.as_bytes()),
                    b.0,
                    b.1.as_bytes(),
                ))
            });
            let chunks: Vec<Vec<(u8, Arc<str>)>> = keys
                .chunks(CATCH_UP_KEYS_PER_LOCK)
                .map(<[_]>::to_vec)
                .collect();
            let runs_count = move |kind: Kind, name: &str| {
                runs_counts
                    .get(&(kind, Arc::from(name)))
                    .copied()
                    .unwrap_or(0)
            };
            Ok(chunks.into_iter().flat_map(move |chunk| {
                let index = shared.index.read();
                chunk
                    .iter()
                    .filter_map(|(kind, name)| {
                        index.run_entry_between(*kind, name, from, to, &runs_count)
                    })
                    .collect::<Vec<_>>()
            }))
        });
    }

    /// How many positions the runs hold of each of `keys` (read before a run is written
    /// for the keys memory made while the runs held their older positions).
    fn runs_counts(
        &self,
        keys: Vec<(Kind, Arc<str>)>,
    ) -> strata_core::Result<HashMap<(Kind, Arc<str>), u64>> {
        let mut counts = HashMap::with_capacity(keys.len());
        for (kind, name) in keys {
            let count = self.runs.end_revision(kind as u8, name.as_bytes())?;
            counts.insert((kind, name), count);
        }
        Ok(counts)
    }

    /// Sets the first revision of the postings whose memory did not know it, from the
    /// runs, which must end where the postings' file starts (`from`). Runs that cannot be
    /// read stop the runs, as one that cannot be written does.
    fn resolve_first_revisions(&mut self, from: u64, postings: &mut [UnsavedPostings]) {
        if self.stopped || self.end != from {
            // No run is written for this file (`add` refuses it): nothing to resolve.
            return;
        }
        for key in postings
            .iter_mut()
            .filter(|key| key.first_revision.is_none())
        {
            match self.runs.end_revision(key.kind as u8, key.name.as_bytes()) {
                Ok(count) => key.first_revision = Some(count),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the index runs; no runs are written until the next open");
                    self.stopped = true;
                    return;
                }
            }
        }
    }

    /// Writes the run of `[from, to)` (its entries, in run order, made by `entries`, only
    /// when written) and merges the newest runs.
    fn add<Entries: IntoIterator<Item = RunEntry>>(
        &mut self,
        from: u64,
        to: u64,
        entries: impl FnOnce() -> strata_core::Result<Entries>,
    ) {
        if self.stopped || from == to {
            return;
        }
        if !self.dir.exists() {
            // The runs directory was removed under the running store: the runs start
            // again, the range before this one rebuilt from the index first.
            tracing::warn!(dir = %self.dir.display(), "the index runs directory is gone; rebuilding the runs");
            if let Err(error) = std::fs::create_dir_all(&self.dir) {
                tracing::warn!(%error, "cannot create the runs directory; no runs are written");
                self.stopped = true;
                return;
            }
            if self.shared.index.read().dropped_runs().is_some() {
                // Memory holds only what the runs do not: they are copied from the open
                // files, and memory holds the rest.
                if let Err(error) = self.rewrite_runs() {
                    tracing::warn!(%error, "could not write the index runs again; the next open rebuilds them");
                    self.stopped = true;
                    return;
                }
            } else {
                self.runs = RunSet::default();
                self.end = self.start;
            }
            self.index_covered_to = from;
            self.catch_up();
        }
        if from != self.end {
            tracing::warn!(
                from,
                end = self.end,
                "an index run would leave a gap; no more runs until the next open"
            );
            self.stopped = true;
            return;
        }
        let path = self.dir.join(run_file_name(from, to));
        let written = entries()
            .and_then(|entries| write_run(&path, from, to, entries))
            .and_then(|()| {
                Run::open(&path).map_err(|reason| strata_core::Error::Corrupt {
                    detail: format!("run {} {reason}", path.display()),
                })
            })
            .and_then(|run| self.runs.push(run));
        if let Err(error) = written {
            tracing::warn!(%error, "could not write an index run; the next open rebuilds it");
            let _ = std::fs::remove_file(&path);
            self.stopped = true;
            return;
        }
        self.end = to;
        let dir = self.dir.clone();
        let name = |from, to| dir.join(run_file_name(from, to));
        let mut compacted = self.runs.compact(name);
        if compacted.is_err() && self.runs.runs().iter().any(|run| run.is_discarded()) {
            // The merge found a run damaged: it is rebuilt in its place when read again.
            compacted = self.runs.compact(name);
        }
        if let Err(error) = compacted {
            tracing::warn!(%error, "could not merge index runs; the next open rebuilds them");
            self.stopped = true;
        }
        self.publish();
    }

    /// The index files the runs cover, which a tail-only open counted from their
    /// summaries without reading them through (none in the other mode: its open read
    /// every file whole).
    fn covered_index_files(&self) -> Vec<CoveredFile> {
        let Some(runs_to) = self.runs.covers_to() else {
            return Vec::new();
        };
        if !self.shared.config.index_memory_tail_only || self.stopped {
            return Vec::new();
        }
        covered_files(&self.shared.index_dir, runs_to).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot list the index files to check them");
            Vec::new()
        })
    }

    /// Reads an index file the runs cover whole, and writes it again from the log when
    /// it is damaged or missing (the runs heal from these files: `run_heal`). Returns
    /// whether it was found whole.
    fn mend_index_file(&self, file: &CoveredFile) -> bool {
        if file_is_whole(file) {
            return true;
        }
        let kept = self.shared.config.system_streams;
        match rewrite_from_log(file, &self.shared.segments, &self.runs, kept) {
            Ok(()) => {
                tracing::warn!(file = %file.path.display(), "a damaged or missing index file was written again from the log");
            }
            Err(error) => {
                tracing::warn!(%error, "an index file stays damaged; if a run needs it, the next open rebuilds the index from the log");
            }
        }
        false
    }

    /// Hands the runs to the index; with `index_memory_tail_only`, the index then drops
    /// what they cover. Runs a merge replaced stay readable while a lookup holds them
    /// (their files are open).
    fn publish(&self) {
        let runs = Arc::new(self.runs.clone());
        let mut index = self.shared.index.write();
        index.set_runs(runs);
        if self.shared.config.index_memory_tail_only && !self.stopped {
            let generation = index.runs_generation();
            self.shared
                .head_cache
                .follow_drop(generation, &mut index, self.end);
        }
    }

    /// Writes the runs again into a recreated runs directory from the open runs (their
    /// files were removed, not their contents), once memory no longer holds what they
    /// cover.
    fn rewrite_runs(&mut self) -> strata_core::Result<()> {
        let mut rewritten = RunSet::default();
        for run in self.runs.runs() {
            let path = self.dir.join(run_file_name(run.covers_from, run.covers_to));
            let mut failure = None;
            let entries = run.scan()?.map_while(|entry| match entry {
                Ok(entry) => Some(entry),
                Err(error) => {
                    failure = Some(error);
                    None
                }
            });
            write_run(&path, run.covers_from, run.covers_to, entries)?;
            if let Some(error) = failure {
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
            let reopened = Run::open(&path).map_err(|reason| strata_core::Error::Corrupt {
                detail: format!("run {} {reason}", path.display()),
            })?;
            rewritten.push(reopened)?;
        }
        self.runs = rewritten;
        Ok(())
    }
}

#[cfg(test)]
#[path = "index_runs_tests.rs"]
mod tests;
