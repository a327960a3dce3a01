//! The file a scavenge writes: surviving frames at their own offsets, a skip frame over
//! each run of removed records, holes between (see `scavenge.rs`).
//!
//! The bytes go to the disk as they are produced, in small O_DIRECT requests, rather than
//! into the page cache to be flushed by one `fsync` at the end: a flush of a whole segment
//! (up to 256 MiB) would queue every `fdatasync` of the writer behind it. Each request
//! waits for the device, so no more than [`DIRECT_WRITE_BYTES`] of the copy is in flight
//! at any time, and the copy neither fills the page cache nor evicts the log's hot pages.
//! Where O_DIRECT is refused (tmpfs), the copy is written through the page cache and
//! synced every [`BUFFERED_SYNC_BYTES`] instead. Either way the file is `fsync`ed whole
//! before it is swapped in: crash safety rests on that sync, not on these steps.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use strata_core::{Error, Result};

use crate::format::{encode_skip_head, encode_skip_trailer};
use crate::log_reader::to_usize;

/// The largest O_DIRECT request (and so the most of the copy in flight at once). Small
/// requests keep the writer's `fdatasync` from waiting long behind one (the segment
/// zero-fill measured the same: `segments.rs`).
const DIRECT_WRITE_BYTES: u64 = 128 << 10;

/// O_DIRECT needs buffers, offsets and lengths aligned to the logical block size; 4 KiB
/// covers every common device.
const DIRECT_ALIGN_BYTES: u64 = 4096;

/// Without O_DIRECT: bytes written through the page cache between two `fdatasync`s.
const BUFFERED_SYNC_BYTES: u64 = 4 << 20;

/// Surviving bytes gathered before one buffered write.
const BUFFERED_WRITE_BYTES: usize = 1 << 20;

/// The window of the file being assembled for the next O_DIRECT request(s): whole
/// aligned blocks; blocks nothing was written to stay holes.
struct DirectWindow {
    file: File,
    buffer: Vec<u8>,
    /// Where the aligned part of `buffer` starts.
    start: usize,
    /// File offset of the window's first byte (aligned).
    at: u64,
    /// The blocks of the window written to.
    touched: Vec<bool>,
}

impl DirectWindow {
    fn open(path: &Path) -> std::io::Result<Self> {
        let direct_flag = i32::try_from(rustix::fs::OFlags::DIRECT.bits())
            .map_err(|_| std::io::Error::other("O_DIRECT does not fit open flags"))?;
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(direct_flag)
            .open(path)?;
        let buffer = vec![0u8; to_usize(DIRECT_WRITE_BYTES + DIRECT_ALIGN_BYTES)];
        let start = buffer.as_ptr().align_offset(to_usize(DIRECT_ALIGN_BYTES));
        Ok(Self {
            file,
            buffer,
            start,
            at: 0,
            touched: vec![false; to_usize(DIRECT_WRITE_BYTES / DIRECT_ALIGN_BYTES)],
        })
    }

    fn end(&self) -> u64 {
        self.at + DIRECT_WRITE_BYTES
    }

    /// Copies `bytes` (inside the window) to `offset`.
    fn put(&mut self, offset: u64, bytes: &[u8]) {
        let from = to_usize(offset - self.at);
        self.buffer[self.start + from..self.start + from + bytes.len()].copy_from_slice(bytes);
        let first = from / to_usize(DIRECT_ALIGN_BYTES);
        let last = (from + bytes.len() - 1) / to_usize(DIRECT_ALIGN_BYTES);
        self.touched[first..=last].fill(true);
    }

    /// Writes the touched blocks (each run of them in one request), then moves the
    /// window to the aligned block holding `next`.
    fn flush_and_move(&mut self, next: u64) -> std::io::Result<()> {
        let block = to_usize(DIRECT_ALIGN_BYTES);
        let mut index = 0;
        while index < self.touched.len() {
            if !self.touched[index] {
                index += 1;
                continue;
            }
            let first = index;
            while index < self.touched.len() && self.touched[index] {
                index += 1;
            }
            let bytes = &mut self.buffer[self.start + first * block..self.start + index * block];
            self.file
                .write_all_at(bytes, self.at + (first * block) as u64)?;
            bytes.fill(0);
        }
        self.touched.fill(false);
        self.at = next / DIRECT_ALIGN_BYTES * DIRECT_ALIGN_BYTES;
        Ok(())
    }
}

/// How the bytes of the copy reach the file.
enum Sink {
    Direct(DirectWindow),
    Buffered {
        /// Surviving bytes waiting to be written at `pending_at`.
        pending: Vec<u8>,
        pending_at: u64,
        /// Bytes written since the last `fdatasync`.
        unsynced: u64,
    },
}

/// The copy of one segment being written.
pub(crate) struct Copy {
    /// The handle the store reads through after the swap.
    file: File,
    sink: Sink,
    /// The run of removed records under way (segment offsets).
    run: Option<Range<u64>>,
    path: PathBuf,
}

impl Copy {
    /// Creates `path` (replacing a leftover), sized to `size_bytes` with no block
    /// allocated.
    pub(crate) fn create(path: PathBuf, size_bytes: u64) -> Result<Self> {
        Self::create_with(path, size_bytes, true)
    }

    /// [`Copy::create`], through the page cache unless `direct`.
    fn create_with(path: PathBuf, size_bytes: u64, direct: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|error| Error::io(format!("creating {}", path.display()), error))?;
        file.set_len(size_bytes)
            .map_err(|error| Error::io(format!("sizing {}", path.display()), error))?;
        let sink = match DirectWindow::open(&path).and_then(|window| {
            if direct {
                Ok(window)
            } else {
                Err(std::io::Error::other("not asked for"))
            }
        }) {
            Ok(window) => Sink::Direct(window),
            Err(error) => {
                tracing::debug!(%error, "O_DIRECT unavailable; the scavenge copy goes through the page cache");
                Sink::Buffered {
                    pending: Vec::new(),
                    pending_at: 0,
                    unsynced: 0,
                }
            }
        };
        Ok(Self {
            file,
            sink,
            run: None,
            path,
        })
    }

    fn io(&self, what: &str, error: std::io::Error) -> Error {
        Error::io(format!("{what} {}", self.path.display()), error)
    }

    /// Writes `bytes` at `offset` of the file, where they survive.
    pub(crate) fn keep(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.end_run()?;
        self.write_at(offset, bytes)
    }

    /// Records `range` as removed: it joins the run under way, unless it does not follow
    /// it or an index file's boundary (in `boundaries`, log positions; `base` is the
    /// segment's) falls between them.
    pub(crate) fn remove(
        &mut self,
        range: Range<u64>,
        boundaries: &[u64],
        base: u64,
    ) -> Result<()> {
        let splits = self.run.as_ref().is_some_and(|run| {
            run.end == range.start && boundaries.binary_search(&(base + range.start)).is_ok()
        });
        if splits {
            self.end_run()?;
        }
        match &mut self.run {
            Some(run) if run.end == range.start => run.end = range.end,
            _ => {
                self.end_run()?;
                self.run = Some(range);
            }
        }
        Ok(())
    }

    /// Writes the skip frame of the run under way, if any.
    pub(crate) fn end_run(&mut self) -> Result<()> {
        if let Some(run) = self.run.take() {
            let len = to_usize(run.end - run.start);
            self.write_at(run.start, &encode_skip_head(len))?;
            self.write_at(run.end - 4, &encode_skip_trailer(len))?;
        }
        Ok(())
    }

    /// Writes zeros over `range` (allocating its blocks, as a new segment's zero-fill does).
    pub(crate) fn zeros(&mut self, range: Range<u64>) -> Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        self.end_run()?;
        let mut offset = range.start;
        while offset < range.end {
            let len = to_usize((range.end - offset).min(ZEROS.len() as u64));
            self.write_at(offset, &ZEROS[..len])?;
            offset += len as u64;
        }
        Ok(())
    }

    fn write_at(&mut self, mut offset: u64, mut bytes: &[u8]) -> Result<()> {
        let result = match &mut self.sink {
            Sink::Direct(window) => loop {
                if bytes.is_empty() {
                    break Ok(());
                }
                let end = offset + bytes.len() as u64;
                if offset < window.at {
                    // Not expected (writes come in ascending offsets: frames, then each
                    // skip frame's head and trailer once its run ends), but correct: the
                    // block is on disk already, so through the page cache; the final sync
                    // writes it.
                    let behind = to_usize(end.min(window.at) - offset);
                    if let Err(error) = self.file.write_all_at(&bytes[..behind], offset) {
                        break Err(error);
                    }
                    offset += behind as u64;
                    bytes = &bytes[behind..];
                } else if offset >= window.end() {
                    if let Err(error) = window.flush_and_move(offset) {
                        break Err(error);
                    }
                } else {
                    let inside = to_usize(end.min(window.end()) - offset);
                    window.put(offset, &bytes[..inside]);
                    offset += inside as u64;
                    bytes = &bytes[inside..];
                }
            },
            Sink::Buffered {
                pending,
                pending_at,
                unsynced,
            } => {
                let mut written = Ok(());
                if *pending_at + pending.len() as u64 != offset
                    || pending.len() >= BUFFERED_WRITE_BYTES
                {
                    written = write_pending(&self.file, pending, *pending_at, unsynced);
                    *pending_at = offset;
                }
                pending.extend_from_slice(bytes);
                written
            }
        };
        result.map_err(|error| self.io("writing", error))
    }

    /// Ends the run under way, writes everything, syncs the file (data and size) and
    /// returns it: ready to be renamed over the segment.
    pub(crate) fn finish(mut self) -> Result<File> {
        self.end_run()?;
        let written = match &mut self.sink {
            Sink::Direct(window) => window.flush_and_move(window.end()),
            Sink::Buffered {
                pending,
                pending_at,
                unsynced,
            } => write_pending(&self.file, pending, *pending_at, unsynced),
        };
        written.map_err(|error| self.io("writing", error))?;
        self.file
            .sync_all()
            .map_err(|error| self.io("syncing", error))?;
        Ok(self.file)
    }
}

/// Writes `pending` at `pending_at` through the page cache, and syncs the file's data
/// every [`BUFFERED_SYNC_BYTES`] so that dirty pages never pile up.
fn write_pending(
    file: &File,
    pending: &mut Vec<u8>,
    pending_at: u64,
    unsynced: &mut u64,
) -> std::io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    file.write_all_at(pending, pending_at)?;
    *unsynced += pending.len() as u64;
    pending.clear();
    if *unsynced >= BUFFERED_SYNC_BYTES {
        file.sync_data()?;
        *unsynced = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    const SIZE_BYTES: u64 = 4 << 20;

    /// Surviving frames, runs longer than the direct window (left as holes), one split at
    /// an index boundary, a short run, and zeros to the end.
    fn write(copy: &mut Copy, image: &mut [u8]) {
        let mut keep = |copy: &mut Copy, offset: u64, len: usize, byte: u8| {
            let bytes = vec![byte; len];
            copy.keep(offset, &bytes).unwrap();
            image[to_usize(offset)..to_usize(offset) + len].copy_from_slice(&bytes);
        };
        keep(copy, 0, 64, 0xAA);
        keep(copy, 64, 1_000, 0x11);
        let boundaries = [1 << 30, (1 << 30) + 301_064];
        copy.remove(1_064..301_064, &boundaries, 1 << 30).unwrap();
        copy.remove(301_064..601_064, &boundaries, 1 << 30).unwrap();
        keep(copy, 601_064, 3_000, 0x22);
        copy.remove(604_064..604_100, &boundaries, 1 << 30).unwrap();
        keep(copy, 604_100, 200_000, 0x33);
        copy.zeros(2 << 20..SIZE_BYTES).unwrap();
    }

    fn expected_image() -> Vec<u8> {
        let mut image = vec![0u8; to_usize(SIZE_BYTES)];
        for run in [1_064..301_064u64, 301_064..601_064, 604_064..604_100] {
            let len = to_usize(run.end - run.start);
            let head = encode_skip_head(len);
            let trailer = encode_skip_trailer(len);
            let start = to_usize(run.start);
            let end = to_usize(run.end);
            image[start..start + head.len()].copy_from_slice(&head);
            image[end - trailer.len()..end].copy_from_slice(&trailer);
        }
        image
    }

    #[test]
    fn direct_and_buffered_copies_hold_the_same_bytes_with_holes_over_long_runs() {
        let dir = tempfile::tempdir().unwrap();
        for direct in [true, false] {
            let path = dir.path().join(format!("copy-{direct}"));
            let mut copy = Copy::create_with(path.clone(), SIZE_BYTES, direct).unwrap();
            let mut image = expected_image();
            write(&mut copy, &mut image);
            let file = copy.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), image, "direct: {direct}");
            // The zeros are allocated, most of the two long runs are not.
            let allocated_bytes = file.metadata().unwrap().blocks() * 512;
            assert!(
                (2 << 20..SIZE_BYTES - 500_000).contains(&allocated_bytes),
                "direct: {direct}: {allocated_bytes} bytes allocated"
            );
        }
    }
}
