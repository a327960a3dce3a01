//! The disk's own speed, measured in the same run on the same directory as the store, so
//! every figure can be read as a ratio to what the hardware can do.
//!
//! The write rate is the disk's *sustained* one at the log's sync cadence: group-sized
//! writes, each followed by `fdatasync`, over at least as many bytes as the log will write.
//! One burst with a single sync at the end measured 4× the sustained rate on a virtual
//! disk whose host buffers the first gigabyte or so (docs/BENCHMARKS.md, issue 12).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::progress;

const FSYNC_FILE: &str = "baseline-fdatasync.tmp";
const WRITE_FILE: &str = "baseline-write.tmp";
const FSYNC_WRITE_BYTES: usize = 4 * 1024;

/// How long and how much the baseline measures.
pub(crate) struct Settings {
    pub(crate) fsync_duration: Duration,
    pub(crate) write_bytes: u64,
    /// Bytes per write of the sequential baseline; each write is followed by `fdatasync`.
    pub(crate) write_group_bytes: usize,
}

/// What the disk under the data directory can do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Baseline {
    pub(crate) fdatasync_per_sec: f64,
    pub(crate) disk_write_bytes_per_sec: f64,
    /// How the write rate was measured: bytes written in all, and per synced write.
    pub(crate) disk_write_bytes: u64,
    pub(crate) disk_write_group_bytes: usize,
}

impl Baseline {
    /// How the write rate was measured, for the report.
    pub(crate) fn write_method(&self) -> String {
        format!(
            "{} MiB in {} KiB writes, fdatasync after each",
            self.disk_write_bytes / (1024 * 1024),
            self.disk_write_group_bytes / 1024
        )
    }
}

/// Measures both figures, leaving no file behind.
pub(crate) fn measure(dir: &Path, settings: &Settings) -> anyhow::Result<Baseline> {
    let fdatasync_per_sec = with_scratch_file(&dir.join(FSYNC_FILE), |file| {
        fdatasync_rate(file, settings.fsync_duration)
    })?;
    let disk_write_bytes_per_sec = with_scratch_file(&dir.join(WRITE_FILE), |file| {
        sequential_write_rate(file, settings.write_bytes, settings.write_group_bytes)
    })?;
    Ok(Baseline {
        fdatasync_per_sec,
        disk_write_bytes_per_sec,
        disk_write_bytes: settings.write_bytes,
        disk_write_group_bytes: settings.write_group_bytes,
    })
}

/// Runs `measure` on a new file at `path` and deletes the file whatever the outcome.
fn with_scratch_file(
    path: &Path,
    measure: impl FnOnce(&mut File) -> anyhow::Result<f64>,
) -> anyhow::Result<f64> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {}; check the directory is writable",
                path.display()
            )
        })?;
    let outcome = measure(&mut file);
    drop(file);
    let removed = std::fs::remove_file(path)
        .with_context(|| format!("cannot delete {}; remove it by hand", path.display()));
    let rate = outcome?;
    removed?;
    Ok(rate)
}

/// Overwrites one 4 KiB block and fdatasyncs it, over and over, for `duration`.
fn fdatasync_rate(file: &mut File, duration: Duration) -> anyhow::Result<f64> {
    let bar = progress::bar("baseline fdatasync", duration.as_millis() as u64, "ms");
    let block = vec![0xA5u8; FSYNC_WRITE_BYTES];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        file.write_all_at(&block, 0)
            .context("the fdatasync baseline cannot write its scratch file; check free space")?;
        file.sync_data()
            .context("fdatasync failed on the data directory's disk; check the disk's health")?;
        syncs += 1;
        bar.set_position(started.elapsed().as_millis() as u64);
    }
    bar.finish_and_clear();
    Ok(syncs as f64 / started.elapsed().as_secs_f64())
}

/// Writes `total_bytes` sequentially in writes of `group_bytes`, each followed by
/// `fdatasync` as a group commit of the log is; the time includes every sync, so the figure
/// is what reaches the disk, not the page cache.
fn sequential_write_rate(
    file: &mut File,
    total_bytes: u64,
    group_bytes: usize,
) -> anyhow::Result<f64> {
    let bar = progress::bytes_bar("baseline disk write", total_bytes);
    let chunk = vec![0x5Au8; group_bytes];
    let started = Instant::now();
    let mut written = 0u64;
    while written < total_bytes {
        let length = (total_bytes - written).min(group_bytes as u64) as usize;
        file.write_all(&chunk[..length]).context(
            "the disk-write baseline cannot write its scratch file; check free space \
                      (it needs --baseline-write-mib MiB, or the batched phase's event bytes)",
        )?;
        file.sync_data()
            .context("fdatasync failed on the data directory's disk; check the disk's health")?;
        written += length as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    Ok(written as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_positive_rates_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = Settings {
            fsync_duration: Duration::from_millis(20),
            write_bytes: 3 * 1024 * 1024 + 1,
            write_group_bytes: 1024 * 1024,
        };
        let baseline = measure(dir.path(), &settings).expect("baseline");
        assert!(baseline.fdatasync_per_sec > 0.0);
        assert!(baseline.disk_write_bytes_per_sec > 0.0);
        assert_eq!(
            baseline.write_method(),
            "3 MiB in 1024 KiB writes, fdatasync after each"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
