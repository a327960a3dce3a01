//! Index files: each saves the index changes of one contiguous range of the log, so that
//! opening a store loads them and replays only the log after the last one.
//!
//! Layout (little-endian), in `index/<sequence>.idx`:
//! `"STRATIDX"`, u32 version (3), u32 reserved, u64 covers_from, u64 covers_to, u64 stream
//! count; per stream: u16 name length, name, u8 flags (bit 0 tombstone, bit 1 metadata),
//! 7 reserved bytes, u64 tombstone position, u64 first revision, u64 position count,
//! u64 × count positions, and when bit 1 is set u32 metadata length and the stream's parsed
//! metadata as JSON; then u64 postings count; per postings (a secondary index key): u8 kind
//! (1 category, 2 event type, 3 correlation id, 4 stream starts, 5 category streams), u16
//! key length, key, u64 position count, u64 × count positions (ascending); then a u32
//! CRC32C of everything before it. Files of versions 1 and 2 (no postings) are intact but
//! do not fill the secondary indexes: the index is rebuilt from the log once.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{Error, Result, StreamMetadata, StreamName};

use crate::index::{Index, UnsavedStream};
use crate::index_summary::{FileSummary, read_summary_counts, remove_summary, write_summary};
use crate::run_file::{KIND_STREAM, RunEntry};
use crate::secondary::{Kind, UnsavedPostings};
use crate::segments::sync_dir;

const INDEX_MAGIC: &[u8; 8] = b"STRATIDX";
/// Version written: 2 added each changed stream's parsed metadata, 3 the postings of the
/// secondary indexes.
const INDEX_VERSION: u32 = 3;
/// The oldest version whose header (magic, checksum, coverage) is still understood.
const INDEX_VERSION_OLDEST: u32 = 1;
/// Header flag (the word after the version): the file holds the secondary indexes' postings.
const HEADER_FLAG_SECONDARY: u32 = 1;
/// Header flag: the secondary postings include the rest key (`Kind::Rest`). A file that
/// keeps the secondary indexes without it is unusable: the open rebuilds from the log.
const HEADER_FLAG_REST: u32 = 2;
const FLAG_TOMBSTONE: u8 = 1;
const FLAG_METADATA: u8 = 2;
/// Magic, version, reserved, covers_from, covers_to, stream count.
const HEADER_BYTES: usize = 40;
/// Least bytes one stream record takes (an empty name, no positions).
pub(crate) const STREAM_RECORD_BYTES_MIN: u64 = 34;

pub(crate) fn index_file_name(sequence: u64) -> String {
    format!("{sequence:010}.idx")
}

/// The index files in `index_dir`, by ascending sequence.
pub(crate) fn list_index_files(index_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(index_dir)
        .map_err(|error| Error::io(format!("listing {}", index_dir.display()), error))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("listing index files", error))?;
        let name = entry.file_name();
        let sequence = name
            .to_str()
            .and_then(|name| name.strip_suffix(".idx"))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(sequence) = sequence {
            files.push((sequence, entry.path()));
        }
    }
    files.sort_unstable();
    Ok(files)
}

/// Writes the changes covering log range `[covers_from, covers_to)` as index file `sequence`,
/// durably (temporary file, fsync, rename, directory fsync).
pub(crate) fn write_index_file(
    index_dir: &Path,
    sequence: u64,
    covers_from: u64,
    covers_to: u64,
    streams: &[UnsavedStream],
    postings: &[UnsavedPostings],
    secondary_kept: bool,
) -> Result<()> {
    // Sized once: the file is built whole in memory, then written.
    let capacity = 64
        + streams
            .iter()
            .map(|stream| 64 + stream.stream.as_str().len() + stream.positions.len() * 8)
            .sum::<usize>()
        + postings
            .iter()
            .map(|key| 16 + key.name.len() + key.positions.len() * 8)
            .sum::<usize>();
    let mut bytes = Vec::with_capacity(capacity);
    bytes.extend_from_slice(INDEX_MAGIC);
    bytes.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    let header_flags = if secondary_kept {
        HEADER_FLAG_SECONDARY | HEADER_FLAG_REST
    } else {
        0
    };
    bytes.extend_from_slice(&header_flags.to_le_bytes());
    bytes.extend_from_slice(&covers_from.to_le_bytes());
    bytes.extend_from_slice(&covers_to.to_le_bytes());
    bytes.extend_from_slice(&(streams.len() as u64).to_le_bytes());
    for stream in streams {
        let name = stream.stream.as_str().as_bytes();
        bytes.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
        bytes.extend_from_slice(name);
        let mut flags = 0;
        if stream.tombstone_position.is_some() {
            flags |= FLAG_TOMBSTONE;
        }
        if stream.metadata.is_some() {
            flags |= FLAG_METADATA;
        }
        bytes.push(flags);
        bytes.extend_from_slice(&[0u8; 7]);
        bytes.extend_from_slice(&stream.tombstone_position.unwrap_or(0).to_le_bytes());
        bytes.extend_from_slice(&stream.first_revision.to_le_bytes());
        bytes.extend_from_slice(&(stream.positions.len() as u64).to_le_bytes());
        extend_positions(&mut bytes, &stream.positions);
        if let Some(metadata) = &stream.metadata {
            let json = metadata.to_json();
            bytes.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
            bytes.extend_from_slice(&json);
        }
    }
    bytes.extend_from_slice(&(postings.len() as u64).to_le_bytes());
    for key in postings {
        bytes.push(key.kind as u8);
        let name = key.name.as_bytes();
        bytes.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&(key.positions.len() as u64).to_le_bytes());
        extend_positions(&mut bytes, &key.positions);
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());

    let final_path = index_dir.join(index_file_name(sequence));
    let temporary_path = final_path.with_extension("idx.tmp");
    let context = || format!("writing index file {}", final_path.display());
    let mut file = File::create(&temporary_path).map_err(|error| Error::io(context(), error))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| Error::io(context(), error))?;
    std::fs::rename(&temporary_path, &final_path).map_err(|error| Error::io(context(), error))?;
    // The summary a tail-only open reads instead of the file (counted from the bytes
    // written, as an open reading them through would count them).
    match summarize(&bytes) {
        Ok(summary) => {
            if let Err(error) = write_summary(&final_path, &summary) {
                tracing::warn!(%error, file = %final_path.display(), "cannot write an index file's summary");
            }
        }
        Err(reason) => {
            remove_summary(&final_path);
            tracing::warn!(%reason, file = %final_path.display(), "cannot summarize an index file");
        }
    }
    sync_dir(index_dir)
}

/// Appends positions as u64 little-endian, encoded in place.
fn extend_positions(bytes: &mut Vec<u8>, positions: &[u64]) {
    let start = bytes.len();
    bytes.resize(start + positions.len() * 8, 0);
    for (word, position) in bytes[start..].chunks_exact_mut(8).zip(positions) {
        word.copy_from_slice(&position.to_le_bytes());
    }
}

/// The log range an index file covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Coverage {
    pub covers_from: u64,
    pub covers_to: u64,
}

/// Why an index file cannot be used; `coverage` is what its header claims when the file
/// is intact (its checksum holds) but does not fit after the files before it.
#[derive(Debug)]
pub(crate) struct Unusable {
    pub reason: String,
    pub coverage: Option<Coverage>,
}

impl From<String> for Unusable {
    fn from(reason: String) -> Self {
        Self {
            reason,
            coverage: None,
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Reads an index file into `index`. Returns the range it covers, or why it is unusable.
/// On error `index` may hold part of the file: callers rebuild from the log then.
pub(crate) fn load_index_file(path: &Path, index: &mut Index) -> Result<Coverage, Unusable> {
    load_index_file_after_runs(path, index, 0)
}

/// As [`load_index_file`], but a file ending at or before `runs_to` (the sorted runs
/// hold what it says) is checked and counted, not loaded, and its summary written (the
/// next open reads that instead: [`crate::index_summary`]).
pub(crate) fn load_index_file_after_runs(
    path: &Path,
    index: &mut Index,
    runs_to: u64,
) -> Result<Coverage, Unusable> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot be read: {error}"))?;
    let (body, version, coverage) = check_index_bytes(&bytes)?;
    let unusable = |reason: String| Unusable {
        reason,
        coverage: Some(coverage),
    };
    check_usable(version, header_flags(body), index).map_err(unusable)?;
    if coverage.covers_to <= runs_to {
        let summary = summarize(&bytes).map_err(unusable)?;
        summary.apply(index);
        if let Err(error) = write_summary(path, &summary) {
            tracing::warn!(%error, file = %path.display(), "cannot write an index file's summary");
        }
        return Ok(coverage);
    }
    let mut cursor = Cursor {
        bytes: body,
        at: HEADER_BYTES - 8,
    };
    let stream_count = cursor.u64().map_err(unusable)?;
    index.reserve_streams(
        usize::try_from(stream_count)
            .unwrap_or(0)
            .min(body.len() / STREAM_RECORD_BYTES_MIN as usize),
    );
    for _ in 0..stream_count {
        load_stream_record(&mut cursor, index).map_err(unusable)?;
    }
    let postings_count = cursor.u64().map_err(unusable)?;
    for _ in 0..postings_count {
        load_postings(&mut cursor, index).map_err(unusable)?;
    }
    if cursor.at != body.len() {
        return Err(unusable("holds bytes after its contents".into()));
    }
    Ok(coverage)
}

/// Counts an index file the runs cover from its summary alone, when the summary is
/// intact, describes the file as it is, and the file could be counted (its version and
/// flags fit `index`). `None`: read the file through instead.
pub(crate) fn count_from_summary(path: &Path, index: &mut Index, runs_to: u64) -> Option<Coverage> {
    let summary = read_summary_counts(path)?;
    if summary.covers_to > runs_to
        || check_usable(summary.index_version, summary.index_flags, index).is_err()
    {
        return None;
    }
    Some(counted(&summary, index))
}

/// Counts what `summary` says into `index`; returns its range.
fn counted(summary: &FileSummary, index: &mut Index) -> Coverage {
    summary.apply(index);
    Coverage {
        covers_from: summary.covers_from,
        covers_to: summary.covers_to,
    }
}

/// Counts an index file the runs cover that is damaged or missing, from what its summary
/// recorded when it was whole, when that summary's own checksum holds, its range starts at
/// `covers_from` and ends by `runs_to`, and its version and flags fit `index`. The runs
/// hold what the file held; the index saver writes the file again from the log
/// (`index_file_mend`). `None`: the open rebuilds the index from the log instead.
pub(crate) fn count_from_recorded_summary(
    path: &Path,
    index: &mut Index,
    covers_from: u64,
    runs_to: u64,
) -> Option<Coverage> {
    let summary = crate::index_summary::read_recorded_summary_counts(path)?;
    if summary.covers_from != covers_from
        || summary.covers_to > runs_to
        || summary.covers_to < summary.covers_from
        || check_usable(summary.index_version, summary.index_flags, index).is_err()
    {
        return None;
    }
    Some(counted(&summary, index))
}

fn header_flags(body: &[u8]) -> u32 {
    u32::from_le_bytes(body[12..16].try_into().unwrap_or([0; 4]))
}

/// Whether a file of `version` with header `flags` can fill `index` (else the open
/// rebuilds the index from the log).
fn check_usable(version: u32, flags: u32, index: &Index) -> Result<(), String> {
    if version < INDEX_VERSION {
        return Err(format!(
            "has version {version}, which holds no secondary indexes"
        ));
    }
    let kept = flags & HEADER_FLAG_SECONDARY != 0;
    if kept != index.secondary.enabled() {
        return Err(format!(
            "was written with the secondary indexes {}",
            if kept { "on" } else { "off" }
        ));
    }
    if kept && flags & HEADER_FLAG_REST == 0 {
        return Err("holds no rest key (written before ordinary filters were indexed)".into());
    }
    Ok(())
}

/// What an open holding only the tail counts of an intact index file (`bytes`, its
/// trailing checksum included): the same checks of each record as a load, nothing kept.
pub(crate) fn summarize(bytes: &[u8]) -> Result<FileSummary, String> {
    let (body, version, coverage) = check_index_bytes(bytes)?;
    let mut summary = FileSummary {
        index_file_bytes: bytes.len() as u64,
        index_file_crc: u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap_or([0; 4])),
        index_version: version,
        index_flags: header_flags(body),
        covers_from: coverage.covers_from,
        covers_to: coverage.covers_to,
        ..FileSummary::default()
    };
    let mut cursor = Cursor {
        bytes: body,
        at: HEADER_BYTES - 8,
    };
    for _ in 0..cursor.u64()? {
        count_stream_record(&mut cursor, &mut summary)?;
    }
    if version >= INDEX_VERSION {
        for _ in 0..cursor.u64()? {
            let kind_byte = cursor.take(1)?[0];
            let kind = Kind::from_byte(kind_byte)
                .ok_or_else(|| format!("holds a secondary index of unknown kind {kind_byte}"))?;
            let name_len = usize::from(cursor.u16()?);
            let name = std::str::from_utf8(cursor.take(name_len)?)
                .map_err(|_| "holds a secondary index key that is not UTF-8".to_owned())?;
            let count = cursor.skip_positions()?;
            summary.postings.push((kind, name.to_owned(), count));
        }
    }
    if cursor.at != body.len() {
        return Err("holds bytes after its contents".into());
    }
    Ok(summary)
}

/// The fields of a stream record before its positions.
struct StreamRecordHead<'a> {
    name: &'a str,
    flags: u8,
    tombstone_position: u64,
    first_revision: u64,
}

/// Reads a stream record's name, flags (refusing unknown ones), tombstone position and
/// first revision.
fn stream_record_head<'a>(cursor: &mut Cursor<'a>) -> Result<StreamRecordHead<'a>, String> {
    let name_len = usize::from(cursor.u16()?);
    let name = std::str::from_utf8(cursor.take(name_len)?)
        .map_err(|_| "holds a stream name that is not UTF-8".to_owned())?;
    let flags = cursor.take(8)?[0];
    if flags & !(FLAG_TOMBSTONE | FLAG_METADATA) != 0 {
        return Err(format!("holds unknown flags for stream {name}"));
    }
    Ok(StreamRecordHead {
        name,
        flags,
        tombstone_position: cursor.u64()?,
        first_revision: cursor.u64()?,
    })
}

/// Counts one stream record: a user stream's tombstone is kept (the tombstones by
/// position stay whole in memory).
fn count_stream_record(cursor: &mut Cursor<'_>, summary: &mut FileSummary) -> Result<(), String> {
    let StreamRecordHead {
        name,
        flags,
        tombstone_position,
        first_revision,
    } = stream_record_head(cursor)?;
    let count = cursor.u64()?;
    let bytes = usize::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(8))
        .ok_or("has an impossible count")?;
    let positions = cursor.take(bytes)?;
    let last = positions
        .get(positions.len().saturating_sub(8)..)
        .filter(|last| last.len() == 8)
        .map(|last| u64::from_le_bytes(last.try_into().unwrap_or([0; 8])));
    if flags & FLAG_METADATA != 0 {
        let length = cursor.u32()? as usize;
        cursor.take(length)?;
    }
    let tombstone = (flags & FLAG_TOMBSTONE != 0).then_some(tombstone_position);
    if let Some(position) = tombstone
        && !name.starts_with('$')
    {
        summary.tombstones.push((position, name.to_owned()));
    }
    if first_revision == 0 && count > 0 {
        summary.streams_started += 1;
    }
    summary.events += count + u64::from(tombstone.is_some());
    summary.newest_position = summary.newest_position.max(last.max(tombstone));
    Ok(())
}

/// Checks magic, checksum and version; returns the body, the version and the coverage.
fn check_index_bytes(bytes: &[u8]) -> Result<(&[u8], u32, Coverage), String> {
    if bytes.len() < HEADER_BYTES + 4 || &bytes[0..8] != INDEX_MAGIC {
        return Err("does not start with the index magic".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) != crc32c::crc32c(body) {
        return Err("fails its checksum".into());
    }
    let mut cursor = Cursor { bytes: body, at: 8 };
    let version = cursor.u32()?;
    if !(INDEX_VERSION_OLDEST..=INDEX_VERSION).contains(&version) {
        return Err(format!("has unsupported version {version}"));
    }
    cursor.u32()?;
    let coverage = Coverage {
        covers_from: cursor.u64()?,
        covers_to: cursor.u64()?,
    };
    Ok((body, version, coverage))
}

/// The coverage an intact index file claims (checksum and version hold), without loading it.
pub(crate) fn claimed_coverage(path: &Path) -> Option<Coverage> {
    let bytes = std::fs::read(path).ok()?;
    check_index_bytes(&bytes)
        .ok()
        .map(|(_, _, coverage)| coverage)
}

/// Loads one stream record.
fn load_stream_record(cursor: &mut Cursor<'_>, index: &mut Index) -> Result<(), String> {
    let StreamRecordHead {
        name,
        flags,
        tombstone_position,
        first_revision,
    } = stream_record_head(cursor)?;
    let positions = cursor.positions()?;
    let tombstone = (flags & FLAG_TOMBSTONE != 0).then_some(tombstone_position);
    if !index.load_positions(name, first_revision, &positions, tombstone) {
        return Err(format!("does not continue stream {name} where it stands"));
    }
    if flags & FLAG_METADATA != 0 {
        let length = cursor.u32()? as usize;
        let json = cursor.take(length)?;
        let stream = StreamName::from_stored(name);
        let metadata = StreamMetadata::from_json(&stream, json)
            .map_err(|error| format!("holds unreadable metadata for {name}: {error}"))?;
        index.load_metadata(name, Arc::new(metadata));
    }
    Ok(())
}

/// Loads one key's postings.
fn load_postings(cursor: &mut Cursor<'_>, index: &mut Index) -> Result<(), String> {
    let kind_byte = cursor.take(1)?[0];
    let kind = Kind::from_byte(kind_byte)
        .ok_or_else(|| format!("holds a secondary index of unknown kind {kind_byte}"))?;
    let name_len = usize::from(cursor.u16()?);
    let name = std::str::from_utf8(cursor.take(name_len)?)
        .map_err(|_| "holds a secondary index key that is not UTF-8".to_owned())?;
    if !index.secondary.load(kind, name, &cursor.positions()?) {
        return Err(format!(
            "does not continue secondary index {name:?} ({kind:?}) where it stands"
        ));
    }
    Ok(())
}

/// The run entries of an intact index file (`bytes`, its trailing checksum included), as
/// the saver's run of the same range holds them (`run_file::entries_from_unsaved`), in no
/// particular order: each stream record (revisions a scavenge removed left out), and each
/// secondary key's positions from the index revision `counts` gives it (its positions in
/// the files before this one), which is then moved past them.
pub(crate) fn run_entries_of(
    bytes: &[u8],
    counts: &mut std::collections::HashMap<(u8, String), u64>,
) -> Result<(Coverage, Vec<RunEntry>), String> {
    let (body, version, coverage) = check_index_bytes(bytes)?;
    if version < INDEX_VERSION {
        return Err(format!(
            "has version {version}, which holds no secondary indexes"
        ));
    }
    let mut cursor = Cursor {
        bytes: body,
        at: HEADER_BYTES - 8,
    };
    let mut entries = Vec::new();
    for _ in 0..cursor.u64()? {
        let name_len = usize::from(cursor.u16()?);
        let name = cursor.take(name_len)?.to_vec();
        let flags = cursor.take(8)?[0];
        let tombstone_position = cursor.u64()?;
        let first_revision = cursor.u64()?;
        let positions = cursor.positions()?;
        let metadata = if flags & FLAG_METADATA != 0 {
            let length = cursor.u32()? as usize;
            Some(cursor.take(length)?.to_vec())
        } else {
            None
        };
        let live = crate::index::live_positions(&positions);
        entries.push(RunEntry {
            kind: KIND_STREAM,
            key: name,
            first_revision: first_revision + (positions.len() - live.len()) as u64,
            positions: live.to_vec(),
            tombstone: (flags & FLAG_TOMBSTONE != 0).then_some(tombstone_position),
            metadata,
        });
    }
    for _ in 0..cursor.u64()? {
        let kind = cursor.take(1)?[0];
        let name_len = usize::from(cursor.u16()?);
        let name = std::str::from_utf8(cursor.take(name_len)?)
            .map_err(|_| "holds a secondary index key that is not UTF-8".to_owned())?;
        let positions = cursor.positions()?;
        let revision = counts.entry((kind, name.to_owned())).or_insert(0);
        entries.push(RunEntry {
            kind,
            key: name.as_bytes().to_vec(),
            first_revision: *revision,
            positions,
            ..RunEntry::default()
        });
        *revision += entries
            .last()
            .map_or(0, |entry| entry.positions.len() as u64);
    }
    if cursor.at != body.len() {
        return Err("holds bytes after its contents".into());
    }
    Ok((coverage, entries))
}

/// Rewrites an index file as it was written before ordinary filters were indexed (no
/// rest key, no flag saying it holds one), for tests of old stores.
#[cfg(test)]
pub(crate) fn rewrite_without_rest_key(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let (body, _, _) = check_index_bytes(&bytes).unwrap();
    let mut cursor = Cursor {
        bytes: body,
        at: HEADER_BYTES - 8,
    };
    let mut summary = FileSummary::default();
    for _ in 0..cursor.u64().unwrap() {
        count_stream_record(&mut cursor, &mut summary).unwrap();
    }
    let postings_at = cursor.at;
    let mut kept = Vec::new();
    let mut kept_count = 0u64;
    for _ in 0..cursor.u64().unwrap() {
        let record_start = cursor.at;
        let kind = cursor.take(1).unwrap()[0];
        let name_len = usize::from(cursor.u16().unwrap());
        cursor.take(name_len).unwrap();
        cursor.skip_positions().unwrap();
        if kind != Kind::Rest as u8 {
            kept.extend_from_slice(&body[record_start..cursor.at]);
            kept_count += 1;
        }
    }
    let mut out = body[..postings_at].to_vec();
    out.extend_from_slice(&kept_count.to_le_bytes());
    out.extend_from_slice(&kept);
    let flags = header_flags(body) & !HEADER_FLAG_REST;
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(path, out).unwrap();
}

/// Rewrites an index file as version 2 wrote it (no postings), for tests of old stores.
#[cfg(test)]
pub(crate) fn rewrite_as_version_2(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let (body, _, _) = check_index_bytes(&bytes).unwrap();
    let mut out = body.to_vec();
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(path, out).unwrap();
}

/// Whether an index file says it holds the secondary indexes' postings (`None` when its
/// header cannot be read).
pub(crate) fn keeps_secondary_indexes(path: &Path) -> Option<bool> {
    let mut header = [0u8; 16];
    let file = File::open(path).ok()?;
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0).ok()?;
    (&header[0..8] == INDEX_MAGIC).then(|| {
        u32::from_le_bytes(header[12..16].try_into().unwrap_or([0; 4])) & HEADER_FLAG_SECONDARY != 0
    })
}

/// The stream count an index file's header announces (0 when unreadable), for sizing the
/// index before loading.
pub(crate) fn announced_stream_count(path: &Path) -> u64 {
    let mut header = [0u8; 40];
    let read = File::open(path).and_then(|file| {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut header, 0)
    });
    match read {
        Ok(()) if &header[0..8] == INDEX_MAGIC => {
            u64::from_le_bytes(header[32..40].try_into().unwrap_or([0; 8]))
        }
        _ => 0,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| "is shorter than its contents say".to_owned())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }

    /// A u64 count and that many u64 positions.
    /// Steps over a list of positions without decoding it; returns its length.
    fn skip_positions(&mut self) -> Result<u64, String> {
        let count = self.u64()?;
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(8))
            .ok_or("has an impossible count")?;
        self.take(bytes)?;
        Ok(count)
    }

    fn positions(&mut self) -> Result<Vec<u64>, String> {
        let count = usize::try_from(self.u64()?).map_err(|_| "has an impossible count")?;
        let raw = self.take(count.checked_mul(8).ok_or("has an impossible count")?)?;
        Ok(raw
            .chunks_exact(8)
            .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8])))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_file_roundtrips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let stream = strata_core::StreamName::new("order-1").unwrap();
        let unsaved = vec![UnsavedStream {
            stream: stream.clone(),
            first_revision: 0,
            positions: vec![64, 128, 192],
            tombstone_position: Some(256),
            metadata: None,
        }];
        write_index_file(dir.path(), 0, 64, 320, &unsaved, &[], true).unwrap();
        let files = list_index_files(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(announced_stream_count(&files[0].1), 1);
        let mut index = Index::default();
        let coverage = load_index_file(&files[0].1, &mut index).unwrap();
        assert_eq!(
            coverage,
            Coverage {
                covers_from: 64,
                covers_to: 320
            }
        );
        let entry = index.stream(&stream).unwrap();
        assert_eq!(entry.positions, vec![64, 128, 192]);
        assert_eq!(entry.tombstone_position, Some(256));

        let mut bytes = std::fs::read(&files[0].1).unwrap();
        bytes[50] ^= 1;
        std::fs::write(&files[0].1, &bytes).unwrap();
        let damaged = load_index_file(&files[0].1, &mut Index::default());
        assert!(damaged.is_err_and(|unusable| unusable.coverage.is_none()));
        assert_eq!(claimed_coverage(&files[0].1), None);
    }

    #[test]
    fn metadata_is_saved_and_loaded_without_reading_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let described = StreamName::new("order-1").unwrap();
        let metadata = StreamMetadata {
            max_count: Some(3),
            truncate_before: Some(2),
            ..StreamMetadata::default()
        };
        let unsaved = vec![
            UnsavedStream {
                stream: described.metadata_stream(),
                first_revision: 0,
                positions: vec![64],
                tombstone_position: None,
                metadata: None,
            },
            UnsavedStream {
                stream: described.clone(),
                first_revision: 0,
                positions: Vec::new(),
                tombstone_position: None,
                metadata: Some(Arc::new(metadata.clone())),
            },
        ];
        write_index_file(dir.path(), 0, 64, 200, &unsaved, &[], true).unwrap();
        let mut index = Index::default();
        let path = &list_index_files(dir.path()).unwrap()[0].1;
        load_index_file(path, &mut index).unwrap();
        assert_eq!(
            index.stream(&described).unwrap().metadata.as_deref(),
            Some(&metadata)
        );
        assert!(index.take_unsaved().is_empty(), "loaded metadata is saved");
    }

    #[test]
    fn postings_roundtrip_and_files_without_them_are_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let postings = vec![
            UnsavedPostings {
                kind: Kind::Category,
                name: Arc::from("order"),
                first_revision: Some(0),
                positions: vec![64, 192],
            },
            UnsavedPostings {
                kind: Kind::StreamStarts,
                name: Arc::from(""),
                first_revision: Some(0),
                positions: vec![64],
            },
        ];
        write_index_file(dir.path(), 0, 64, 320, &[], &postings, true).unwrap();
        let path = &list_index_files(dir.path()).unwrap()[0].1;
        let mut index = Index::default();
        load_index_file(path, &mut index).unwrap();
        let category = strata_core::system_streams::IndexKey::Category("order".into());
        assert_eq!(
            index.secondary.get(&category).unwrap().positions,
            vec![64, 192]
        );

        rewrite_as_version_2(path);
        let old = load_index_file(path, &mut Index::default()).unwrap_err();
        assert_eq!(
            old.coverage,
            Some(Coverage {
                covers_from: 64,
                covers_to: 320
            }),
            "an old file is intact: its coverage is still a claim on the log"
        );
    }
}
