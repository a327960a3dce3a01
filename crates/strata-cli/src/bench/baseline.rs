//! The disk's own speed, measured in the same run on the same directory as the store, so
//! every figure can be read as a ratio to what the hardware can do.

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
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// How long and how much the baseline measures.
pub(crate) struct Settings {
    pub(crate) fsync_duration: Duration,
    pub(crate) write_bytes: u64,
}

/// What the disk under the data directory can do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Baseline {
    pub(crate) fdatasync_per_sec: f64,
    pub(crate) disk_write_bytes_per_sec: f64,
}

/// Measures both figures, leaving no file behind.
pub(crate) fn measure(dir: &Path, settings: &Settings) -> anyhow::Result<Baseline> {
    let fdatasync_per_sec = with_scratch_file(&dir.join(FSYNC_FILE), |file| {
        fdatasync_rate(file, settings.fsync_duration)
    })?;
    let disk_write_bytes_per_sec = with_scratch_file(&dir.join(WRITE_FILE), |file| {
        sequential_write_rate(file, settings.write_bytes)
    })?;
    Ok(Baseline {
        fdatasync_per_sec,
        disk_write_bytes_per_sec,
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

/// Writes `total_bytes` sequentially in 1 MiB writes, then one fdatasync; the time
/// includes the sync, so the figure is what reaches the disk, not the page cache.
fn sequential_write_rate(file: &mut File, total_bytes: u64) -> anyhow::Result<f64> {
    let bar = progress::bytes_bar("baseline disk write", total_bytes);
    let chunk = vec![0x5Au8; WRITE_CHUNK_BYTES];
    let started = Instant::now();
    let mut written = 0u64;
    while written < total_bytes {
        let length = (total_bytes - written).min(WRITE_CHUNK_BYTES as u64) as usize;
        file.write_all(&chunk[..length]).context(
            "the disk-write baseline cannot write its scratch file; check free space \
                      (it needs --baseline-write-mib MiB)",
        )?;
        written += length as u64;
        bar.set_position(written);
    }
    file.sync_data()
        .context("fdatasync failed on the data directory's disk; check the disk's health")?;
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
        };
        let baseline = measure(dir.path(), &settings).expect("baseline");
        assert!(baseline.fdatasync_per_sec > 0.0);
        assert!(baseline.disk_write_bytes_per_sec > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
