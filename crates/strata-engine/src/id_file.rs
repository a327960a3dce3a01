//! One event-id file: the `(hash of an event id, position)` pairs of a log range, sorted,
//! in blocks that each carry a CRC32C, with a bloom filter and the blocks' fences that the
//! open reads and keeps in memory (docs/ON_DISK_FORMAT.md, "Event id files"). Written
//! once (`.tmp`, fsync, rename, fsync of the directory), read in place with `pread`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use strata_core::{Error, Result};

use crate::log_reader::to_usize;
use crate::run_file::{read_at, u32_at, u64_at};

pub(crate) const ID_FILE_MAGIC: &[u8; 8] = b"STRATIDS";
pub(crate) const ID_FILE_VERSION: u32 = 1;
const HEADER_BYTES: u64 = 16;
const TRAILER_BYTES: u64 = 64;
const ENTRY_BYTES: usize = 16;
/// Entries per block: a block is 4,096 bytes of entries and its 4-byte CRC32C.
pub(crate) const ENTRIES_PER_BLOCK: u64 = 256;
const BLOCK_BYTES: u64 = ENTRIES_PER_BLOCK * ENTRY_BYTES as u64 + 4;
/// The bloom filter: one 512-bit line (a cache line) per id, 7 bits set in it, sized at
/// 10 bits per id (a false-positive rate of ≈ 1 %: `tests::bloom_false_positive_rate`).
const BLOOM_LINE_BITS: u64 = 512;
const BLOOM_LINE_WORDS: usize = 8;
const BLOOM_BITS_PER_ID: u64 = 10;
const BLOOM_PROBES: usize = 7;

/// The hash an event id is filed under: fixed (the same in every build and process), so
/// files outlive the process. Ids chosen to collide only cost reads: a candidate position
/// counts only when the stored event there has the id.
pub(crate) fn id_hash(id: u128) -> u64 {
    let low = id as u64;
    let high = (id >> 64) as u64;
    mix(low ^ mix(high ^ 0x9e37_79b9_7f4a_7c15))
}

/// The splitmix64 finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `<covers_from>-<covers_to>.ids`, both 20 decimal digits.
pub(crate) fn id_file_name(covers_from: u64, covers_to: u64) -> String {
    format!("{covers_from:020}-{covers_to:020}.ids")
}

/// A blocked bloom filter: each hash picks one line and sets [`BLOOM_PROBES`] bits in it.
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn for_ids(count: u64) -> Self {
        let lines = (count * BLOOM_BITS_PER_ID).div_ceil(BLOOM_LINE_BITS).max(1);
        Self {
            words: vec![0; usize::try_from(lines).unwrap_or(usize::MAX) * BLOOM_LINE_WORDS],
        }
    }

    fn lines(&self) -> u64 {
        (self.words.len() / BLOOM_LINE_WORDS) as u64
    }

    /// The line and the bits of `hash`.
    fn probes(&self, hash: u64) -> (usize, [u16; BLOOM_PROBES]) {
        let line = ((u128::from(hash) * u128::from(self.lines())) >> 64) as usize;
        let second = mix(hash ^ 0x2545_f491_4f6c_dd1d);
        let mut bits = [0u16; BLOOM_PROBES];
        for (probe, bit) in bits.iter_mut().enumerate() {
            *bit = ((second >> (9 * probe)) & 511) as u16;
        }
        (line, bits)
    }

    fn insert(&mut self, hash: u64) {
        let (line, bits) = self.probes(hash);
        for bit in bits {
            self.words[line * BLOOM_LINE_WORDS + usize::from(bit / 64)] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (line, bits) = self.probes(hash);
        bits.iter().all(|&bit| {
            self.words[line * BLOOM_LINE_WORDS + usize::from(bit / 64)] & (1 << (bit % 64)) != 0
        })
    }
}

/// Bytes of the blocks of `count` entries (the last block may be short).
fn blocks_bytes(count: u64) -> u64 {
    let full = count / ENTRIES_PER_BLOCK;
    let rest = count % ENTRIES_PER_BLOCK;
    full * BLOCK_BYTES
        + if rest > 0 {
            rest * ENTRY_BYTES as u64 + 4
        } else {
            0
        }
}

/// Writes an id file entry by entry, in `(hash, position)` order.
pub(crate) struct IdFileWriter {
    path: PathBuf,
    temporary: PathBuf,
    out: BufWriter<File>,
    covers_from: u64,
    covers_to: u64,
    bloom: Bloom,
    fences: Vec<u64>,
    block: Vec<u8>,
    count: u64,
    previous: Option<(u64, u64)>,
}

impl IdFileWriter {
    /// Starts the file of `[covers_from, covers_to)` at `path`; `expected_count` sizes the
    /// bloom filter.
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn create(
        path: &Path,
        covers_from: u64,
        covers_to: u64,
        expected_count: u64,
    ) -> Result<Self> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temporary = path.with_file_name(name);
        let file = File::create(&temporary)
            .map_err(|error| Error::io(format!("creating {}", temporary.display()), error))?;
        let mut writer = Self {
            path: path.to_path_buf(),
            temporary,
            out: BufWriter::with_capacity(1 << 20, file),
            covers_from,
            covers_to,
            bloom: Bloom::for_ids(expected_count),
            fences: Vec::new(),
            block: Vec::with_capacity(BLOCK_BYTES as usize),
            count: 0,
            previous: None,
        };
        let mut header = [0u8; HEADER_BYTES as usize];
        header[0..8].copy_from_slice(ID_FILE_MAGIC);
        header[8..12].copy_from_slice(&ID_FILE_VERSION.to_le_bytes());
        writer.write(&header)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|error| Error::io(format!("writing {}", self.temporary.display()), error))
    }

    /// Adds one entry; entries come in strictly increasing `(hash, position)` order, each
    /// position inside the file's range.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an entry out of order or out of range; I/O errors.
    pub(crate) fn push(&mut self, hash: u64, position: u64) -> Result<()> {
        if self
            .previous
            .is_some_and(|previous| previous >= (hash, position))
            || !(self.covers_from..self.covers_to).contains(&position)
        {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "id file {}: entry ({hash:#x}, {position}) out of order or out of range",
                    self.path.display()
                ),
            });
        }
        self.previous = Some((hash, position));
        if self.count.is_multiple_of(ENTRIES_PER_BLOCK) {
            self.fences.push(hash);
        }
        self.bloom.insert(hash);
        self.block.extend_from_slice(&hash.to_le_bytes());
        self.block.extend_from_slice(&position.to_le_bytes());
        self.count += 1;
        if self.count.is_multiple_of(ENTRIES_PER_BLOCK) {
            self.close_block()?;
        }
        Ok(())
    }

    fn close_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let crc = crc32c::crc32c(&self.block);
        let mut block = std::mem::take(&mut self.block);
        block.extend_from_slice(&crc.to_le_bytes());
        self.write(&block)?;
        block.clear();
        self.block = block;
        Ok(())
    }

    /// Writes the bloom filter, fences and trailer, syncs the file and renames it into
    /// place, then syncs the directory.
    ///
    /// # Errors
    /// I/O errors (the temporary file is removed).
    pub(crate) fn finish(mut self) -> Result<()> {
        let written = self.finish_inner();
        if written.is_err() {
            let _ = std::fs::remove_file(&self.temporary);
        }
        written
    }

    fn finish_inner(&mut self) -> Result<()> {
        self.close_block()?;
        let mut header = [0u8; HEADER_BYTES as usize];
        header[0..8].copy_from_slice(ID_FILE_MAGIC);
        header[8..12].copy_from_slice(&ID_FILE_VERSION.to_le_bytes());
        let mut tail = Vec::with_capacity(self.bloom.words.len() * 8 + self.fences.len() * 8);
        for word in &self.bloom.words {
            tail.extend_from_slice(&word.to_le_bytes());
        }
        for fence in &self.fences {
            tail.extend_from_slice(&fence.to_le_bytes());
        }
        let bloom_offset = HEADER_BYTES + blocks_bytes(self.count);
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        for (at, word) in [
            self.covers_from,
            self.covers_to,
            self.count,
            self.bloom.lines(),
            bloom_offset,
        ]
        .into_iter()
        .enumerate()
        {
            trailer[at * 8..at * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        trailer[40..44].copy_from_slice(&ID_FILE_VERSION.to_le_bytes());
        trailer[48..56].copy_from_slice(ID_FILE_MAGIC);
        let crc = crc32c::crc32c_append(
            crc32c::crc32c_append(crc32c::crc32c(&header), &tail),
            &trailer[..60],
        );
        trailer[60..64].copy_from_slice(&crc.to_le_bytes());
        tail.extend_from_slice(&trailer);
        self.write(&tail)?;
        let io = |error| Error::io(format!("writing {}", self.temporary.display()), error);
        self.out.flush().map_err(io)?;
        self.out.get_ref().sync_all().map_err(io)?;
        std::fs::rename(&self.temporary, &self.path).map_err(io)?;
        if let Some(parent) = self.path.parent() {
            crate::segments::sync_dir(parent)?;
        }
        Ok(())
    }
}

/// Writes the file of `[covers_from, covers_to)` holding `entries` (sorted here).
///
/// # Errors
/// I/O errors.
pub(crate) fn write_id_file(
    path: &Path,
    covers_from: u64,
    covers_to: u64,
    mut entries: Vec<(u64, u64)>,
) -> Result<()> {
    entries.sort_unstable();
    let mut writer = IdFileWriter::create(path, covers_from, covers_to, entries.len() as u64)?;
    for (hash, position) in entries {
        writer.push(hash, position)?;
    }
    writer.finish()
}

/// Bytes of bloom filter and fences an open reads at a time.
const OPEN_SLICE_BYTES: usize = 1 << 20;

/// The file's header, checked for the magic (its bytes are part of the trailer's CRC).
fn header_bytes(file: &File) -> std::result::Result<[u8; HEADER_BYTES as usize], String> {
    let mut header = [0u8; HEADER_BYTES as usize];
    read_at(file, &mut header, 0)?;
    if &header[0..8] != ID_FILE_MAGIC {
        return Err("fails its checksum (header, bloom filter, fences or trailer)".into());
    }
    Ok(header)
}

/// An open id file: its range, count, bloom filter and fences in memory, the blocks on disk.
pub(crate) struct IdFile {
    path: PathBuf,
    file: File,
    pub covers_from: u64,
    pub covers_to: u64,
    pub count: u64,
    bloom: Bloom,
    fences: Vec<u64>,
    /// A block failed its checksum: lookups scan the file's log range instead until the
    /// file is rebuilt.
    damaged: AtomicBool,
}

impl IdFile {
    /// Opens `path`, reading and checking its header, bloom filter, fences and trailer (the
    /// blocks are checked when read). The error says why the file cannot be trusted.
    pub(crate) fn open(path: &Path) -> std::result::Result<IdFile, String> {
        let file = File::open(path).map_err(|error| format!("cannot be opened: {error}"))?;
        let length = file
            .metadata()
            .map_err(|error| format!("cannot be read: {error}"))?
            .len();
        if length < HEADER_BYTES + TRAILER_BYTES {
            return Err(format!("is cut short ({length} bytes)"));
        }
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        read_at(&file, &mut trailer, length - TRAILER_BYTES)?;
        if &trailer[48..56] != ID_FILE_MAGIC {
            return Err("is incomplete (no trailer)".into());
        }
        if u32_at(&trailer, 40) != ID_FILE_VERSION {
            return Err(format!("has version {}", u32_at(&trailer, 40)));
        }
        let word = |at: usize| u64_at(&trailer, at * 8);
        let (covers_from, covers_to, count, lines, bloom_offset) =
            (word(0), word(1), word(2), word(3), word(4));
        let block_count = count.div_ceil(ENTRIES_PER_BLOCK);
        let expected_bloom_offset = count
            .checked_mul(ENTRY_BYTES as u64)
            .map(|_| HEADER_BYTES + blocks_bytes(count));
        let expected_length = lines
            .checked_mul(BLOOM_LINE_BITS / 8)
            .and_then(|bloom| bloom.checked_add(block_count.checked_mul(8)?))
            .and_then(|tail| tail.checked_add(bloom_offset)?.checked_add(TRAILER_BYTES));
        if expected_bloom_offset != Some(bloom_offset)
            || expected_length != Some(length)
            || lines == 0
            || covers_from > covers_to
        {
            return Err("has a trailer that does not match its length".into());
        }
        let tail_words = (length - TRAILER_BYTES - bloom_offset) / 8;
        let bloom_words = lines * BLOOM_LINE_WORDS as u64;
        // Read in slices straight into the words kept, so that the open's peak memory is
        // the filter and fences plus one slice, not twice the filter.
        let mut words = Vec::new();
        words
            .try_reserve_exact(usize::try_from(tail_words).map_err(|_| "is too large")?)
            .map_err(|_| "is too large to hold".to_string())?;
        let mut crc = crc32c::crc32c(&header_bytes(&file)?);
        let mut slice = vec![0u8; OPEN_SLICE_BYTES.min(to_usize(tail_words * 8))];
        let mut at = bloom_offset;
        while (words.len() as u64) < tail_words {
            let take = to_usize((tail_words - words.len() as u64) * 8).min(slice.len());
            read_at(&file, &mut slice[..take], at)?;
            crc = crc32c::crc32c_append(crc, &slice[..take]);
            words.extend(slice[..take].chunks_exact(8).map(|word| u64_at(word, 0)));
            at += take as u64;
        }
        let crc = crc32c::crc32c_append(crc, &trailer[..60]);
        if crc != u32_at(&trailer, 60) {
            return Err("fails its checksum (header, bloom filter, fences or trailer)".into());
        }
        let fences = words.split_off(to_usize(bloom_words));
        words.shrink_to_fit();
        Ok(IdFile {
            path: path.to_path_buf(),
            file,
            covers_from,
            covers_to,
            count,
            bloom: Bloom { words },
            fences,
            damaged: AtomicBool::new(false),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.bloom.may_contain(hash)
    }

    pub(crate) fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    pub(crate) fn mark_damaged(&self) {
        self.damaged.store(true, Ordering::Release);
    }

    /// How many blocks the file has.
    pub(crate) fn block_count(&self) -> u64 {
        self.fences.len() as u64
    }

    /// Reads block `block` and checks its CRC32C (a mismatch marks the file damaged).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the block cannot be read or fails its checksum.
    pub(crate) fn check_block(&self, block: u64) -> Result<()> {
        self.block(block).map(|_| ())
    }

    /// The entries of block `block`, checked against its CRC32C.
    fn block(&self, block: u64) -> Result<Vec<(u64, u64)>> {
        let entries = (self.count - block * ENTRIES_PER_BLOCK).min(ENTRIES_PER_BLOCK);
        let mut bytes = vec![0u8; to_usize(entries) * ENTRY_BYTES + 4];
        read_at(&self.file, &mut bytes, HEADER_BYTES + block * BLOCK_BYTES)
            .map_err(|reason| self.corrupt(&reason))?;
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32_at(crc, 0) {
            self.mark_damaged();
            return Err(self.corrupt(&format!("block {block} fails its checksum")));
        }
        Ok(body
            .chunks_exact(ENTRY_BYTES)
            .map(|entry| (u64_at(entry, 0), u64_at(entry, 8)))
            .collect())
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::Corrupt {
            detail: format!("event id file {}: {reason}", self.path.display()),
        }
    }

    /// The positions filed under `hash` (ascending), reading only the blocks that may hold
    /// it; empty without a read when the bloom filter rules it out.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a block fails its checksum (the file is then marked damaged).
    pub(crate) fn positions(&self, hash: u64) -> Result<Vec<u64>> {
        if !self.may_contain(hash) {
            return Ok(Vec::new());
        }
        // Entries of one hash may run over a block's end: start at the last block whose
        // fence is below `hash`, go on while fences are at most `hash`.
        let mut block = self.fences.partition_point(|&fence| fence < hash) as u64;
        block = block.saturating_sub(1);
        let mut found = Vec::new();
        while block < self.fences.len() as u64 && self.fences[to_usize(block)] <= hash {
            found.extend(
                self.block(block)?
                    .into_iter()
                    .filter(|&(filed, _)| filed == hash)
                    .map(|(_, position)| position),
            );
            block += 1;
        }
        Ok(found)
    }

    /// Every entry in order, block by block (each block checked).
    pub(crate) fn scan(&self) -> impl Iterator<Item = Result<(u64, u64)>> + '_ {
        (0..self.fences.len() as u64).flat_map(move |block| match self.block(block) {
            Ok(entries) => entries.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) => vec![Err(error)],
        })
    }
}

/// Writes the merge of two adjacent files (`older` ends where `newer` starts) to `path`.
///
/// # Errors
/// [`Error::Corrupt`] when a block of either fails its checksum; I/O errors.
pub(crate) fn merge_id_files(older: &IdFile, newer: &IdFile, path: &Path) -> Result<()> {
    if older.covers_to != newer.covers_from {
        return Err(Error::InvalidArgument {
            reason: format!(
                "id files {} and {} are not adjacent",
                older.path.display(),
                newer.path.display()
            ),
        });
    }
    let mut writer = IdFileWriter::create(
        path,
        older.covers_from,
        newer.covers_to,
        older.count + newer.count,
    )?;
    let mut left = older.scan().peekable();
    let mut right = newer.scan().peekable();
    let merged = (|| {
        loop {
            let take_left = match (left.peek(), right.peek()) {
                (None, None) => return Ok(()),
                (Some(Err(_)), _) | (Some(_), None) => true,
                (_, Some(Err(_))) | (None, Some(_)) => false,
                (Some(Ok(a)), Some(Ok(b))) => a < b,
            };
            let side = if take_left { &mut left } else { &mut right };
            let (hash, position) = side.next().unwrap_or_else(|| unreachable!("peeked"))?;
            writer.push(hash, position)?;
        }
    })();
    match merged {
        Ok(()) => writer.finish(),
        Err(error) => {
            let _ = std::fs::remove_file(&writer.temporary);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(count: u64) -> Vec<(u64, u64)> {
        (0..count)
            .map(|index| (id_hash(u128::from(index)), 64 + index * 8))
            .collect()
    }

    #[test]
    fn every_entry_is_found_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(id_file_name(64, 100_000));
        let mut all = entries(1000);
        // The same hash several times, spilling over a block boundary.
        let shared = all[300].0;
        all.extend((0..300).map(|index| (shared, 20_000 + index * 8)));
        write_id_file(&path, 64, 100_000, all.clone()).unwrap();
        let file = IdFile::open(&path).unwrap();
        assert_eq!(file.count, 1300);
        for &(hash, position) in &all {
            assert!(file.positions(hash).unwrap().contains(&position));
        }
        assert_eq!(file.positions(shared).unwrap().len(), 301);
        let scanned: Vec<_> = file.scan().map(Result::unwrap).collect();
        let mut sorted = all;
        sorted.sort_unstable();
        assert_eq!(scanned, sorted);
    }

    #[test]
    fn bloom_false_positive_rate() {
        let mut bloom = Bloom::for_ids(100_000);
        for id in 0..100_000u128 {
            bloom.insert(id_hash(id));
        }
        let false_positives = (1_000_000..1_100_000u128)
            .filter(|&id| bloom.may_contain(id_hash(id)))
            .count();
        // ≈ 1.2 % measured; docs/ENGINE.md quotes it.
        assert!(false_positives < 2_000, "{false_positives} of 100,000");
    }

    #[test]
    fn damage_is_found_at_open_or_by_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(id_file_name(64, 100_000));
        write_id_file(&path, 64, 100_000, entries(600)).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in (0..good.len()).step_by(97) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let Ok(file) = IdFile::open(&path) else {
                continue;
            };
            let read_all: Result<Vec<_>> = file.scan().collect();
            assert!(read_all.is_err(), "a flip at {at} went unnoticed");
            assert!(file.is_damaged());
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(IdFile::open(&path).is_err());
    }

    #[test]
    fn merged_files_hold_both() {
        let dir = tempfile::tempdir().unwrap();
        let older_path = dir.path().join(id_file_name(64, 5000));
        let newer_path = dir.path().join(id_file_name(5000, 20_000));
        let older_entries = entries(500);
        let newer_entries: Vec<_> = (0..700u64)
            .map(|index| (id_hash(u128::from(index) + 7_000), 5000 + index * 8))
            .collect();
        write_id_file(&older_path, 64, 5000, older_entries.clone()).unwrap();
        write_id_file(&newer_path, 5000, 20_000, newer_entries.clone()).unwrap();
        let older = IdFile::open(&older_path).unwrap();
        let newer = IdFile::open(&newer_path).unwrap();
        let merged_path = dir.path().join(id_file_name(64, 20_000));
        merge_id_files(&older, &newer, &merged_path).unwrap();
        let merged = IdFile::open(&merged_path).unwrap();
        assert_eq!(merged.count, 1200);
        for (hash, position) in older_entries.into_iter().chain(newer_entries) {
            assert_eq!(merged.positions(hash).unwrap(), vec![position]);
        }
    }
}
