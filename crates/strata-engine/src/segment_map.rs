//! Read-only memory maps of whole segment files, for reads of events at known positions:
//! a sparse read (one event type in a hundred, a category) then costs no system call per
//! event. A `pread` costs about 0.8 µs in this VM before it copies a byte, several times
//! what decoding the event costs.
//!
//! Only a file exactly as long as the segment size is mapped; a shorter (truncated) one is
//! read with `pread`, which reads zeros past its end. Scans read with `pread` too: they
//! read large chunks, where a system call is cheap beside the bytes.
//!
//! # What a map risks, and why it is taken
//! Touching a mapped page that has no backing raises `SIGBUS` instead of returning an
//! error. That happens when
//! - the file shrinks below the page: Strata never shrinks a segment (a scavenge writes a
//!   new file and renames it over the old one, whose map keeps the old inode alive; repair
//!   drops whole segments and only ever extends short ones), so only another program
//!   truncating a live store's segment could, and that store is corrupt already;
//! - the disk fails to read the page (`EIO`): the process dies where a `pread` would have
//!   failed the one read. A disk that fails reads has lost data either way; the cost is a
//!   stopped process instead of one failed read.
//!
//! Pages a read touches through a map count in the process's resident set (`RssFile` in
//! `/proc/self/status`): they are the page cache's, shared and reclaimable, but `VmRSS`
//! grows with the log read; the engine's own memory is `RssAnon`.
//!
//! Bytes seen through a map are those a `pread` returns: the map shares the page cache, so
//! it sees every write made with `pwrite`, including the active segment's, and a read only
//! asks for positions below the durable end, written before that end moved. Every frame
//! read through a map is checked against its checksum as before, and copied out, so no
//! event outlives the map. With fault injection on (tests), segments are never mapped, so
//! the injected read faults reach every read.

use std::fs::File;

use memmap2::{Mmap, MmapOptions};

/// One segment file mapped read-only, whole.
pub(crate) struct SegmentMap(Mmap);

impl SegmentMap {
    /// Maps `file` when it is `size_bytes` long; `None` when it is not, or when the map fails
    /// (then reads use `pread`).
    pub(crate) fn of(file: &File, size_bytes: u64) -> Option<Self> {
        let length_bytes = file.metadata().ok()?.len();
        if length_bytes != size_bytes {
            return None;
        }
        let length = usize::try_from(size_bytes).ok()?;
        // SAFETY: the map is read-only and never handed out beyond `&[u8]` borrows of
        // `self`. Its bytes may change under it only by Strata's own `pwrite`s past the
        // durable end: a read's probe span may reach into those bytes, but no frame is
        // taken from them (each frame read lies below the end and is checked against its
        // checksum), so what they hold at that moment never reaches an answer. The file is
        // never shrunk by Strata (module notes: what a shrink by another program costs).
        #[expect(unsafe_code, reason = "a memory map of a file is unsafe to make")]
        let map = unsafe { MmapOptions::new().len(length).map(file) };
        match map {
            Ok(map) => Some(Self(map)),
            Err(error) => {
                tracing::debug!(%error, "mapping a segment failed; reading it with pread");
                None
            }
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}
