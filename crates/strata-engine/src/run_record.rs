//! One record of a sorted run as its bytes (docs/ON_DISK_FORMAT.md "Sorted runs"):
//! encoded from an entry, or read from a run with every checksum checked. A merge copies
//! the record of a key that only one of its two runs holds as it is (most keys of a
//! merge: a correlation id lives in one run or two), and joins the two records of a key
//! both hold by their positions' bytes, re-chunked: no position is decoded and encoded
//! again, and each record costs one allocation.

use strata_core::{Error, Result};

use crate::run_file::{
    CHECKSUM_BYTES, FLAG_METADATA, FLAG_TOMBSTONE, POSITIONS_PER_CHUNK, RECORD_HEADER_BYTES,
    RunEntry, key_hash, u32_at, u64_at,
};

/// Bytes of one full chunk of positions: 512 positions and their CRC32C.
const CHUNK_BYTES: usize = POSITIONS_PER_CHUNK as usize * 8 + CHECKSUM_BYTES;

/// A whole record: header, key, metadata, their CRC32C, the positions' chunks.
pub(crate) struct RecordBytes {
    /// The key's hash ([`key_hash`]), computed once.
    pub hash: u64,
    pub bytes: Vec<u8>,
}

impl RecordBytes {
    /// A record read from a run: `bytes` holds exactly one record whose head's and
    /// chunks' checksums the reader checked.
    pub(crate) fn read(bytes: Vec<u8>) -> RecordBytes {
        let mut record = RecordBytes { hash: 0, bytes };
        record.hash = key_hash(record.kind(), record.key());
        record
    }

    pub(crate) fn kind(&self) -> u8 {
        self.bytes[0]
    }

    fn flags(&self) -> u8 {
        self.bytes[1]
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.bytes[2], self.bytes[3]]))
    }

    fn metadata_len(&self) -> usize {
        u32_at(&self.bytes, 4) as usize
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + self.key_len()]
    }

    pub(crate) fn first_revision(&self) -> u64 {
        u64_at(&self.bytes, 8)
    }

    /// How many positions the record holds.
    pub(crate) fn count(&self) -> u64 {
        u64_at(&self.bytes, 16)
    }

    pub(crate) fn tombstone(&self) -> Option<u64> {
        (self.flags() & FLAG_TOMBSTONE != 0).then(|| u64_at(&self.bytes, 24))
    }

    pub(crate) fn metadata(&self) -> Option<&[u8]> {
        let start = RECORD_HEADER_BYTES + self.key_len();
        (self.flags() & FLAG_METADATA != 0).then(|| &self.bytes[start..start + self.metadata_len()])
    }

    /// The positions' chunks (each followed by its checksum).
    fn positions_section(&self) -> &[u8] {
        &self.bytes[RECORD_HEADER_BYTES + self.key_len() + self.metadata_len() + CHECKSUM_BYTES..]
    }

    /// The positions' bytes, chunk by chunk, without the checksums.
    fn position_chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.positions_section()
            .chunks(CHUNK_BYTES)
            .map(|chunk| &chunk[..chunk.len().saturating_sub(CHECKSUM_BYTES)])
    }

    /// The position at index `at` (`at` < [`RecordBytes::count`]).
    pub(crate) fn position(&self, at: u64) -> u64 {
        let chunk = (at / POSITIONS_PER_CHUNK) as usize;
        let within = (at % POSITIONS_PER_CHUNK) as usize;
        u64_at(self.positions_section(), chunk * CHUNK_BYTES + within * 8)
    }

    /// The order of records in a run: hash, kind, key.
    pub(crate) fn order_key(&self) -> (u64, u8, &[u8]) {
        (self.hash, self.kind(), self.key())
    }

    /// The entry this record holds.
    pub(crate) fn to_entry(&self) -> RunEntry {
        let mut positions = Vec::with_capacity(usize::try_from(self.count()).unwrap_or(0));
        for chunk in self.position_chunks() {
            positions.extend(
                chunk
                    .chunks_exact(8)
                    .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8]))),
            );
        }
        RunEntry {
            kind: self.kind(),
            key: self.key().to_vec(),
            first_revision: self.first_revision(),
            positions,
            tombstone: self.tombstone(),
            metadata: self.metadata().map(<[u8]>::to_vec),
        }
    }

    /// The record of a key both runs of a merge hold: the older positions followed by the
    /// newer ones (which must continue its revisions and follow its last position), the
    /// newer tombstone and metadata when set. A newer record that starts past the older's
    /// end was saved after a scavenge removed the revisions before it (a scavenge removes a
    /// prefix of a stream), the older's among them: the newer revisions alone are kept.
    pub(crate) fn joined(older: &RecordBytes, newer: &RecordBytes) -> Result<RecordBytes> {
        let newer_count = newer.count();
        let disagree = |what: String| {
            Err(Error::Corrupt {
                detail: format!(
                    "runs disagree on key {:?}: {what}",
                    String::from_utf8_lossy(older.key())
                ),
            })
        };
        let older_end = older.first_revision() + older.count();
        let older_removed = newer.first_revision() > older_end;
        let older_count = if older_removed { 0 } else { older.count() };
        if newer_count > 0 && !older_removed {
            if newer.first_revision() != older_end {
                return disagree(format!(
                    "the newer starts at revision {}, the older ends before {older_end}",
                    newer.first_revision()
                ));
            }
            if older_count > 0 && older.position(older_count - 1) >= newer.position(0) {
                return disagree("the newer positions do not follow the older".into());
            }
        }
        let first_revision = if older_count == 0 {
            newer.first_revision()
        } else {
            older.first_revision()
        };
        let count = older_count + newer_count;
        let head = RecordHead {
            kind: older.kind(),
            key: older.key(),
            first_revision,
            count,
            tombstone: newer.tombstone().or(older.tombstone()),
            metadata: newer.metadata().or(older.metadata()),
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(head.bytes() + positions_section_len(count));
        head.encode(&mut bytes);
        let mut payload = Vec::with_capacity(count.min(POSITIONS_PER_CHUNK as usize) * 8);
        let chunk_payload = POSITIONS_PER_CHUNK as usize * 8;
        let older_chunks = older
            .position_chunks()
            .take(if older_removed { 0 } else { usize::MAX });
        for part in older_chunks.chain(newer.position_chunks()) {
            let mut part = part;
            while !part.is_empty() {
                let take = part.len().min(chunk_payload - payload.len());
                payload.extend_from_slice(&part[..take]);
                part = &part[take..];
                if payload.len() == chunk_payload {
                    close_chunk(&mut bytes, &payload);
                    payload.clear();
                }
            }
        }
        if !payload.is_empty() {
            close_chunk(&mut bytes, &payload);
        }
        Ok(RecordBytes {
            hash: older.hash,
            bytes,
        })
    }
}

/// Appends a chunk's positions' bytes and their CRC32C.
fn close_chunk(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
}

/// Bytes of `count` positions in checksummed chunks.
fn positions_section_len(count: usize) -> usize {
    count * 8 + count.div_ceil(POSITIONS_PER_CHUNK as usize) * CHECKSUM_BYTES
}

/// What a record says before its positions.
struct RecordHead<'a> {
    kind: u8,
    key: &'a [u8],
    first_revision: u64,
    count: u64,
    tombstone: Option<u64>,
    metadata: Option<&'a [u8]>,
}

impl RecordHead<'_> {
    fn bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.key.len() + self.metadata.map_or(0, <[u8]>::len) + CHECKSUM_BYTES
    }

    /// Appends header, key, metadata and their CRC32C (lengths checked by the caller).
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut flags = 0u8;
        if self.tombstone.is_some() {
            flags |= FLAG_TOMBSTONE;
        }
        if self.metadata.is_some() {
            flags |= FLAG_METADATA;
        }
        let metadata = self.metadata.unwrap_or(&[]);
        let mut header = [0u8; RECORD_HEADER_BYTES];
        header[0] = self.kind;
        header[1] = flags;
        header[2..4].copy_from_slice(&(self.key.len() as u16).to_le_bytes());
        header[4..8].copy_from_slice(&(metadata.len() as u32).to_le_bytes());
        header[8..16].copy_from_slice(&self.first_revision.to_le_bytes());
        header[16..24].copy_from_slice(&self.count.to_le_bytes());
        header[24..32].copy_from_slice(&self.tombstone.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(self.key);
        out.extend_from_slice(metadata);
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
}

/// Appends the record of `entry` to `out` (cleared first by the caller when reused): a
/// chunk's positions are encoded in place and checksummed in one call.
pub(crate) fn encode_entry(entry: &RunEntry, out: &mut Vec<u8>) {
    let head = RecordHead {
        kind: entry.kind,
        key: &entry.key,
        first_revision: entry.first_revision,
        count: entry.positions.len() as u64,
        tombstone: entry.tombstone,
        metadata: entry.metadata.as_deref(),
    };
    out.reserve(head.bytes() + positions_section_len(entry.positions.len()));
    head.encode(out);
    for positions in entry.positions.chunks(POSITIONS_PER_CHUNK as usize) {
        let start = out.len();
        out.resize(start + positions.len() * 8, 0);
        for (word, position) in out[start..].chunks_exact_mut(8).zip(positions) {
            word.copy_from_slice(&position.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, first_revision: u64, positions: Vec<u64>) -> RunEntry {
        RunEntry {
            kind: 3,
            key: key.as_bytes().to_vec(),
            first_revision,
            positions,
            tombstone: None,
            metadata: None,
        }
    }

    fn record(entry: &RunEntry) -> RecordBytes {
        let mut bytes = Vec::new();
        encode_entry(entry, &mut bytes);
        RecordBytes::read(bytes)
    }

    #[test]
    fn a_record_reads_back_its_entry() {
        for count in [0u64, 1, 511, 512, 513, 1500] {
            let mut written = entry("c-1", 7, (0..count).map(|at| 64 + at * 3).collect());
            written.tombstone = (count % 2 == 1).then_some(9_000);
            written.metadata = (count > 600).then(|| b"{\"$maxCount\":3}".to_vec());
            let read = record(&written);
            assert_eq!(read.to_entry(), written);
            assert_eq!(read.hash, key_hash(3, b"c-1"));
            for at in [0, count / 2, count.saturating_sub(1)] {
                if at < count {
                    assert_eq!(read.position(at), written.positions[at as usize]);
                }
            }
        }
    }

    #[test]
    fn joined_records_are_the_records_of_the_joined_entries() {
        for (older_count, newer_count) in [(0, 3), (3, 0), (0, 0), (511, 2), (512, 512), (700, 900)]
        {
            let older = entry("k", 4, (0..older_count).map(|at| 64 + at).collect());
            let mut newer = entry(
                "k",
                4 + older_count,
                (0..newer_count).map(|at| 100_000 + at).collect(),
            );
            newer.tombstone = Some(200_000);
            newer.metadata = Some(b"{}".to_vec());
            let joined = RecordBytes::joined(&record(&older), &record(&newer)).unwrap();
            let mut expected = older.clone();
            if older_count == 0 {
                expected.first_revision = newer.first_revision;
            }
            expected.positions.extend_from_slice(&newer.positions);
            expected.tombstone = newer.tombstone;
            expected.metadata = newer.metadata.clone();
            assert_eq!(joined.to_entry(), expected);
            assert_eq!(
                joined.bytes,
                record(&expected).bytes,
                "the bytes a save writes"
            );
        }
    }

    #[test]
    fn joining_refuses_records_that_do_not_continue() {
        let older = record(&entry("k", 0, vec![64, 128]));
        assert!(RecordBytes::joined(&older, &record(&entry("k", 1, vec![192]))).is_err());
        assert!(RecordBytes::joined(&older, &record(&entry("k", 2, vec![128]))).is_err());
        assert!(RecordBytes::joined(&older, &record(&entry("k", 2, vec![192]))).is_ok());
        // Past the older end: a scavenge removed the revisions before the newer ones.
        let joined = RecordBytes::joined(&older, &record(&entry("k", 3, vec![192]))).unwrap();
        assert_eq!(joined.to_entry(), entry("k", 3, vec![192]));
    }
}
