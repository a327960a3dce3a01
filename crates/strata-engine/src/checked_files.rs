//! How far each immutable index file has been read back and found intact since it was
//! written, so that the checks after an open (the index saver's of the index files, the
//! id builder's of the id files) read each file once instead of at every open, and
//! resume where they stopped.
//!
//! A file is known by its name, length, inode and modification time: a file written
//! again (a rebuild writes a new file and renames it over the old) is not the file that
//! was checked, and is checked again. The record is a small text file, one line per
//! file: `<name> <length> <inode> <modified ns> <checked>`, where `<checked>` counts
//! what was read (blocks, or 1 for a file read whole). It is replaced by a rename and
//! not synced: a lost or damaged record only makes a check run again. Every read of a
//! block still checks its CRC32C, so a file damaged after its check is found by the
//! first read that uses the damaged block (and then rebuilt from the log).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The record's name inside the directory it describes.
pub(crate) const CHECKED_FILE_NAME: &str = "checked";

/// What identifies one version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    length: u64,
    inode: u64,
    modified_ns: u128,
}

fn identity(path: &Path) -> Option<Identity> {
    let metadata = std::fs::metadata(path).ok()?;
    let modified_ns = metadata
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(Identity {
        length: metadata.len(),
        inode: metadata.ino(),
        modified_ns,
    })
}

/// The record of one directory.
pub(crate) struct CheckedFiles {
    dir: PathBuf,
    files: HashMap<String, (Identity, u64)>,
}

impl CheckedFiles {
    /// Reads `<dir>/checked`, keeping only the lines of files that are still the ones
    /// checked (missing or unreadable: an empty record).
    pub(crate) fn load(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join(CHECKED_FILE_NAME)).unwrap_or_default();
        let mut files = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [name, length, inode, modified_ns, checked] = fields.as_slice() else {
                continue;
            };
            let (Ok(length), Ok(inode), Ok(modified_ns), Ok(checked)) = (
                length.parse(),
                inode.parse(),
                modified_ns.parse(),
                checked.parse(),
            ) else {
                continue;
            };
            let recorded = Identity {
                length,
                inode,
                modified_ns,
            };
            if name.contains('/') || identity(&dir.join(name)) != Some(recorded) {
                continue;
            }
            files.insert((*name).to_string(), (recorded, checked));
        }
        Self {
            dir: dir.to_path_buf(),
            files,
        }
    }

    /// How much of the file at `path` was checked (0 when it was not, or was written
    /// again since).
    pub(crate) fn checked(&self, path: &Path) -> u64 {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            return 0;
        };
        match self.files.get(name) {
            Some((recorded, checked)) if identity(path) == Some(*recorded) => *checked,
            _ => 0,
        }
    }

    /// Notes that `checked` of the file at `path` was read and found intact.
    pub(crate) fn set(&mut self, path: &Path, checked: u64) {
        let (Some(name), Some(found)) = (
            path.file_name().and_then(|name| name.to_str()),
            identity(path),
        ) else {
            return;
        };
        self.files.insert(name.to_string(), (found, checked));
    }

    /// Writes the record of the files still present (`.tmp`, then a rename).
    pub(crate) fn save(&mut self) {
        let dir = &self.dir;
        self.files.retain(|name, _| dir.join(name).exists());
        let mut names: Vec<&String> = self.files.keys().collect();
        names.sort_unstable();
        let mut text = String::new();
        for name in names {
            let (found, checked) = self.files[name];
            text.push_str(&format!(
                "{name} {} {} {} {checked}\n",
                found.length, found.inode, found.modified_ns
            ));
        }
        let path = dir.join(CHECKED_FILE_NAME);
        let temporary = dir.join(format!("{CHECKED_FILE_NAME}.tmp"));
        let written =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            // Costs only a check run again at the next open.
            tracing::debug!(%error, dir = %dir.display(), "could not record the files checked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_again_is_no_longer_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ids");
        std::fs::write(&path, b"one").unwrap();
        let mut record = CheckedFiles::load(dir.path());
        assert_eq!(record.checked(&path), 0);
        record.set(&path, 7);
        record.save();
        assert_eq!(CheckedFiles::load(dir.path()).checked(&path), 7);
        // Written again as the engine writes files: a new file renamed over the old.
        let temporary = dir.path().join("a.ids.tmp");
        std::fs::write(&temporary, b"two").unwrap();
        std::fs::rename(&temporary, &path).unwrap();
        assert_eq!(record.checked(&path), 0);
        assert_eq!(CheckedFiles::load(dir.path()).checked(&path), 0);
    }

    #[test]
    fn removed_files_and_bad_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.idx");
        let gone = dir.path().join("gone.idx");
        std::fs::write(&kept, b"k").unwrap();
        std::fs::write(&gone, b"g").unwrap();
        let mut record = CheckedFiles::load(dir.path());
        record.set(&kept, 1);
        record.set(&gone, 1);
        std::fs::remove_file(&gone).unwrap();
        record.save();
        let mut text = std::fs::read_to_string(dir.path().join(CHECKED_FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 1);
        text.push_str("kept.idx not numbers\n../x 1 2 3 4\n");
        std::fs::write(dir.path().join(CHECKED_FILE_NAME), text).unwrap();
        let record = CheckedFiles::load(dir.path());
        assert_eq!(record.checked(&kept), 1);
        assert_eq!(record.files.len(), 1);
    }
}
