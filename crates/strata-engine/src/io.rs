//! The seam under the segment files: every positional read and write, data sync and resize
//! of a segment goes through [`SegmentFile`]. In a normal build it is a plain `File` and
//! each call is the same syscall; with the `fault-injection` feature a test can put a
//! `faults::Faults` plan under it (failed writes, syncs and reads, power loss).
//! Segment creation (zero-fill, rename) stays outside: a new segment is synced before it
//! gets its name, so no fault between those steps can leave a half-made segment behind.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use crate::segment_map::SegmentMap;

/// What the engine's segment files are opened through; cloned into every segment.
#[derive(Clone, Default)]
pub(crate) struct Seam {
    #[cfg(feature = "fault-injection")]
    faults: Option<std::sync::Arc<crate::faults::Faults>>,
}

impl Seam {
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        #[cfg(feature = "fault-injection")]
        {
            Self {
                faults: config.faults.clone(),
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = config;
            Self {}
        }
    }

    pub(crate) fn wrap(&self, file: File, segment_index: u64, format_version: u32) -> SegmentFile {
        SegmentFile {
            file,
            segment_index,
            format_version,
            map: OnceLock::new(),
            #[cfg(feature = "fault-injection")]
            faults: self.faults.clone(),
        }
    }
}

/// One open segment file.
pub(crate) struct SegmentFile {
    file: File,
    segment_index: u64,
    /// The format version its header records (what its frames may carry).
    format_version: u32,
    /// The whole file mapped, made at the first read that asks for it; `None` when the
    /// file may not be mapped.
    map: OnceLock<Option<SegmentMap>>,
    #[cfg(feature = "fault-injection")]
    faults: Option<std::sync::Arc<crate::faults::Faults>>,
}

impl SegmentFile {
    pub(crate) fn format_version(&self) -> u32 {
        self.format_version
    }

    /// `fdatasync`: what was written is durable when this returns.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(faults) = &self.faults {
            return faults.sync_data(&self.file, self.segment_index);
        }
        self.file.sync_data()
    }

    /// Extends a segment that is shorter than its size with zeros, durably.
    pub(crate) fn extend_to(&self, length_bytes: u64) -> io::Result<()> {
        self.file.set_len(length_bytes)?;
        self.file.sync_all()
    }

    pub(crate) fn length_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub(crate) fn segment_index(&self) -> u64 {
        self.segment_index
    }

    /// The file's bytes through a read-only map, when it is `size_bytes` long and may be
    /// mapped (`segment_map`): never with a fault plan, so injected read faults reach
    /// every read.
    pub(crate) fn mapped(&self, size_bytes: u64) -> Option<&[u8]> {
        #[cfg(feature = "fault-injection")]
        if self.faults.is_some() {
            return None;
        }
        self.map
            .get_or_init(|| SegmentMap::of(&self.file, size_bytes))
            .as_ref()
            .map(SegmentMap::bytes)
    }
}

impl FileExt for SegmentFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        #[cfg(feature = "fault-injection")]
        if let Some(faults) = &self.faults {
            return faults.read_at(&self.file, buffer, offset);
        }
        self.file.read_at(buffer, offset)
    }

    fn write_at(&self, buffer: &[u8], offset: u64) -> io::Result<usize> {
        #[cfg(feature = "fault-injection")]
        if let Some(faults) = &self.faults {
            return faults.write_at(&self.file, self.segment_index, buffer, offset);
        }
        self.file.write_at(buffer, offset)
    }
}
