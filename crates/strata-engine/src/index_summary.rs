//! Index file summaries: what an open whose index memory holds only the tail
//! (`Config::index_memory_tail_only`) needs of an index file the sorted runs cover — the
//! events and streams it counts, the newest position, the user streams' tombstones and each
//! secondary key's number of positions — in a small file of its own (`index-summaries/<sequence>.sum`), so
//! that the open reads that instead of the index file itself.
//!
//! A summary is trusted only when it is complete and its CRC32C holds, and when it names
//! the index file it describes: that file's length, its own trailing CRC32C and its header
//! (version, flags, coverage) must be what the summary recorded. Otherwise the open reads
//! the index file through as before and writes the summary again. So a summary needs no
//! sync: a torn or stale one is never believed. The byte layout is in
//! docs/ON_DISK_FORMAT.md ("Index file summaries").

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::index::Index;
use crate::secondary::Kind;

const SUMMARY_MAGIC: &[u8; 8] = b"STRATSUM";
const SUMMARY_VERSION: u32 = 1;
/// An index file's header: magic, version, flags, covers_from, covers_to, stream count.
const INDEX_HEADER_BYTES: usize = 40;
/// Magic, version, reserved, the index file's length, CRC32C, version, flags, reserved,
/// coverage, streams started, events, newest position.
const SUMMARY_FIXED_BYTES: usize = 80;
/// A summary larger than this is not read (the index file is read instead).
const SUMMARY_BYTES_MAX: u64 = 1 << 30;

/// What an index file adds to the counts of an index whose memory holds only the tail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileSummary {
    /// The index file's length and its trailing CRC32C (of everything before it).
    pub index_file_bytes: u64,
    pub index_file_crc: u32,
    /// The index file's header: version, flags, coverage.
    pub index_version: u32,
    pub index_flags: u32,
    pub covers_from: u64,
    pub covers_to: u64,
    /// Stream records whose first revision is 0 and that hold a position.
    pub streams_started: u64,
    /// Positions of all stream records, plus one per tombstone.
    pub events: u64,
    /// The newest position or tombstone of a stream record.
    pub newest_position: Option<u64>,
    /// The tombstones of user streams: position, stream.
    pub tombstones: Vec<(u64, String)>,
    /// Each secondary key's number of positions in the file.
    pub postings: Vec<(Kind, String, u64)>,
}

impl FileSummary {
    /// Adds the summary to `index`'s counts, and its category and event-type names to
    /// the catalog. The secondary keys' counts are not kept: the runs say them when a
    /// read needs them.
    pub(crate) fn apply(&self, index: &mut Index) {
        for (kind, name, _) in &self.postings {
            index.secondary.note_name(*kind, name);
        }
        index.count_in_runs(
            self.streams_started,
            self.events,
            self.newest_position,
            &self.tombstones,
        );
    }

    fn to_bytes(&self) -> Vec<u8> {
        let names: usize = self
            .tombstones
            .iter()
            .map(|(_, name)| 10 + name.len())
            .sum();
        let keys: usize = self
            .postings
            .iter()
            .map(|(_, name, _)| 11 + name.len())
            .sum();
        let mut bytes = Vec::with_capacity(SUMMARY_FIXED_BYTES + 20 + names + keys);
        bytes.extend_from_slice(SUMMARY_MAGIC);
        bytes.extend_from_slice(&SUMMARY_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&self.index_file_bytes.to_le_bytes());
        bytes.extend_from_slice(&self.index_file_crc.to_le_bytes());
        bytes.extend_from_slice(&self.index_version.to_le_bytes());
        bytes.extend_from_slice(&self.index_flags.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&self.covers_from.to_le_bytes());
        bytes.extend_from_slice(&self.covers_to.to_le_bytes());
        bytes.extend_from_slice(&self.streams_started.to_le_bytes());
        bytes.extend_from_slice(&self.events.to_le_bytes());
        // Positions are at least 64: 0 stands for none.
        bytes.extend_from_slice(&self.newest_position.unwrap_or(0).to_le_bytes());
        bytes.extend_from_slice(&(self.tombstones.len() as u64).to_le_bytes());
        for (position, name) in &self.tombstones {
            bytes.extend_from_slice(&position.to_le_bytes());
            push_name(&mut bytes, name);
        }
        bytes.extend_from_slice(&(self.postings.len() as u64).to_le_bytes());
        for (kind, name, count) in &self.postings {
            bytes.push(*kind as u8);
            push_name(&mut bytes, name);
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parses a summary; its secondary keys' counts are checked, and kept only when
    /// `keep_postings` (an open needs none of them).
    fn from_bytes(bytes: &[u8], keep_postings: bool) -> Option<FileSummary> {
        if bytes.len() < SUMMARY_FIXED_BYTES + 20 || &bytes[0..8] != SUMMARY_MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if u32::from_le_bytes(crc.try_into().ok()?) != crc32c::crc32c(body) {
            return None;
        }
        let mut cursor = Reader { bytes: body, at: 8 };
        if cursor.u32()? != SUMMARY_VERSION {
            return None;
        }
        cursor.u32()?;
        let mut summary = FileSummary {
            index_file_bytes: cursor.u64()?,
            index_file_crc: cursor.u32()?,
            index_version: cursor.u32()?,
            index_flags: cursor.u32()?,
            ..FileSummary::default()
        };
        cursor.u32()?;
        summary.covers_from = cursor.u64()?;
        summary.covers_to = cursor.u64()?;
        summary.streams_started = cursor.u64()?;
        summary.events = cursor.u64()?;
        summary.newest_position = Some(cursor.u64()?).filter(|&position| position != 0);
        for _ in 0..cursor.u64()? {
            let position = cursor.u64()?;
            summary.tombstones.push((position, cursor.name()?));
        }
        for _ in 0..cursor.u64()? {
            let kind = Kind::from_byte(cursor.take(1)?[0])?;
            // An open keeps the category and event-type names for the catalog.
            if keep_postings || matches!(kind, Kind::Category | Kind::EventType) {
                let name = cursor.name()?;
                summary.postings.push((kind, name, cursor.u64()?));
            } else {
                cursor.skip_name()?;
                cursor.u64()?;
            }
        }
        (cursor.at == body.len()).then_some(summary)
    }
}

fn push_name(bytes: &mut Vec<u8>, name: &str) {
    let name = name.as_bytes();
    bytes.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
    bytes.extend_from_slice(name);
}

/// The summary's path: `<data dir>/index-summaries/<sequence>.sum` for
/// `<data dir>/index/<sequence>.idx` (a directory of their own, as the runs', so that
/// `index/` stays a flat list of index files for the tools and tests that read it so).
pub(crate) fn summary_path(index_file: &Path) -> PathBuf {
    let name = Path::new(index_file.file_name().unwrap_or_default()).with_extension("sum");
    let data_dir = index_file
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new(""));
    data_dir.join(SUMMARIES_DIR).join(name)
}

/// The directory of the summaries, beside `index/`.
const SUMMARIES_DIR: &str = "index-summaries";

/// Writes the summary of an index file (temporary name, then rename; not
/// synced: a torn or stale summary fails its checks and is never believed).
pub(crate) fn write_summary(index_file: &Path, summary: &FileSummary) -> std::io::Result<()> {
    let path = summary_path(index_file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("sum.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&summary.to_bytes())?;
    drop(file);
    std::fs::rename(&temporary, &path)
}

/// Removes an index file's summary, if any.
pub(crate) fn remove_summary(index_file: &Path) {
    let _ = std::fs::remove_file(summary_path(index_file));
}

/// The summary of `index_file`, when it is intact and describes that file as it is
/// now (length, trailing checksum, header). Reads the summary, the index file's header and
/// its last 4 bytes, nothing else of it.
pub(crate) fn read_summary(index_file: &Path) -> Option<FileSummary> {
    read_summary_keeping(index_file, true)
}

/// As [`read_summary`], with only the category and event-type keys (what an open needs:
/// their names fill the catalog).
pub(crate) fn read_summary_counts(index_file: &Path) -> Option<FileSummary> {
    read_summary_keeping(index_file, false)
}

fn read_summary_keeping(index_file: &Path, keep_postings: bool) -> Option<FileSummary> {
    let path = summary_path(index_file);
    let length = std::fs::metadata(&path).ok()?.len();
    if length > SUMMARY_BYTES_MAX {
        return None;
    }
    let summary = FileSummary::from_bytes(&std::fs::read(&path).ok()?, keep_postings)?;
    let file = File::open(index_file).ok()?;
    let file_bytes = file.metadata().ok()?.len();
    if file_bytes != summary.index_file_bytes || file_bytes < INDEX_HEADER_BYTES as u64 + 4 {
        return None;
    }
    let mut header = [0u8; INDEX_HEADER_BYTES];
    file.read_exact_at(&mut header, 0).ok()?;
    let mut crc = [0u8; 4];
    file.read_exact_at(&mut crc, file_bytes - 4).ok()?;
    let matches = u32::from_le_bytes(crc) == summary.index_file_crc
        && header[0..8] == *b"STRATIDX"
        && header[8..12] == summary.index_version.to_le_bytes()
        && header[12..16] == summary.index_flags.to_le_bytes()
        && header[16..24] == summary.covers_from.to_le_bytes()
        && header[24..32] == summary.covers_to.to_le_bytes();
    matches.then_some(summary)
}

/// The counts the summary of `index_file` recorded, whether or not the file is still
/// what it describes (a file whose body, header or trailer was damaged since, or that is
/// gone): the summary's own checksum vouches for what the file held when whole.
pub(crate) fn read_recorded_summary_counts(index_file: &Path) -> Option<FileSummary> {
    let path = summary_path(index_file);
    if std::fs::metadata(&path).ok()?.len() > SUMMARY_BYTES_MAX {
        return None;
    }
    FileSummary::from_bytes(&std::fs::read(&path).ok()?, false)
}

/// The range the summary of `index_file` says that file covers ([`read_recorded_summary_counts`]).
pub(crate) fn recorded_coverage(index_file: &Path) -> Option<(u64, u64)> {
    read_recorded_summary_counts(index_file).map(|summary| (summary.covers_from, summary.covers_to))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(length)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn skip_name(&mut self) -> Option<()> {
        let length = usize::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?));
        std::str::from_utf8(self.take(length)?).ok()?;
        Some(())
    }

    fn name(&mut self) -> Option<String> {
        let length = usize::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?));
        Some(std::str::from_utf8(self.take(length)?).ok()?.to_owned())
    }
}
