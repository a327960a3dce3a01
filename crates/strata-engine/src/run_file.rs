//! Sorted runs: immutable index files read in place, so that the index's resident memory
//! does not grow with the log (issue 13, item 1).
//!
//! A run maps keys — a stream name (kind 0) or a secondary index key (kinds 1–6, as in
//! [`crate::secondary::Kind`]) — to a slice of their positions, starting at a revision,
//! with a stream's tombstone position and parsed metadata. Keys are sorted by a fixed
//! 64-bit hash (FNV-1a over the kind byte and the key), then kind, then key bytes. A run
//! is looked up with `pread`, never loaded: only every [`FENCE_STRIDE`]-th key's hash
//! (the fence pointers) is held in memory, 8 bytes per 128 keys. A lookup is a binary
//! search of the fences, one read of a directory slice (at most 128 × 16 bytes), a binary
//! search there and one read of the record. The byte layout is in docs/ON_DISK_FORMAT.md
//! ("Sorted runs").
//!
//! Every block carries its own CRC32C: each directory block (128 entries), each record's
//! head (header, key, metadata) and each chunk of 512 positions, checked on every read;
//! the header, fences, key filter and trailer share one, checked by [`Run::open`], which
//! reads only them, so opening does not grow with the run's records. The key filter
//! (`run_filter`, version 3) answers most lookups of keys the run does not hold without a
//! read. A mismatch is an error, never
//! an answer: the run removes its file ([`Run::discard`]) so that the next open rebuilds
//! it from the log. Runs are written under a temporary name, synced, then renamed: a crash
//! leaves either the whole run or a `.tmp` file that is never read (and removed).
//!
//! Merging ([`merge_runs`]) streams two adjacent runs (the older covering the log up to
//! where the newer starts) into one, key by key, without holding either in memory; a
//! stream's positions from the newer run must continue where the older run's end.
//!
//! The store writes a run beside each index file (`index_saver`), merges them in the
//! background, and checks and rebuilds them at open; when the index keeps only its tail
//! in memory, the stream lookups (`index_lookup`) and the secondary postings
//! (`postings_lookup`) read them. A run a read finds damaged is rebuilt in its place
//! while the store serves (`Run::replacement`, `run_heal`). A few helpers are used by
//! tests only, hence the `dead_code` allowance outside tests.
#![cfg_attr(not(test), allow(dead_code))]

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strata_core::{Error, Result};

use crate::run_filter::{FILTER_HEADER_BYTES, KeyFilter};
use crate::run_record::{RecordBytes, encode_entry};

#[cfg(test)]
pub(crate) use crate::run_set::KeyHead;
pub(crate) use crate::run_set::{RunCheck, RunSet, merge_runs, open_runs, run_file_name};

pub(crate) const RUN_MAGIC: &[u8; 8] = b"STRATRUN";
/// Version 1 had one checksum over the whole file; its runs are rebuilt. Version 3 added
/// the key filter (`run_filter`); runs of version 2 are still read, without one.
pub(crate) const RUN_VERSION: u32 = 3;
const RUN_VERSION_WITHOUT_FILTER: u32 = 2;
/// Magic, version, reserved.
pub(crate) const RUN_HEADER_BYTES: u64 = 16;
/// covers_from, covers_to, key count, position count, directory offset, fences offset,
/// version, reserved, magic, reserved, CRC32C.
pub(crate) const RUN_TRAILER_BYTES: u64 = 72;
/// A CRC32C, written after the bytes it covers.
pub(crate) const CHECKSUM_BYTES: usize = 4;
/// Positions per checksummed chunk of a record's positions.
pub(crate) const POSITIONS_PER_CHUNK: u64 = 512;
/// kind, flags, key length, metadata length, first revision, position count, tombstone.
pub(crate) const RECORD_HEADER_BYTES: usize = 32;
/// One directory entry: the key's hash and its record's offset.
pub(crate) const DIRECTORY_ENTRY_BYTES: usize = 16;
/// Directory entries per checksummed directory block; the hash of each block's first
/// entry is kept in memory (the fences).
pub(crate) const FENCE_STRIDE: usize = 128;
/// Record flag: the stream has a tombstone (its position is in the record header).
pub(crate) const FLAG_TOMBSTONE: u8 = 1;
/// Record flag: the record carries the stream's parsed metadata (JSON).
pub(crate) const FLAG_METADATA: u8 = 2;
/// The kind of a stream's key; secondary index kinds are 1 to 7 (7: the rest key).
pub(crate) const KIND_STREAM: u8 = 0;
const KIND_MAX: u8 = 7;
/// Bytes read at once when a record is looked up: most records (header, name, a few
/// positions) fit, so one read answers.
const RECORD_READ_BYTES: usize = 512;

/// The fixed hash keys are sorted by (FNV-1a, 64 bits): the same in every process and
/// build, as it must be for files.
pub(crate) fn key_hash(kind: u8, key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &byte in std::iter::once(&kind).chain(key) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// One key of a run, with all it holds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct RunEntry {
    pub kind: u8,
    pub key: Vec<u8>,
    /// The revision (index revision for secondary keys) of `positions[0]`.
    pub first_revision: u64,
    /// Ascending log positions.
    pub positions: Vec<u64>,
    pub tombstone: Option<u64>,
    /// The stream's parsed metadata as JSON, when this run sets it.
    pub metadata: Option<Vec<u8>>,
}

/// Sorts entries into run order; two entries with the same kind and key are refused.
pub(crate) fn sort_entries(entries: &mut [RunEntry]) -> Result<()> {
    // Each key hashed once (a comparison hashing both sides made this the saver's
    // largest cost); the (hash, index) pairs are sorted, the few equal hashes then by
    // kind and key, and the entries moved into that order.
    let mut order: Vec<(u64, usize)> = entries
        .iter()
        .enumerate()
        .map(|(at, entry)| (key_hash(entry.kind, &entry.key), at))
        .collect();
    order.sort_unstable();
    let mut from = 0;
    while from < order.len() {
        let hash = order[from].0;
        let to = from
            + order[from..]
                .iter()
                .take_while(|(other, _)| *other == hash)
                .count();
        if to - from > 1 {
            order[from..to].sort_unstable_by(|&(_, a), &(_, b)| {
                (entries[a].kind, &entries[a].key).cmp(&(entries[b].kind, &entries[b].key))
            });
        }
        from = to;
    }
    let sorted: Vec<RunEntry> = order
        .iter()
        .map(|&(_, at)| std::mem::take(&mut entries[at]))
        .collect();
    for (slot, entry) in entries.iter_mut().zip(sorted) {
        *slot = entry;
    }
    if let Some(pair) = entries
        .windows(2)
        .find(|pair| pair[0].kind == pair[1].kind && pair[0].key == pair[1].key)
    {
        return Err(invalid(format!(
            "a run cannot hold key {:?} (kind {}) twice",
            String::from_utf8_lossy(&pair[0].key),
            pair[0].kind
        )));
    }
    Ok(())
}

/// The entries of the run that saves what the index gained since its last save: the
/// streams' and the secondary indexes' unsaved parts (`Index::take_unsaved`,
/// `SecondaryIndexes::take_unsaved`), in run order; their positions are moved, not
/// copied. Revisions a scavenge removed ([`crate::index::REMOVED_POSITION`], always a
/// prefix) are left out: the record starts at the first live revision (and holds no
/// position when none is live, which still says where the stream's revisions end).
pub(crate) fn entries_from_unsaved(
    streams: Vec<crate::index::UnsavedStream>,
    postings: Vec<crate::secondary::UnsavedPostings>,
) -> Result<Vec<RunEntry>> {
    let mut entries = Vec::with_capacity(streams.len() + postings.len());
    for stream in streams {
        let mut positions = stream.positions;
        let removed = positions.len() - crate::index::live_positions(&positions).len();
        positions.drain(..removed);
        entries.push(RunEntry {
            kind: KIND_STREAM,
            key: stream.stream.as_str().as_bytes().to_vec(),
            first_revision: stream.first_revision + removed as u64,
            positions,
            tombstone: stream.tombstone_position,
            metadata: stream.metadata.as_ref().map(|metadata| metadata.to_json()),
        });
    }
    for key in postings {
        let first_revision = key.first_revision.ok_or_else(|| Error::InvalidArgument {
            reason: format!(
                "the first revision of index key {:?} was not read from the runs",
                key.name
            ),
        })?;
        entries.push(RunEntry {
            kind: key.kind as u8,
            key: key.name.as_bytes().to_vec(),
            first_revision,
            positions: key.positions,
            ..RunEntry::default()
        });
    }
    sort_entries(&mut entries)?;
    Ok(entries)
}

/// What a lookup finds of one key in one run; the positions stay on disk until asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunRecord {
    pub first_revision: u64,
    pub count: u64,
    pub tombstone: Option<u64>,
    pub metadata: Option<Vec<u8>>,
    /// Where the positions start in the file.
    positions_offset: u64,
    /// The positions when they came with the record's read.
    inline: Option<Vec<u64>>,
    /// The run that read it (its address), and the key: a record of a run since replaced
    /// is read again from the replacement.
    source: usize,
    kind: u8,
    key: Vec<u8>,
}

impl RunRecord {
    /// The revision after the last one this run holds.
    pub(crate) fn end_revision(&self) -> u64 {
        self.first_revision + self.count
    }
}

/// Writes a run from entries in run order ([`sort_entries`]). The file appears under
/// `path` only when complete and synced.
pub(crate) fn write_run(
    path: &Path,
    covers_from: u64,
    covers_to: u64,
    entries: impl IntoIterator<Item = RunEntry>,
) -> Result<()> {
    write_records(
        path,
        covers_from,
        covers_to,
        entries.into_iter().map(RunItem::Entry),
    )
}

/// One record to write: an entry to encode, or a record's bytes read from another run
/// (checked there), written as they are.
pub(crate) enum RunItem {
    Entry(RunEntry),
    Bytes(RecordBytes),
}

/// [`write_run`] of entries or records' bytes, in run order.
pub(crate) fn write_records(
    path: &Path,
    covers_from: u64,
    covers_to: u64,
    items: impl IntoIterator<Item = RunItem>,
) -> Result<()> {
    let context = || format!("writing run {}", path.display());
    let io = |error: std::io::Error| Error::io(context(), error);
    let temporary = temporary_path(path, "tmp");
    let directory_path = temporary_path(path, "dir.tmp");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&temporary).map_err(io)?);
    let directory_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&directory_path)
        .map_err(io)?;
    let mut directory = BlockWriter::new(BufWriter::with_capacity(1 << 16, directory_file));
    let mut header = [0u8; RUN_HEADER_BYTES as usize];
    header[0..8].copy_from_slice(RUN_MAGIC);
    header[8..12].copy_from_slice(&RUN_VERSION.to_le_bytes());
    out.write_all(&header).map_err(io)?;
    let mut offset = RUN_HEADER_BYTES;
    let mut key_count = 0u64;
    let mut position_count = 0u64;
    // The hash of every FENCE_STRIDE-th entry: 8 bytes per 128 keys.
    let mut fences = Vec::new();
    // The previous key (its hash, kind and bytes), to check the order.
    let mut previous: Option<(u64, u8)> = None;
    let mut previous_key = Vec::new();
    // An entry's record is encoded here, then written in one call.
    let mut encoded = Vec::new();
    for item in items {
        let (hash, kind, key, count) = match &item {
            RunItem::Entry(entry) => {
                check_entry(entry, covers_from, covers_to)?;
                let hash = key_hash(entry.kind, &entry.key);
                (
                    hash,
                    entry.kind,
                    entry.key.as_slice(),
                    entry.positions.len(),
                )
            }
            RunItem::Bytes(record) => {
                check_record(record, covers_from, covers_to)?;
                let count = usize::try_from(record.count()).unwrap_or(usize::MAX);
                (record.hash, record.kind(), record.key(), count)
            }
        };
        if let Some((previous_hash, previous_kind)) = previous
            && (previous_hash, previous_kind, previous_key.as_slice()) >= (hash, kind, key)
        {
            return Err(invalid(format!(
                "run entries out of order at key {:?}",
                String::from_utf8_lossy(key)
            )));
        }
        if key_count.is_multiple_of(FENCE_STRIDE as u64) {
            fences.push(hash);
        }
        let mut slot = [0u8; DIRECTORY_ENTRY_BYTES];
        slot[0..8].copy_from_slice(&hash.to_le_bytes());
        slot[8..16].copy_from_slice(&offset.to_le_bytes());
        directory.append(&slot, FENCE_STRIDE).map_err(io)?;
        previous = Some((hash, kind));
        previous_key.clear();
        previous_key.extend_from_slice(key);
        let bytes = match &item {
            RunItem::Entry(entry) => {
                encoded.clear();
                encode_entry(entry, &mut encoded);
                &encoded
            }
            RunItem::Bytes(record) => &record.bytes,
        };
        out.write_all(bytes).map_err(io)?;
        offset += bytes.len() as u64;
        key_count += 1;
        position_count += count as u64;
    }
    let directory_offset = offset;
    let mut directory = directory
        .finish()
        .and_then(|inner| inner.into_inner().map_err(|error| error.into_error()))
        .map_err(io)?;
    directory.seek(SeekFrom::Start(0)).map_err(io)?;
    // The directory is copied block by block, its hashes filling the key filter.
    let mut filter = KeyFilter::with_capacity(key_count);
    let mut directory = BufReader::with_capacity(1 << 16, directory);
    let mut block = vec![0u8; FENCE_STRIDE * DIRECTORY_ENTRY_BYTES + CHECKSUM_BYTES];
    let mut remaining = key_count;
    while remaining > 0 {
        let entries = remaining.min(FENCE_STRIDE as u64) as usize;
        let block = &mut block[..entries * DIRECTORY_ENTRY_BYTES + CHECKSUM_BYTES];
        directory.read_exact(block).map_err(io)?;
        for entry in block[..entries * DIRECTORY_ENTRY_BYTES].chunks_exact(DIRECTORY_ENTRY_BYTES) {
            filter.insert(u64_at(entry, 0));
        }
        out.write_all(block).map_err(io)?;
        remaining -= entries as u64;
    }
    drop(directory);
    let _ = std::fs::remove_file(&directory_path);
    let fences_offset = directory_offset + directory_section_bytes(key_count);
    let mut crc = crc32c::crc32c(&header);
    for fence in &fences {
        let bytes = fence.to_le_bytes();
        crc = crc32c::crc32c_append(crc, &bytes);
        out.write_all(&bytes).map_err(io)?;
    }
    let filter_bytes = filter.to_bytes();
    crc = crc32c::crc32c_append(crc, &filter_bytes);
    out.write_all(&filter_bytes).map_err(io)?;
    let mut trailer = [0u8; RUN_TRAILER_BYTES as usize];
    for (at, word) in [
        covers_from,
        covers_to,
        key_count,
        position_count,
        directory_offset,
        fences_offset,
    ]
    .into_iter()
    .enumerate()
    {
        trailer[at * 8..at * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    trailer[48..52].copy_from_slice(&RUN_VERSION.to_le_bytes());
    trailer[56..64].copy_from_slice(RUN_MAGIC);
    crc = crc32c::crc32c_append(crc, &trailer[..68]);
    trailer[68..72].copy_from_slice(&crc.to_le_bytes());
    out.write_all(&trailer).map_err(io)?;
    let file = out.into_inner().map_err(|error| io(error.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        crate::segments::sync_dir(parent)?;
    }
    Ok(())
}

/// Writes fixed-size items in blocks of up to a given count, each block followed by the
/// CRC32C of its bytes. A block is gathered, then checksummed and written in one call.
struct BlockWriter<W> {
    inner: W,
    block: Vec<u8>,
    in_block: usize,
}

impl<W: Write> BlockWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            block: Vec::new(),
            in_block: 0,
        }
    }

    fn append(&mut self, item: &[u8], per_block: usize) -> std::io::Result<()> {
        self.block.extend_from_slice(item);
        self.in_block += 1;
        if self.in_block == per_block {
            self.close_block()?;
        }
        Ok(())
    }

    fn close_block(&mut self) -> std::io::Result<()> {
        if self.in_block > 0 {
            let crc = crc32c::crc32c(&self.block);
            self.block.extend_from_slice(&crc.to_le_bytes());
            self.inner.write_all(&self.block)?;
            self.block.clear();
            self.in_block = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.close_block()?;
        Ok(self.inner)
    }
}

fn temporary_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn check_entry(entry: &RunEntry, covers_from: u64, covers_to: u64) -> Result<()> {
    let bad = |what: &str| {
        Err(invalid(format!(
            "run entry {:?}: {what}",
            String::from_utf8_lossy(&entry.key)
        )))
    };
    if entry.kind > KIND_MAX {
        return bad("unknown kind");
    }
    if entry.key.len() > usize::from(u16::MAX) {
        return bad("key longer than 65535 bytes");
    }
    if entry
        .metadata
        .as_ref()
        .is_some_and(|json| u32::try_from(json.len()).is_err())
    {
        return bad("metadata too long");
    }
    if entry.positions.windows(2).any(|pair| pair[0] >= pair[1]) {
        return bad("positions not ascending");
    }
    let outside = |position: u64| position < covers_from || position >= covers_to;
    if entry.positions.first().is_some_and(|&first| outside(first))
        || entry.positions.last().is_some_and(|&last| outside(last))
        || entry.tombstone.is_some_and(outside)
    {
        return bad("position outside the run's coverage");
    }
    Ok(())
}

/// Checks a record's bytes about to be written into a run covering `[covers_from,
/// covers_to)`: its kind, and that its positions (ascending within the record, as its
/// run checked when it was written) and tombstone lie inside the coverage.
fn check_record(record: &RecordBytes, covers_from: u64, covers_to: u64) -> Result<()> {
    let outside = |position: u64| position < covers_from || position >= covers_to;
    let count = record.count();
    let bad = if record.kind() > KIND_MAX {
        Some("unknown kind")
    } else if count > 0 && (outside(record.position(0)) || outside(record.position(count - 1)))
        || record.tombstone().is_some_and(outside)
    {
        Some("position outside the run's coverage")
    } else {
        None
    };
    match bad {
        Some(what) => Err(invalid(format!(
            "run record {:?}: {what}",
            String::from_utf8_lossy(record.key())
        ))),
        None => Ok(()),
    }
}

/// Bytes of a record before its positions: header, key, metadata, their checksum.
fn record_head_bytes(key_len: usize, metadata_len: usize) -> u64 {
    (RECORD_HEADER_BYTES + key_len + metadata_len + CHECKSUM_BYTES) as u64
}

/// Bytes of `count` positions in checksummed chunks.
fn positions_section_bytes(count: u64) -> u64 {
    count * 8 + count.div_ceil(POSITIONS_PER_CHUNK) * CHECKSUM_BYTES as u64
}

/// Bytes of the directory of `keys` entries in checksummed blocks.
fn directory_section_bytes(keys: u64) -> u64 {
    keys * DIRECTORY_ENTRY_BYTES as u64 + keys.div_ceil(FENCE_STRIDE as u64) * CHECKSUM_BYTES as u64
}

/// Checks `bytes` as consecutive blocks of `item`-byte items, `per_block` to a block, each
/// followed by its CRC32C, and returns the items' bytes; `None` when a checksum fails or
/// the bytes do not end with a whole block.
fn checked_blocks(bytes: &[u8], item: usize, per_block: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    let full = item * per_block + CHECKSUM_BYTES;
    while !rest.is_empty() {
        // A full block, or else the rest is one short last block.
        let payload = rest.len().min(full).checked_sub(CHECKSUM_BYTES)?;
        if payload == 0 || payload % item != 0 {
            return None;
        }
        let (data, tail) = rest.split_at(payload);
        let stored = u32::from_le_bytes(tail.get(..CHECKSUM_BYTES)?.try_into().ok()?);
        if crc32c::crc32c(data) != stored {
            return None;
        }
        out.extend_from_slice(data);
        rest = &tail[CHECKSUM_BYTES..];
    }
    Some(out)
}

/// [`checked_blocks`] of positions, decoded as each chunk is checked (no copy of the
/// bytes between).
fn checked_position_blocks(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::with_capacity(bytes.len() / 8);
    let mut rest = bytes;
    let full = POSITIONS_PER_CHUNK as usize * 8 + CHECKSUM_BYTES;
    while !rest.is_empty() {
        let payload = rest.len().min(full).checked_sub(CHECKSUM_BYTES)?;
        if payload == 0 || payload % 8 != 0 {
            return None;
        }
        let (data, tail) = rest.split_at(payload);
        let stored = u32::from_le_bytes(tail.get(..CHECKSUM_BYTES)?.try_into().ok()?);
        if crc32c::crc32c(data) != stored {
            return None;
        }
        out.extend(
            data.chunks_exact(8)
                .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8]))),
        );
        rest = &tail[CHECKSUM_BYTES..];
    }
    Some(out)
}

/// Whether `bytes` are consecutive chunks of positions, each followed by the CRC32C of
/// its positions, the last one possibly short ([`checked_position_blocks`] without the
/// decoding).
fn position_chunks_hold(bytes: &[u8]) -> bool {
    let full = POSITIONS_PER_CHUNK as usize * 8 + CHECKSUM_BYTES;
    bytes.chunks(full).all(|chunk| {
        chunk.len() > CHECKSUM_BYTES && (chunk.len() - CHECKSUM_BYTES).is_multiple_of(8) && {
            let (data, stored) = chunk.split_at(chunk.len() - CHECKSUM_BYTES);
            crc32c::crc32c(data) == u32_at(stored, 0)
        }
    })
}

/// An open run: the file, its trailer, and the fence pointers.
#[derive(Debug)]
pub(crate) struct Run {
    file: File,
    path: PathBuf,
    pub covers_from: u64,
    pub covers_to: u64,
    pub key_count: u64,
    pub position_count: u64,
    directory_offset: u64,
    /// The hash of directory entry `i × FENCE_STRIDE`.
    fences: Vec<u64>,
    /// The key filter (`None` in a run of version 2, which has none).
    filter: Option<KeyFilter>,
    /// Set when a read found the run damaged (its file is then removed).
    discarded: std::sync::atomic::AtomicBool,
    /// Whether finding it damaged removes its file (not when only checking it) and
    /// rebuilds it in its place ([`Run::replacement`]).
    remove_when_damaged: bool,
    /// The run rebuilt in place of this one once a read found it damaged.
    replacement: std::sync::OnceLock<std::sync::Arc<Run>>,
    healing: parking_lot::Mutex<Healing>,
    healed: parking_lot::Condvar,
}

/// Where the rebuild of a damaged run stands.
#[derive(Debug, Default)]
enum Healing {
    #[default]
    NotStarted,
    Running,
    Failed(String),
}

impl Run {
    /// Opens a run after checking that it is complete and that the checksum of its
    /// header, fences and trailer holds (the other blocks are checked when read); the
    /// error says why it cannot be trusted. Reads only those parts: the time does not
    /// grow with the run's records.
    pub(crate) fn open(path: &Path) -> std::result::Result<Run, String> {
        let file = File::open(path).map_err(|error| format!("cannot be opened: {error}"))?;
        let length = file
            .metadata()
            .map_err(|error| format!("cannot be read: {error}"))?
            .len();
        if length < RUN_HEADER_BYTES + RUN_TRAILER_BYTES {
            return Err("is shorter than a run's header and trailer".into());
        }
        let mut header = [0u8; RUN_HEADER_BYTES as usize];
        read_at(&file, &mut header, 0)?;
        let mut trailer = [0u8; RUN_TRAILER_BYTES as usize];
        read_at(&file, &mut trailer, length - RUN_TRAILER_BYTES)?;
        if &header[0..8] != RUN_MAGIC || &trailer[56..64] != RUN_MAGIC {
            return Err("does not start and end with the run magic (incomplete?)".into());
        }
        let version = u32_at(&header, 8);
        if !(RUN_VERSION_WITHOUT_FILTER..=RUN_VERSION).contains(&version)
            || u32_at(&trailer, 48) != version
        {
            return Err(format!("has unsupported version {version}"));
        }
        let covers_from = u64_at(&trailer, 0);
        let covers_to = u64_at(&trailer, 8);
        let key_count = u64_at(&trailer, 16);
        let position_count = u64_at(&trailer, 24);
        let directory_offset = u64_at(&trailer, 32);
        let fences_offset = u64_at(&trailer, 40);
        let fence_count = key_count.div_ceil(FENCE_STRIDE as u64);
        // Fences, then (version 3) the key filter, then the trailer.
        let fences_end = fences_offset.checked_add(fence_count * 8);
        let filter_bytes = fences_end
            .and_then(|end| length.checked_sub(RUN_TRAILER_BYTES)?.checked_sub(end))
            .unwrap_or(u64::MAX);
        let filter_fits = if version == RUN_VERSION_WITHOUT_FILTER {
            filter_bytes == 0
        } else {
            (FILTER_HEADER_BYTES as u64..length).contains(&filter_bytes)
        };
        let fits = key_count < u64::MAX / 64
            && covers_from <= covers_to
            && directory_offset >= RUN_HEADER_BYTES
            && directory_offset.checked_add(directory_section_bytes(key_count))
                == Some(fences_offset)
            && filter_fits;
        if !fits {
            return Err("has a trailer that does not fit its size".into());
        }
        let mut tail = vec![
            0u8;
            usize::try_from(fence_count * 8 + filter_bytes)
                .map_err(|_| "has too many keys")?
        ];
        read_at(&file, &mut tail, fences_offset)?;
        let crc = crc32c::crc32c_append(
            crc32c::crc32c_append(crc32c::crc32c(&header), &tail),
            &trailer[..68],
        );
        if crc != u32_at(&trailer, 68) {
            return Err("fails its checksum".into());
        }
        let (fence_bytes, filter_bytes) = tail.split_at(fence_count as usize * 8);
        let filter = if version == RUN_VERSION_WITHOUT_FILTER {
            None
        } else {
            Some(KeyFilter::from_bytes(filter_bytes)?)
        };
        let fences = decode_positions(fence_bytes);
        if fences.windows(2).any(|pair| pair[0] > pair[1]) {
            return Err("has fences out of order".into());
        }
        Ok(Run {
            file,
            path: path.to_owned(),
            covers_from,
            covers_to,
            key_count,
            position_count,
            directory_offset,
            fences,
            filter,
            discarded: std::sync::atomic::AtomicBool::new(false),
            remove_when_damaged: true,
            replacement: std::sync::OnceLock::new(),
            healing: parking_lot::Mutex::new(Healing::NotStarted),
            healed: parking_lot::Condvar::new(),
        })
    }

    /// Opens a run as [`Run::open`] does, for checking only: finding it damaged reports
    /// it and leaves its file alone.
    pub(crate) fn open_to_check(path: &Path) -> std::result::Result<Run, String> {
        let mut run = Run::open(path)?;
        run.remove_when_damaged = false;
        Ok(run)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of memory this open run holds beyond its struct (the fences and the key
    /// filter).
    pub(crate) fn resident_bytes(&self) -> usize {
        self.fences.capacity() * 8 + self.filter.as_ref().map_or(0, KeyFilter::resident_bytes)
    }

    /// Where directory block `block` starts.
    fn directory_block_offset(&self, block: u64) -> u64 {
        self.directory_offset
            + block * (FENCE_STRIDE * DIRECTORY_ENTRY_BYTES + CHECKSUM_BYTES) as u64
    }

    /// The entries of directory block `block`, checked.
    fn directory_block(&self, block: u64) -> Result<Vec<u8>> {
        let first = block * FENCE_STRIDE as u64;
        let entries = (self.key_count - first).min(FENCE_STRIDE as u64) as usize;
        let mut bytes = vec![0u8; entries * DIRECTORY_ENTRY_BYTES + CHECKSUM_BYTES];
        read_at(&self.file, &mut bytes, self.directory_block_offset(block))
            .map_err(|reason| self.damaged(&reason))?;
        checked_blocks(&bytes, DIRECTORY_ENTRY_BYTES, FENCE_STRIDE)
            .ok_or_else(|| self.damaged(&format!("fails the checksum of directory block {block}")))
    }

    /// The record of `key` in this run, if it holds one. A run found damaged answers from
    /// the run rebuilt in its place ([`Run::replacement`]).
    pub(crate) fn get(&self, kind: u8, key: &[u8]) -> Result<Option<RunRecord>> {
        if let Some(replacement) = self.replacement()? {
            return replacement.get(kind, key);
        }
        match self.get_here(kind, key) {
            Err(error) => match self.replacement()? {
                Some(replacement) => replacement.get(kind, key),
                None => Err(error),
            },
            found => found,
        }
    }

    fn get_here(&self, kind: u8, key: &[u8]) -> Result<Option<RunRecord>> {
        let hash = key_hash(kind, key);
        if self
            .filter
            .as_ref()
            .is_some_and(|filter| !filter.may_contain(hash))
        {
            return Ok(None);
        }
        // The first block whose fence is ≥ the hash may start past keys of the same hash:
        // start in the block before it.
        let first_block = self
            .fences
            .partition_point(|&fence| fence < hash)
            .saturating_sub(1);
        for block in first_block as u64..self.fences.len() as u64 {
            let entries = self.directory_block(block)?;
            for entry in entries.chunks_exact(DIRECTORY_ENTRY_BYTES) {
                let entry_hash = u64_at(entry, 0);
                if entry_hash < hash {
                    continue;
                }
                if entry_hash > hash {
                    return Ok(None);
                }
                let (found_kind, found_key, mut record) = self.read_record(u64_at(entry, 8))?;
                if found_kind == kind && found_key == key {
                    record.kind = kind;
                    record.key = found_key;
                    return Ok(Some(record));
                }
            }
        }
        Ok(None)
    }

    /// Reads the record at `offset`: its kind, key and what it says, its head's checksum
    /// checked (and its positions', when they came with the read).
    fn read_record(&self, offset: u64) -> Result<(u8, Vec<u8>, RunRecord)> {
        let available = self.directory_offset.saturating_sub(offset);
        let want = usize::try_from(available.min(RECORD_READ_BYTES as u64)).unwrap_or(0);
        if offset < RUN_HEADER_BYTES || want < RECORD_HEADER_BYTES + CHECKSUM_BYTES {
            return Err(self.damaged("points past its records"));
        }
        let mut bytes = vec![0u8; want];
        read_at(&self.file, &mut bytes, offset).map_err(|reason| self.damaged(&reason))?;
        let key_len = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        let metadata_len = u32_at(&bytes, 4) as usize;
        let count = u64_at(&bytes, 16);
        let head_bytes = record_head_bytes(key_len, metadata_len);
        if head_bytes > available {
            return Err(self.damaged(&format!(
                "holds a record at {offset} longer than its records section"
            )));
        }
        if head_bytes as usize > bytes.len() {
            // A long key or metadata: read the whole head.
            bytes = vec![0u8; head_bytes as usize];
            read_at(&self.file, &mut bytes, offset).map_err(|reason| self.damaged(&reason))?;
        }
        let head = head_bytes as usize - CHECKSUM_BYTES;
        if crc32c::crc32c(&bytes[..head]) != u32_at(&bytes, head) {
            return Err(self.damaged(&format!("fails the checksum of the record at {offset}")));
        }
        let record_end = Some(count)
            .filter(|&count| count <= self.position_count)
            .map(|count| head_bytes + positions_section_bytes(count))
            .and_then(|bytes| offset.checked_add(bytes))
            .filter(|&end| end <= self.directory_offset)
            .ok_or_else(|| {
                self.damaged(&format!(
                    "holds a record at {offset} longer than its records section"
                ))
            })?;
        let flags = bytes[1];
        let key_start = RECORD_HEADER_BYTES;
        let metadata_start = key_start + key_len;
        let positions_start = head_bytes as usize;
        let positions_end = (record_end - offset) as usize;
        let inline = if positions_end <= bytes.len() {
            Some(self.checked_positions(&bytes[positions_start..positions_end], offset)?)
        } else {
            None
        };
        Ok((
            bytes[0],
            bytes[key_start..metadata_start].to_vec(),
            RunRecord {
                first_revision: u64_at(&bytes, 8),
                count,
                tombstone: (flags & FLAG_TOMBSTONE != 0).then(|| u64_at(&bytes, 24)),
                metadata: (flags & FLAG_METADATA != 0)
                    .then(|| bytes[metadata_start..metadata_start + metadata_len].to_vec()),
                positions_offset: offset + positions_start as u64,
                inline,
                source: self.address(),
                kind: bytes[0],
                key: Vec::new(),
            },
        ))
    }

    /// Decodes chunks of positions, each checked against its checksum.
    fn checked_positions(&self, bytes: &[u8], record: u64) -> Result<Vec<u64>> {
        checked_position_blocks(bytes).ok_or_else(|| {
            self.damaged(&format!(
                "fails the checksum of the positions of the record at {record}"
            ))
        })
    }

    /// Positions `[from, to)` of `record` by index in the record (not by revision): the
    /// chunks holding them are read and checked. A run found damaged answers from the run
    /// rebuilt in its place.
    pub(crate) fn positions(&self, record: &RunRecord, from: u64, to: u64) -> Result<Vec<u64>> {
        if record.source != self.address() {
            return match self.replacement.get() {
                Some(replacement) => replacement.positions(record, from, to),
                None => Err(invalid(format!(
                    "a record of another run was read in run {}",
                    self.path.display()
                ))),
            };
        }
        match self.positions_here(record, from, to) {
            Err(error) => match self.replacement()? {
                Some(replacement) => match replacement.get(record.kind, &record.key)? {
                    Some(again) => replacement.positions(&again, from, to),
                    None => Err(error),
                },
                None => Err(error),
            },
            found => found,
        }
    }

    fn positions_here(&self, record: &RunRecord, from: u64, to: u64) -> Result<Vec<u64>> {
        let to = to.min(record.count);
        if from >= to {
            return Ok(Vec::new());
        }
        if let Some(inline) = &record.inline {
            return Ok(inline[from as usize..to as usize].to_vec());
        }
        let chunk_bytes = POSITIONS_PER_CHUNK * 8 + CHECKSUM_BYTES as u64;
        let first_chunk = from / POSITIONS_PER_CHUNK;
        let last_chunk = (to - 1) / POSITIONS_PER_CHUNK;
        let last_len = (record.count - last_chunk * POSITIONS_PER_CHUNK).min(POSITIONS_PER_CHUNK);
        let length =
            (last_chunk - first_chunk) * chunk_bytes + last_len * 8 + CHECKSUM_BYTES as u64;
        let mut bytes = vec![0u8; usize::try_from(length).unwrap_or(0)];
        read_at(
            &self.file,
            &mut bytes,
            record.positions_offset + first_chunk * chunk_bytes,
        )
        .map_err(|reason| self.damaged(&reason))?;
        let positions = self.checked_positions(&bytes, record.positions_offset)?;
        let skip = (from - first_chunk * POSITIONS_PER_CHUNK) as usize;
        Ok(positions[skip..skip + (to - from) as usize].to_vec())
    }

    /// Every entry in run order, read sequentially and checked (for merges and checks).
    pub(crate) fn scan(&self) -> Result<RunScan<'_>> {
        if let Some(replacement) = self.replacement()? {
            return replacement.scan();
        }
        let mut reader = BufReader::with_capacity(1 << 20, &self.file);
        reader
            .seek(SeekFrom::Start(RUN_HEADER_BYTES))
            .map_err(|error| Error::io(format!("reading run {}", self.path.display()), error))?;
        Ok(RunScan {
            run: self,
            reader,
            remaining: self.key_count,
            offset: RUN_HEADER_BYTES,
        })
    }

    /// Reads every block of the run and checks its checksum and that the directory points
    /// at the records in order (what `strata verify` does before comparing with the log).
    /// Returns the number of keys.
    pub(crate) fn check_whole(&self) -> Result<u64> {
        let mut offsets = Vec::with_capacity(FENCE_STRIDE);
        let mut scan = self.scan()?;
        let mut key = 0u64;
        for block in 0..self.fences.len() as u64 {
            let entries = self.directory_block(block)?;
            offsets.clear();
            for (slot, entry) in entries.chunks_exact(DIRECTORY_ENTRY_BYTES).enumerate() {
                if slot == 0 && u64_at(entry, 0) != self.fences[block as usize] {
                    return Err(self.damaged(&format!(
                        "has a fence that disagrees with directory block {block}"
                    )));
                }
                offsets.push((u64_at(entry, 0), u64_at(entry, 8)));
            }
            for (hash, offset) in offsets.drain(..) {
                if scan.offset != offset {
                    return Err(self.damaged(&format!(
                        "has directory entry {key} pointing at {offset}, not {}",
                        scan.offset
                    )));
                }
                let entry = scan
                    .next()
                    .unwrap_or_else(|| Err(self.damaged("has fewer records than keys")))?;
                if key_hash(entry.kind, &entry.key) != hash {
                    return Err(
                        self.damaged(&format!("has directory entry {key} with a wrong hash"))
                    );
                }
                if self
                    .filter
                    .as_ref()
                    .is_some_and(|filter| !filter.may_contain(hash))
                {
                    return Err(self.damaged(&format!("has a key filter without key {key}")));
                }
                key += 1;
            }
        }
        if key != self.key_count || scan.offset != self.directory_offset {
            return Err(self.damaged("has records that do not fill its records section"));
        }
        Ok(key)
    }

    /// An error saying the run is damaged. The run is then never trusted again: its file is
    /// removed (when it is still this run's), so that the next open rebuilds it from the
    /// log; lookups reading it meanwhile get the same kind of error, never an answer.
    fn damaged(&self, reason: &str) -> Error {
        self.discard(reason);
        corrupt(format!("run {} {reason}", self.path.display()))
    }

    /// Removes the run's file once, if the path still names this file (a run written
    /// again under the same name is left alone).
    pub(crate) fn discard(&self, reason: &str) {
        use std::os::unix::fs::MetadataExt;
        if !self.remove_when_damaged
            || self
                .discarded
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let same = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        };
        tracing::warn!(run = %self.path.display(), %reason, "an index run is damaged; the next open rebuilds it");
        if same {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// This run's address, which tells its records from those of its replacement.
    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// The run rebuilt in place of this one when a read found it damaged (`None` while it
    /// is not, or when it is only being checked). The first read that needs it rebuilds it
    /// from the index files of its range (`run_heal`), at its own name, while the store
    /// serves; the reads that need it meanwhile wait for it. An error when it cannot be
    /// rebuilt (then the next open rebuilds it from the log).
    fn replacement(&self) -> Result<Option<&std::sync::Arc<Run>>> {
        if let Some(replacement) = self.replacement.get() {
            return Ok(Some(replacement));
        }
        if !self.remove_when_damaged || !self.is_discarded() {
            return Ok(None);
        }
        let mut healing = self.healing.lock();
        loop {
            if let Some(replacement) = self.replacement.get() {
                return Ok(Some(replacement));
            }
            match &*healing {
                Healing::Failed(reason) => {
                    return Err(corrupt(format!(
                        "run {} is damaged and {reason}",
                        self.path.display()
                    )));
                }
                Healing::Running => self.healed.wait(&mut healing),
                Healing::NotStarted => {
                    *healing = Healing::Running;
                    let rebuilt = parking_lot::MutexGuard::unlocked(&mut healing, || {
                        tracing::warn!(run = %self.path.display(), "rebuilding a damaged index run while serving");
                        crate::run_heal::rebuild_from_index_files(
                            &self.path,
                            self.covers_from,
                            self.covers_to,
                        )
                        .and_then(|()| {
                            Run::open(&self.path).map_err(|reason| {
                                corrupt(format!("rebuilt run {} {reason}", self.path.display()))
                            })
                        })
                    });
                    match rebuilt {
                        Ok(run)
                            if run.covers_from == self.covers_from
                                && run.covers_to == self.covers_to =>
                        {
                            let _ = self.replacement.set(std::sync::Arc::new(run));
                            tracing::info!(run = %self.path.display(), "a damaged index run was rebuilt");
                        }
                        Ok(_) => {
                            *healing = Healing::Failed("its rebuild covers another range".into())
                        }
                        Err(error) => {
                            *healing = Healing::Failed(format!("could not be rebuilt: {error}"))
                        }
                    }
                    self.healed.notify_all();
                }
            }
        }
    }

    /// Whether a read found this run damaged.
    pub(crate) fn is_discarded(&self) -> bool {
        self.discarded.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Reads a run's entries in order, checking every checksum.
pub(crate) struct RunScan<'a> {
    run: &'a Run,
    reader: BufReader<&'a File>,
    remaining: u64,
    /// Where the next record starts.
    offset: u64,
}

impl Iterator for RunScan<'_> {
    type Item = Result<RunEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.read_entry())
    }
}

impl RunScan<'_> {
    fn read_entry(&mut self) -> Result<RunEntry> {
        self.read_record().map(|record| record.to_entry())
    }

    /// The next record's bytes, every checksum checked (`None` after the last).
    pub(crate) fn next_record(&mut self) -> Option<Result<RecordBytes>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.read_record())
    }

    fn read_record(&mut self) -> Result<RecordBytes> {
        let run = self.run;
        let offset = self.offset;
        let damaged = |error: std::io::Error| run.damaged(&format!("cannot be read: {error}"));
        let mut header = [0u8; RECORD_HEADER_BYTES];
        self.reader.read_exact(&mut header).map_err(damaged)?;
        let key_len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let metadata_len = u32_at(&header, 4) as usize;
        let count = u64_at(&header, 16);
        let head_bytes = record_head_bytes(key_len, metadata_len);
        let longer = || {
            run.damaged(&format!(
                "holds a record at {offset} longer than its records section"
            ))
        };
        if offset
            .checked_add(head_bytes)
            .is_none_or(|end| end > run.directory_offset)
        {
            return Err(longer());
        }
        let record_end = Some(count)
            .filter(|&count| count <= run.position_count)
            .map(|count| head_bytes + positions_section_bytes(count))
            .and_then(|bytes| offset.checked_add(bytes))
            .filter(|&end| end <= run.directory_offset)
            .ok_or_else(longer)?;
        let length = (record_end - offset) as usize;
        let mut bytes = Vec::with_capacity(length);
        bytes.extend_from_slice(&header);
        bytes.resize(length, 0);
        self.reader
            .read_exact(&mut bytes[RECORD_HEADER_BYTES..])
            .map_err(damaged)?;
        let head = head_bytes as usize - CHECKSUM_BYTES;
        if crc32c::crc32c(&bytes[..head]) != u32_at(&bytes, head) {
            return Err(run.damaged(&format!("fails the checksum of the record at {offset}")));
        }
        if !position_chunks_hold(&bytes[head_bytes as usize..]) {
            return Err(run.damaged(&format!(
                "fails the checksum of the positions of the record at {offset}"
            )));
        }
        self.offset = record_end;
        Ok(RecordBytes::read(bytes))
    }
}

pub(crate) fn read_at(
    file: &File,
    buffer: &mut [u8],
    offset: u64,
) -> std::result::Result<(), String> {
    file.read_exact_at(buffer, offset)
        .map_err(|error| format!("cannot be read at {offset}: {error}"))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn decode_positions(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8])))
        .collect()
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument { reason }
}

fn corrupt(detail: String) -> Error {
    Error::Corrupt { detail }
}

#[cfg(test)]
#[path = "run_file_tests.rs"]
mod tests;
