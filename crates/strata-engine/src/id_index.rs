//! Event id → positions on disk, so that `Any`/`StreamExists` re-sends are recognised at
//! any age, not only while their ids are among the recent ones (`RecentIds`).
//!
//! A chain of immutable id files (`id_file`) in `<data dir>/index-ids/` covers the log from
//! its start to `covered_to`. A thread of its own builds them from the log, behind the
//! index checkpoints (the syncer hands it each checkpoint's end), at most
//! [`BUILD_IDS_MAX`] ids per file, and merges any two neighbours of the chain where the
//! newer holds at least half the older's ids (size-tiered: O(log n) files, rebuilt pieces
//! included). The open trusts only files that are complete, checksummed and chained from
//! the log's start; the rest is removed and built again from the log while the store
//! serves. The blocks of each file are read back once after it is written (the scrub, at
//! the next open, in slices between the builder's other work, so filing never waits for
//! it); how far each file was read is kept in `index-ids/checked` (`checked_files`), so
//! a later open goes on where the last stopped instead of reading every file again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use strata_core::Result;

use crate::checked_files::CheckedFiles;
use crate::format::{SEGMENT_HEADER_BYTES, TOMBSTONE_REVISION};
use crate::id_file::{IdFile, id_file_name, id_hash, merge_id_files, write_id_file};
use crate::log_reader::{Flow, LogReader};
use crate::segments::Segments;
use crate::shared::Shared;

/// Ids one built file holds at most (16 bytes each in memory while it is sorted).
const BUILD_IDS_MAX: usize = if cfg!(test) { 50 } else { 4 << 20 };

/// Ids handed by the syncer (16 bytes each) held at most, gathered or queued; past that
/// a range is filed by reading the log again.
const HANDED_IDS_MAX: usize = if cfg!(test) { 1_000 } else { 1 << 20 };

/// The `(id hash, position)` pairs the writer made for the log from `from` on (the
/// syncer gathers them and hands them with each index save, so that the builder files the
/// range without reading the log again). One vector for all groups: a group's own vector
/// (often one or a few pairs, in an allocation of 64 bytes or more) is not kept.
pub(crate) struct HandedIds {
    from: u64,
    ids: Vec<(u64, u64)>,
    /// More than [`HANDED_IDS_MAX`] came: none is kept, the range is read from the log.
    overflowed: bool,
}

impl HandedIds {
    pub(crate) fn new(from: u64) -> Self {
        Self {
            from,
            ids: Vec::new(),
            overflowed: false,
        }
    }

    /// The next group's pairs.
    pub(crate) fn add(&mut self, ids: &[(u64, u64)]) {
        if ids.is_empty() || self.overflowed {
            return;
        }
        if self.ids.len() + ids.len() > HANDED_IDS_MAX {
            self.overflowed = true;
            self.ids = Vec::new();
            return;
        }
        self.ids.extend_from_slice(ids);
    }

    fn count(&self) -> usize {
        self.ids.len()
    }
}

/// Blocks (4,100 bytes each) the scrub reads before the builder looks for other work again.
const SCRUB_BLOCKS_PER_SLICE: u64 = if cfg!(test) { 2 } else { 1024 };

/// Scrub slices between two writes of how far it got (≈ 256 MiB read), so that an open
/// after a crash goes on near where the last one stopped.
const SCRUB_SLICES_PER_SAVE: u32 = 64;

/// Data directories whose builder must not scrub until `release_scrub` (tests: a scrub
/// that is slow, deterministically).
#[cfg(test)]
static HOLD_SCRUB: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Holds the scrub of the store that opens at `data_dir` next (tests).
#[cfg(test)]
pub(crate) fn hold_scrub(data_dir: &Path) {
    HOLD_SCRUB.lock().push(data_dir.to_path_buf());
}

/// The directory of the id files.
pub(crate) fn ids_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index-ids")
}

#[derive(Default)]
struct Work {
    /// The log up to here is durable and may be filed.
    target: u64,
    stop: bool,
    /// A builder thread was started: without one, nothing drains `handed`.
    builder_runs: bool,
    /// The builder has read every block of the files the open trusted.
    checked: bool,
    /// Ranges `[from, to)` whose pairs the syncer handed, oldest first, and their count.
    handed: VecDeque<(u64, u64, HandedIds)>,
    handed_count: usize,
    /// Tests: the scrub waits (`hold_scrub`).
    #[cfg(test)]
    scrub_held: bool,
    /// Tests: ranges filed from handed pairs.
    #[cfg(test)]
    filed_from_handed: u64,
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
        #[cfg_attr(not(test), allow(unused_mut))]
        let mut work = Work::default();
        #[cfg(test)]
        {
            let mut held = HOLD_SCRUB.lock();
            if let Some(at) = held.iter().position(|dir| dir == data_dir) {
                held.remove(at);
                work.scrub_held = true;
            }
        }
        Self {
            dir: ids_dir(data_dir),
            files: RwLock::default(),
            covered_to: Arc::new(AtomicU64::new(SEGMENT_HEADER_BYTES)),
            work: Mutex::new(work),
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

    /// The log before `to` is durable and `ids` are its pairs from `ids.from` on: the
    /// builder may file it, from them when it gets there (unless too many are queued).
    pub(crate) fn extend_with(&self, mut ids: HandedIds, to: u64) {
        // Queued until filed: without the room the vector grew into.
        ids.ids.shrink_to_fit();
        let mut work = self.work.lock();
        if work.builder_runs
            && !ids.overflowed
            && ids.from < to
            && work.handed_count + ids.count() <= HANDED_IDS_MAX
        {
            work.handed_count += ids.count();
            work.handed.push_back((ids.from, to, ids));
        }
        if to > work.target {
            work.target = to;
        }
        self.changed.notify_all();
    }

    /// Ranges filed from handed pairs so far (tests).
    #[cfg(test)]
    pub(crate) fn filed_from_handed(&self) -> u64 {
        self.work.lock().filed_from_handed
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

    /// The chain's id counts, oldest first (tests).
    #[cfg(test)]
    pub(crate) fn file_counts(&self) -> Vec<u64> {
        self.snapshot().iter().map(|file| file.count).collect()
    }

    /// Whether the builder has read every block of the files the open trusted (tests).
    #[cfg(test)]
    pub(crate) fn scrubbed(&self) -> bool {
        self.work.lock().checked
    }

    /// The paths of the files in use (tests: a running store's directory may still list
    /// files a merge replaced, until the builder removes them).
    #[cfg(test)]
    pub(crate) fn file_paths(&self) -> Vec<PathBuf> {
        self.snapshot()
            .iter()
            .map(|file| file.path().to_path_buf())
            .collect()
    }

    /// Lets a held scrub go on (tests).
    #[cfg(test)]
    pub(crate) fn release_scrub(&self) {
        self.work.lock().scrub_held = false;
        self.changed.notify_all();
    }

    /// Waits until the files cover the log before `to` (tests).
    #[cfg(test)]
    pub(crate) fn wait_filed(&self, to: u64) {
        let mut work = self.work.lock();
        while self.covered_to.load(Ordering::Acquire) < to && !work.stop {
            self.changed
                .wait_for(&mut work, std::time::Duration::from_millis(50));
        }
    }

    /// Waits until the files cover the log before `to`, the builder has checked the files
    /// found at open, none is known damaged and no merge is due (tests).
    #[cfg(test)]
    pub(crate) fn wait_covered(&self, to: u64) {
        let mut work = self.work.lock();
        loop {
            let chain = self.snapshot();
            let idle = self.covered_to.load(Ordering::Acquire) >= to
                && work.checked
                && !chain.iter().any(|file| file.is_damaged())
                && next_merge(&chain).is_none();
            if idle || work.stop {
                return;
            }
            self.changed
                .wait_for(&mut work, std::time::Duration::from_millis(50));
        }
    }

    /// Starts the builder's thread.
    pub(crate) fn start_builder(shared: Arc<Shared>) -> Option<JoinHandle<()>> {
        shared.id_index.work.lock().builder_runs = true;
        let on_failure = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("strata-id-index".into())
            .spawn(move || {
                let checked = CheckedFiles::load(&shared.id_index.dir);
                Builder {
                    shared,
                    scrub: VecDeque::new(),
                    checked,
                    checked_unsaved: false,
                    slices_unsaved: 0,
                }
                .run();
            })
            .map_err(|error| {
                on_failure.id_index.work.lock().builder_runs = false;
                tracing::warn!(%error, "could not start the event id index builder");
            })
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

/// Where the chain merges next: the newest two neighbours, neither damaged, where the newer
/// holds at least half the older's ids (the index of the older). When none is left, each
/// file holds more than twice the next one's ids: O(log n) files, and pieces of a damaged
/// file written again merge with each other and with their neighbours.
fn next_merge(chain: &[Arc<IdFile>]) -> Option<usize> {
    let files: Vec<(u64, bool)> = chain
        .iter()
        .map(|file| (file.count, file.is_damaged()))
        .collect();
    merge_due(&files)
}

/// [`next_merge`] of `(id count, damaged)` per file, oldest first.
fn merge_due(files: &[(u64, bool)]) -> Option<usize> {
    (0..files.len().saturating_sub(1)).rev().find(|&older| {
        let ((a, a_damaged), (b, b_damaged)) = (files[older], files[older + 1]);
        b * 2 >= a && !a_damaged && !b_damaged
    })
}

/// What the builder does next.
enum Next {
    /// Write a damaged file again, file a new range, or merge.
    Step,
    /// Read the next blocks of the files the open trusted.
    Scrub,
    /// The store closes.
    Stop,
}

/// The builder's thread: files the log behind the checkpoints, writes damaged files
/// again, merges, and reads every block of the files the open trusted in between.
struct Builder {
    shared: Arc<Shared>,
    /// Files the open trusted whose blocks are still to be read, each with its next block.
    scrub: VecDeque<(Arc<IdFile>, u64)>,
    /// How far each file was read back, at this open and before.
    checked: CheckedFiles,
    /// `checked` moved on since it was last written.
    checked_unsaved: bool,
    /// Scrub slices since `checked` was last written.
    slices_unsaved: u32,
}

impl Builder {
    fn index(&self) -> &IdIndex {
        &self.shared.id_index
    }

    fn run(mut self) {
        // The open read only each file's header, bloom filter, fences and trailer: every
        // block not yet read back since the file was written is read once, a slice at a
        // time whenever nothing else is to be done, so that a damaged one is found and
        // written again.
        let chain = self.index().snapshot();
        self.scrub = chain
            .iter()
            .map(|file| (Arc::clone(file), self.checked.checked(file.path())))
            .filter(|(file, next)| *next < file.block_count())
            .collect();
        loop {
            let scrub_pending = !self.scrub.is_empty();
            let next = {
                let index = self.index();
                let mut work = index.work.lock();
                loop {
                    if work.stop {
                        break Next::Stop;
                    }
                    let chain = index.snapshot();
                    let end = index.covered_to.load(Ordering::Acquire);
                    if work.target > end
                        || chain.iter().any(|file| file.is_damaged())
                        || next_merge(&chain).is_some()
                    {
                        break Next::Step;
                    }
                    #[cfg(not(test))]
                    let held = false;
                    #[cfg(test)]
                    let held = work.scrub_held;
                    if scrub_pending && !held {
                        break Next::Scrub;
                    }
                    if !scrub_pending && !work.checked {
                        work.checked = true;
                        index.changed.notify_all();
                    }
                    index.changed.wait(&mut work);
                }
            };
            let done = match next {
                Next::Step => self.step(),
                Next::Scrub => {
                    self.scrub_slice();
                    Ok(())
                }
                Next::Stop => {
                    self.save_checked();
                    return;
                }
            };
            if let Err(error) = done {
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

    /// Reads up to [`SCRUB_BLOCKS_PER_SLICE`] blocks of the files the open trusted. A file
    /// no longer in the chain was read whole by the merge that replaced it (or written
    /// again); a damaged block marks its file, which the next step writes again.
    fn scrub_slice(&mut self) {
        let chain = self.index().snapshot();
        let mut budget = SCRUB_BLOCKS_PER_SLICE;
        let mut file_done = false;
        while budget > 0 {
            let Some((file, next)) = self.scrub.front_mut() else {
                break;
            };
            if *next >= file.block_count() {
                self.checked.set(file.path(), *next);
                self.checked_unsaved = true;
                file_done = true;
                self.scrub.pop_front();
                continue;
            }
            if file.is_damaged() || !chain.iter().any(|kept| Arc::ptr_eq(kept, file)) {
                self.scrub.pop_front();
                continue;
            }
            if file.check_block(*next).is_err() {
                tracing::warn!(path = %file.path().display(), "an event id file has a damaged block; it is built again from the log");
                self.scrub.pop_front();
                continue;
            }
            *next += 1;
            budget -= 1;
        }
        if let Some((file, next)) = self.scrub.front() {
            self.checked.set(file.path(), *next);
            self.checked_unsaved = true;
        }
        self.slices_unsaved += 1;
        if file_done || self.scrub.is_empty() || self.slices_unsaved >= SCRUB_SLICES_PER_SAVE {
            self.save_checked();
        }
    }

    /// Writes how far the files were read back, when that moved on.
    fn save_checked(&mut self) {
        self.slices_unsaved = 0;
        if self.checked_unsaved {
            self.checked.save();
            self.checked_unsaved = false;
        }
    }

    /// One piece of work: a damaged file written again, else the next range filed, else
    /// one merge.
    fn step(&self) -> Result<()> {
        let index = self.index();
        std::fs::create_dir_all(&index.dir).map_err(|error| {
            strata_core::Error::io(format!("creating {}", index.dir.display()), error)
        })?;
        let mut chain: Vec<Arc<IdFile>> = index.snapshot().as_ref().clone();
        let covered_to = index.covered_to.load(Ordering::Acquire);
        if let Some(at) = chain.iter().position(|file| file.is_damaged()) {
            // Its range filed again, in files of at most BUILD_IDS_MAX ids (memory stays
            // bounded however large the damaged file was); later steps merge the pieces.
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
            index.publish(chain, covered_to);
            return Ok(());
        }
        let (target, handed) = {
            let mut work = index.work.lock();
            // Pairs of a range the files already reach into are of no use.
            while let Some((from, _, _)) = work.handed.front()
                && *from < covered_to
            {
                if let Some((_, _, ids)) = work.handed.pop_front() {
                    work.handed_count -= ids.count();
                }
            }
            let handed = if work
                .handed
                .front()
                .is_some_and(|(from, ..)| *from == covered_to)
            {
                work.handed.pop_front()
            } else {
                None
            };
            if let Some((_, _, ids)) = &handed {
                work.handed_count -= ids.count();
                #[cfg(test)]
                {
                    work.filed_from_handed += 1;
                }
            }
            // Read from the log only up to where handed pairs start.
            let target = work.handed.front().map_or(work.target, |(from, ..)| *from);
            (target, handed)
        };
        if let Some((from, to, ids)) = handed {
            let path = index.dir.join(id_file_name(from, to));
            write_id_file(&path, from, to, ids.ids)?;
            let file = IdFile::open(&path).map_err(|reason| strata_core::Error::Corrupt {
                detail: format!("event id file {} {reason}", path.display()),
            })?;
            chain.push(Arc::new(file));
            index.publish(chain, to);
            return Ok(());
        }
        if target > covered_to {
            let (file, end) = self.build(covered_to, target, BUILD_IDS_MAX)?;
            chain.push(Arc::new(file));
            index.publish(chain, end);
            return Ok(());
        }
        if let Some(older) = next_merge(&chain) {
            match self.merge(&chain[older], &chain[older + 1]) {
                Ok(merged) => {
                    let inputs: Vec<_> = chain.splice(older..=older + 1, [merged]).collect();
                    index.publish(chain.clone(), covered_to);
                    for input in inputs {
                        if !chain.iter().any(|file| file.path() == input.path()) {
                            let _ = std::fs::remove_file(input.path());
                        }
                    }
                }
                // The merge found a damaged block and marked its file: the next step
                // writes that file again.
                Err(_) if chain[older].is_damaged() || chain[older + 1].is_damaged() => {}
                Err(error) => return Err(error),
            }
        }
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

    /// Writes the merge of two neighbours (reading every block of both).
    fn merge(&self, older: &IdFile, newer: &IdFile) -> Result<Arc<IdFile>> {
        let path = self
            .index()
            .dir
            .join(id_file_name(older.covers_from, newer.covers_to));
        merge_id_files(older, newer, &path)?;
        let merged = IdFile::open(&path).map_err(|reason| strata_core::Error::Corrupt {
            detail: format!("merged event id file {} {reason}", path.display()),
        })?;
        Ok(Arc::new(merged))
    }
}

#[cfg(test)]
#[path = "id_index_tests.rs"]
mod tests;
