//! Index files: each saves the index changes of one contiguous range of the log, so that
//! opening a store loads them and replays only the log after the last one.
//!
//! Layout (little-endian), in `index/<sequence>.idx`:
//! `"STRATIDX"`, u32 version, u32 reserved, u64 covers_from, u64 covers_to, u64 stream
//! count; per stream: u16 name length, name, u8 flags (bit 0 tombstone, bit 1 metadata;
//! version 1 has only bit 0), 7 reserved bytes, u64 tombstone position, u64 first
//! revision, u64 position count, u64 × count positions, and in version 2 when bit 1 is set
//! u32 metadata length and the stream's parsed metadata as JSON; then a u32 CRC32C of
//! everything before it. Version 1 files (no metadata) are still read.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{Error, Result, StreamMetadata, StreamName};

use crate::index::{Index, UnsavedStream};
use crate::segments::sync_dir;

const INDEX_MAGIC: &[u8; 8] = b"STRATIDX";
/// Version written: 2 adds each changed stream's parsed metadata.
const INDEX_VERSION: u32 = 2;
const INDEX_VERSION_WITHOUT_METADATA: u32 = 1;
const FLAG_TOMBSTONE: u8 = 1;
const FLAG_METADATA: u8 = 2;
/// Magic, version, reserved, covers_from, covers_to, stream count.
const HEADER_BYTES: usize = 40;
/// Least bytes one stream record takes (an empty name, no positions).
pub(crate) const STREAM_RECORD_BYTES_MIN: u64 = 34;

fn index_file_name(sequence: u64) -> String {
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
) -> Result<()> {
    let mut bytes = Vec::with_capacity(64 + streams.len() * 64);
    bytes.extend_from_slice(INDEX_MAGIC);
    bytes.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
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
        for position in &stream.positions {
            bytes.extend_from_slice(&position.to_le_bytes());
        }
        if let Some(metadata) = &stream.metadata {
            let json = metadata.to_json();
            bytes.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
            bytes.extend_from_slice(&json);
        }
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
    sync_dir(index_dir)
}

/// The log range an index file covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Coverage {
    pub covers_from: u64,
    pub covers_to: u64,
}

/// What loading an index file found besides positions.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// `$$` streams whose newest event in this file's range is not matched by metadata in
    /// the file (version 1 files): their metadata must be read from the log.
    pub metadata_to_read: Vec<StreamName>,
    /// Streams whose metadata the file holds.
    pub metadata_loaded: Vec<StreamName>,
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
pub(crate) fn load_index_file(
    path: &Path,
    index: &mut Index,
    loaded: &mut Loaded,
) -> Result<Coverage, Unusable> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot be read: {error}"))?;
    let (body, version, coverage) = check_index_bytes(&bytes)?;
    let unusable = |reason: String| Unusable {
        reason,
        coverage: Some(coverage),
    };
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
        load_stream_record(&mut cursor, version, index, loaded).map_err(unusable)?;
    }
    Ok(coverage)
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
    if !(INDEX_VERSION_WITHOUT_METADATA..=INDEX_VERSION).contains(&version) {
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

fn load_stream_record(
    cursor: &mut Cursor<'_>,
    version: u32,
    index: &mut Index,
    loaded: &mut Loaded,
) -> Result<(), String> {
    let name_len = usize::from(cursor.u16()?);
    let name = std::str::from_utf8(cursor.take(name_len)?)
        .map_err(|_| "holds a stream name that is not UTF-8".to_owned())?;
    let flags = cursor.take(8)?[0];
    let known = if version == INDEX_VERSION_WITHOUT_METADATA {
        FLAG_TOMBSTONE
    } else {
        FLAG_TOMBSTONE | FLAG_METADATA
    };
    if flags & !known != 0 {
        return Err(format!("holds unknown flags for stream {name}"));
    }
    let tombstone_position = cursor.u64()?;
    let first_revision = cursor.u64()?;
    let count = usize::try_from(cursor.u64()?).map_err(|_| "has an impossible count")?;
    let raw = cursor.take(count.checked_mul(8).ok_or("has an impossible count")?)?;
    let positions: Vec<u64> = raw
        .chunks_exact(8)
        .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8])))
        .collect();
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
        loaded.metadata_loaded.push(stream);
    } else if version == INDEX_VERSION_WITHOUT_METADATA
        && !positions.is_empty()
        && name.starts_with("$$")
    {
        loaded.metadata_to_read.push(StreamName::from_stored(name));
    }
    Ok(())
}

/// Rewrites an index file as version 1 wrote it (no metadata), for tests of old stores.
#[cfg(test)]
pub(crate) fn rewrite_as_version_1(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let (body, _, _) = check_index_bytes(&bytes).unwrap();
    let mut out = body[..HEADER_BYTES].to_vec();
    out[8..12].copy_from_slice(&INDEX_VERSION_WITHOUT_METADATA.to_le_bytes());
    let mut cursor = Cursor {
        bytes: body,
        at: HEADER_BYTES - 8,
    };
    let stream_count = cursor.u64().unwrap();
    for _ in 0..stream_count {
        let start = cursor.at;
        let name_len = usize::from(cursor.u16().unwrap());
        cursor.take(name_len).unwrap();
        let flags_at = cursor.at;
        let flags = cursor.take(8).unwrap()[0];
        cursor.take(16).unwrap();
        let count = usize::try_from(cursor.u64().unwrap()).unwrap();
        cursor.take(count * 8).unwrap();
        let mut record = body[start..cursor.at].to_vec();
        record[flags_at - start] = flags & FLAG_TOMBSTONE;
        out.extend_from_slice(&record);
        if flags & FLAG_METADATA != 0 {
            let length = cursor.u32().unwrap() as usize;
            cursor.take(length).unwrap();
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(path, out).unwrap();
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
        write_index_file(dir.path(), 0, 64, 320, &unsaved).unwrap();
        let files = list_index_files(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(announced_stream_count(&files[0].1), 1);
        let mut index = Index::default();
        let coverage = load_index_file(&files[0].1, &mut index, &mut Loaded::default()).unwrap();
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
        let damaged = load_index_file(&files[0].1, &mut Index::default(), &mut Loaded::default());
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
        write_index_file(dir.path(), 0, 64, 200, &unsaved).unwrap();
        let mut index = Index::default();
        let mut loaded = Loaded::default();
        let path = &list_index_files(dir.path()).unwrap()[0].1;
        load_index_file(path, &mut index, &mut loaded).unwrap();
        assert_eq!(
            index.stream(&described).unwrap().metadata.as_deref(),
            Some(&metadata)
        );
        assert_eq!(loaded.metadata_loaded, vec![described]);
        assert!(loaded.metadata_to_read.is_empty());
        assert!(index.take_unsaved().is_empty(), "loaded metadata is saved");
    }

    /// A version 1 file (written before metadata was saved) still loads; its `$$` streams
    /// are listed for reading their metadata from the log.
    #[test]
    fn version_1_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(INDEX_MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&64u64.to_le_bytes());
        bytes.extend_from_slice(&200u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        let name = b"$$order-1";
        bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&[0u8; 8]);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&64u64.to_le_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let path = dir.path().join(index_file_name(0));
        std::fs::write(&path, &bytes).unwrap();
        let mut index = Index::default();
        let mut loaded = Loaded::default();
        let coverage = load_index_file(&path, &mut index, &mut loaded).unwrap();
        assert_eq!(coverage.covers_to, 200);
        assert_eq!(
            loaded.metadata_to_read,
            vec![StreamName::new("$$order-1").unwrap()]
        );
        assert_eq!(index.stream("$$order-1").unwrap().positions, vec![64]);
    }
}
