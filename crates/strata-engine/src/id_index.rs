//! Event id → positions on disk, so that `Any`/`StreamExists` re-sends are recognised at
//! any age, not only while their ids are among the recent ones (`RecentIds`).
//!
//! A chain of immutable id files (`id_file`) in `<data dir>/index-ids/` covers the log from
//! its start to `covered_to`. A thread of its own builds them from the log, behind the
//! index checkpoints (the syncer hands it each checkpoint's end), at most
//! [`BUILD_IDS_MAX`] ids per file, and merges the two newest while the newer holds at least
//! half the older's ids (size-tiered: O(log n) files). The open trusts only files that are
//! complete, checksummed and chained from the log's start; the rest is removed and built
//! again from the log while the store serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use strata_core::Result;

use crate::format::{SEGMENT_HEADER_BYTES, TOMBSTONE_REVISION};
use crate::id_file::{IdFile, id_file_name, id_hash, merge_id_files, write_id_file};
use crate::log_reader::{Flow, LogReader};
use crate::segments::Segments;
use crate::shared::Shared;

/// Ids one built file holds at most (16 bytes each in memory while it is sorted).
const BUILD_IDS_MAX: usize = if cfg!(test) { 50 } else { 4 << 20 };

/// The directory of the id files.
pub(crate) fn ids_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index-ids")
}

#[derive(Default)]
struct Work {
    /// The log up to here is durable and may be filed.
    target: u64,
    stop: bool,
    /// The builder has read every block of the files the open trusted.
    checked: bool,
}

pub(crate) struct IdIndex {
    dir: PathBuf,
    /// The chain, oldest first (a snapshot: lookups clone it).
    files: RwLock<Arc<Vec<Arc<IdFile>>>>,
    /// Where the chain ends; `RecentIds` forgets only what lies before it.
    covered_to: Arc<AtomicU64>,
    work: Mutex<Work>,
    changed: Condvar,
}

impl IdIndex {
    /// An index with no files (`open` loads them).
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: ids_dir(data_dir),
            files: RwLock::default(),
            covered_to: Arc::new(AtomicU64::new(SEGMENT_HEADER_BYTES)),
            work: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    /// Where the files end (shared with `RecentIds`).
    pub(crate) fn covered_to(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.covered_to)
    }

    /// Opens the files that chain from the log's start and end by `log_end`, removing the
    /// others (and `.tmp` leftovers); the builder then starts from where they end.
    ///
    /// # Errors
    /// I/O errors listing the directory.
    pub(crate) fn open(&self, log_end: u64) -> Result<()> {
        let (chain, dropped) = open_chain(&self.dir, log_end, true)?;
        for reason in dropped {
            tracing::warn!(%reason, "an event id file is built again from the log");
        }
        let end = chain
            .last()
            .map_or(SEGMENT_HEADER_BYTES, |file| file.covers_to);
        self.publish(chain, end);
        Ok(())
    }

    fn publish(&self, chain: Vec<Arc<IdFile>>, end: u64) {
        *self.files.write() = Arc::new(chain);
        self.covered_to.store(end, Ordering::Release);
        let _guard = self.work.lock();
        self.changed.notify_all();
    }

    fn snapshot(&self) -> Arc<Vec<Arc<IdFile>>> {
        Arc::clone(&self.files.read())
    }

    /// The log before `to` is durable: the builder may file it.
    pub(crate) fn extend_to(&self, to: u64) {
        let mut work = self.work.lock();
        if to > work.target {
            work.target = to;
            self.changed.notify_all();
        }
    }

    /// Positions where an event with `id` may be (ascending; every candidate must be
    /// read and compared). A file with a damaged block is answered by scanning its log
    /// range, and the builder is woken to write it again.
    ///
    /// # Errors
    /// Log read errors.
    pub(crate) fn candidates(&self, id: u128, segments: &Segments) -> Result<Vec<u64>> {
        let hash = id_hash(id);
        let mut found = Vec::new();
        for file in self.snapshot().iter() {
            if !file.may_contain(hash) {
                continue;
            }
            if !file.is_damaged() {
                match file.positions(hash) {
                    Ok(positions) => {
                        found.extend(positions);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "an event id file is damaged; it is built again from the log");
                        let _guard = self.work.lock();
                        self.changed.notify_all();
                    }
                }
            }
            let (entries, _) = scan_ids(segments, file.covers_from, file.covers_to, usize::MAX)?;
            found.extend(
                entries
                    .into_iter()
                    .filter(|&(filed, _)| filed == hash)
                    .map(|(_, position)| position),
            );
        }
        found.sort_unstable();
        Ok(found)
    }

    /// How many files the chain has.
    #[cfg(test)]
    pub(crate) fn file_count(&self) -> usize {
        self.snapshot().len()
    }

    /// Waits until the files cover the log before `to`, the builder has checked the files
    /// found at open and none is known damaged (tests).
    #[cfg(test)]
    pub(crate) fn wait_covered(&self, to: u64) {
        let mut work = self.work.lock();
        while (self.covered_to.load(Ordering::Acquire) < to
            || !work.checked
            || self.snapshot().iter().any(|file| file.is_damaged()))
            && !work.stop
        {
            self.changed
                .wait_for(&mut work, std::time::Duration::from_millis(50));
        }
    }

    /// Starts the builder's thread.
    pub(crate) fn start_builder(shared: Arc<Shared>) -> Option<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("strata-id-index".into())
            .spawn(move || Builder { shared }.run())
            .map_err(|error| tracing::warn!(%error, "could not start the event id index builder"))
            .ok()
    }

    /// Tells the builder to stop after the file it is writing.
    pub(crate) fn stop(&self) {
        self.work.lock().stop = true;
        self.changed.notify_all();
    }
}

/// The `(id hash, position)` of every event frame but tombstones from `from` to `to`, at
/// most `max` of them; returns them and where the scan stopped (`to` when it got there).
pub(crate) fn scan_ids(
    segments: &Segments,
    from: u64,
    to: u64,
    max: usize,
) -> Result<(Vec<(u64, u64)>, u64)> {
    let mut entries = Vec::new();
    let reader = LogReader::new(segments);
    // In a scavenged segment `from` may lie in a hole left by removed events (zeros after
    // a skip frame): the scan starts at the segment's first frame and ignores what comes
    // before `from`.
    let segment = segments.segment_of(from);
    let scan_from = if segments.is_scavenged(segment) {
        segments.segment_start(segment)
    } else {
        from
    };
    let stopped_at = reader.scan_forward(scan_from, to, &mut |position, frame, _| {
        if position >= from && frame.revision != TOMBSTONE_REVISION {
            entries.push((id_hash(frame.id), position));
        }
        Ok(if entries.len() >= max {
            Flow::Stop
        } else {
            Flow::Continue
        })
    })?;
    let end = if entries.len() >= max {
        stopped_at.min(to)
    } else {
        to
    };
    Ok((entries, end))
}

/// The id files of `dir` that chain from the log's start and end by `log_end`: where two
/// start at the same place (a merge's output and its inputs, after a crash between the
/// rename and the removal), the longer wins. With `remove`, every other file (and `.tmp`
/// leftovers) is removed. Returns the chain and why each other file was left out.
pub(crate) fn open_chain(
    dir: &Path,
    log_end: u64,
    remove: bool,
) -> Result<(Vec<Arc<IdFile>>, Vec<String>)> {
    let mut dropped = Vec::new();
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), dropped));
        }
        Err(error) => {
            return Err(strata_core::Error::io(
                format!("listing {}", dir.display()),
                error,
            ));
        }
    };
    let mut opened = Vec::new();
    for entry in listing.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".ids") {
            if remove && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        match IdFile::open(&path) {
            Ok(file) if name == id_file_name(file.covers_from, file.covers_to) => {
                opened.push(file);
            }
            Ok(_) => dropped.push(format!("{} is not named after its range", path.display())),
            Err(reason) => dropped.push(format!("{} {reason}", path.display())),
        }
    }
    opened.sort_by_key(|file| (file.covers_from, std::cmp::Reverse(file.covers_to)));
    let mut chain = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    for file in opened {
        if file.covers_from == at && file.covers_to > at && file.covers_to <= log_end {
            at = file.covers_to;
            chain.push(Arc::new(file));
        } else if file.covers_to > log_end {
            dropped.push(format!(
                "{} reaches past the log's end {log_end}",
                file.path().display()
            ));
        } else if file.covers_from < at && file.covers_to <= at {
            // Superseded by a merge: not a problem.
        } else {
            dropped.push(format!(
                "{} does not chain from the log's start",
                file.path().display()
            ));
        }
    }
    if remove {
        let kept: Vec<PathBuf> = chain.iter().map(|file| file.path().to_path_buf()).collect();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "ids") && !kept.contains(&path)
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok((chain, dropped))
}

/// The builder's thread: files the log behind the checkpoints, writes damaged files
/// again, merges.
struct Builder {
    shared: Arc<Shared>,
}

impl Builder {
    fn index(&self) -> &IdIndex {
        &self.shared.id_index
    }

    fn run(self) {
        // The open read only each file's header, bloom filter, fences and trailer: every
        // block is read once now, so that a damaged one is found and written again.
        for file in self.index().snapshot().iter() {
            for (at, entry) in file.scan().enumerate() {
                if entry.is_err() {
                    tracing::warn!(path = %file.path().display(), "an event id file has a damaged block; it is built again from the log");
                    break;
                }
                if at % 65_536 == 0 && self.index().work.lock().stop {
                    return;
                }
            }
        }
        self.index().work.lock().checked = true;
        loop {
            {
                let index = self.index();
                let mut work = index.work.lock();
                loop {
                    let end = index.covered_to.load(Ordering::Acquire);
                    let damaged = index.snapshot().iter().any(|file| file.is_damaged());
                    if work.stop {
                        return;
                    }
                    if work.target > end || damaged {
                        break;
                    }
                    index.changed.wait(&mut work);
                }
            }
            if let Err(error) = self.step() {
                // Tried again at the next checkpoint (or the next open).
                tracing::warn!(%error, "could not build an event id file");
                let mut work = self.index().work.lock();
                if !work.stop {
                    self.index()
                        .changed
                        .wait_for(&mut work, std::time::Duration::from_secs(1));
                }
            }
        }
    }

    /// One file: a damaged one written again, else the next range filed; then merges.
    fn step(&self) -> Result<()> {
        let index = self.index();
        std::fs::create_dir_all(&index.dir).map_err(|error| {
            strata_core::Error::io(format!("creating {}", index.dir.display()), error)
        })?;
        let mut chain: Vec<Arc<IdFile>> = index.snapshot().as_ref().clone();
        if let Some(at) = chain.iter().position(|file| file.is_damaged()) {
            // Its range filed again, in files of at most BUILD_IDS_MAX ids (memory stays
            // bounded however large the damaged file was).
            let (from, to) = (chain[at].covers_from, chain[at].covers_to);
            let mut rebuilt = Vec::new();
            let mut start = from;
            while start < to {
                let (file, end) = self.build(start, to, BUILD_IDS_MAX)?;
                rebuilt.push(Arc::new(file));
                start = end;
            }
            let replaced: Vec<_> = chain.splice(at..=at, rebuilt).collect();
            for old in replaced {
                if !chain.iter().any(|file| file.path() == old.path()) {
                    let _ = std::fs::remove_file(old.path());
                }
            }
            index.publish(chain, index.covered_to.load(Ordering::Acquire));
            return Ok(());
        }
        let from = chain
            .last()
            .map_or(SEGMENT_HEADER_BYTES, |file| file.covers_to);
        let target = index.work.lock().target;
        if target <= from {
            return Ok(());
        }
        let (file, end) = self.build(from, target, BUILD_IDS_MAX)?;
        chain.push(Arc::new(file));
        index.publish(chain.clone(), end);
        self.compact(&mut chain)?;
        index.publish(chain, end);
        Ok(())
    }

    /// Writes the file of the log from `from` (to `to`, or fewer ids than `max`).
    fn build(&self, from: u64, to: u64, max: usize) -> Result<(IdFile, u64)> {
        let (entries, end) = scan_ids(&self.shared.segments, from, to, max)?;
        let path = self.index().dir.join(id_file_name(from, end));
        write_id_file(&path, from, end, entries)?;
        let file = IdFile::open(&path).map_err(|reason| strata_core::Error::Corrupt {
            detail: format!("event id file {} {reason}", path.display()),
        })?;
        Ok((file, end))
    }

    /// Merges the two newest files while the newer holds at least half the older's ids.
    fn compact(&self, chain: &mut Vec<Arc<IdFile>>) -> Result<()> {
        while chain.len() >= 2 {
            let newer = &chain[chain.len() - 1];
            let older = &chain[chain.len() - 2];
            if newer.count * 2 < older.count {
                break;
            }
            let path = self
                .index()
                .dir
                .join(id_file_name(older.covers_from, newer.covers_to));
            // A damaged input is marked so by the merge, and written again by the next step.
            merge_id_files(older, newer, &path)?;
            let merged = IdFile::open(&path).map_err(|reason| strata_core::Error::Corrupt {
                detail: format!("merged event id file {} {reason}", path.display()),
            })?;
            let newer = chain.pop().unwrap_or_else(|| unreachable!("two files"));
            let older = chain.pop().unwrap_or_else(|| unreachable!("two files"));
            chain.push(Arc::new(merged));
            for replaced in [older, newer] {
                if replaced.path() != path {
                    let _ = std::fs::remove_file(replaced.path());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "id_index_tests.rs"]
mod tests;
