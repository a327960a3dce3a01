//! Index files: each saves the index changes of one contiguous range of the log, so that
//! opening a store loads them and replays only the log after the last one.
//!
//! Layout (little-endian), in `index/<sequence>.idx`:
//! `"STRATIDX"`, u32 version, u32 reserved, u64 covers_from, u64 covers_to, u64 stream
//! count; per stream: u16 name length, name, u8 has_tombstone, 7 reserved bytes,
//! u64 tombstone position, u64 first revision, u64 position count, u64 × count positions;
//! then a u32 CRC32C of everything before it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use strata_core::{Error, Result};

use crate::index::{Index, UnsavedStream};
use crate::segments::sync_dir;

const INDEX_MAGIC: &[u8; 8] = b"STRATIDX";
const INDEX_VERSION: u32 = 1;

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
        bytes.push(u8::from(stream.tombstone_position.is_some()));
        bytes.extend_from_slice(&[0u8; 7]);
        bytes.extend_from_slice(&stream.tombstone_position.unwrap_or(0).to_le_bytes());
        bytes.extend_from_slice(&stream.first_revision.to_le_bytes());
        bytes.extend_from_slice(&(stream.positions.len() as u64).to_le_bytes());
        for position in &stream.positions {
            bytes.extend_from_slice(&position.to_le_bytes());
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

/// Reads an index file into `index`. Returns the range it covers, or why it is unusable.
/// On error `index` may hold part of the file: callers rebuild from the log then.
pub(crate) fn load_index_file(path: &Path, index: &mut Index) -> Result<Coverage, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("cannot be read: {error}"))?;
    if bytes.len() < 44 || &bytes[0..8] != INDEX_MAGIC {
        return Err("does not start with the index magic".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) != crc32c::crc32c(body) {
        return Err("fails its checksum".into());
    }
    let mut cursor = Cursor { bytes: body, at: 8 };
    let version = cursor.u32()?;
    if version != INDEX_VERSION {
        return Err(format!("has unsupported version {version}"));
    }
    cursor.u32()?;
    let coverage = Coverage {
        covers_from: cursor.u64()?,
        covers_to: cursor.u64()?,
    };
    let stream_count = cursor.u64()?;
    index.reserve_streams(
        usize::try_from(stream_count)
            .unwrap_or(0)
            .min(body.len() / 32),
    );
    for _ in 0..stream_count {
        let name_len = usize::from(cursor.u16()?);
        let name = std::str::from_utf8(cursor.take(name_len)?)
            .map_err(|_| "holds a stream name that is not UTF-8".to_owned())?;
        let has_tombstone = cursor.take(8)?[0] != 0;
        let tombstone_position = cursor.u64()?;
        let first_revision = cursor.u64()?;
        let count = usize::try_from(cursor.u64()?).map_err(|_| "has an impossible count")?;
        let raw = cursor.take(count.checked_mul(8).ok_or("has an impossible count")?)?;
        let positions: Vec<u64> = raw
            .chunks_exact(8)
            .map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8])))
            .collect();
        let tombstone = has_tombstone.then_some(tombstone_position);
        if !index.load_positions(name, first_revision, &positions, tombstone) {
            return Err(format!("does not continue stream {name} where it stands"));
        }
    }
    Ok(coverage)
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
        }];
        write_index_file(dir.path(), 0, 64, 320, &unsaved).unwrap();
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
        assert!(load_index_file(&files[0].1, &mut Index::default()).is_err());
    }
}
