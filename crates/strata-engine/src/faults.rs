//! Fault injection under the segment files (feature `fault-injection`, for tests only).
//!
//! Put a [`Faults`] plan in `Config::faults` and every segment read, write and data sync of
//! that store goes through it. It can fail the n-th write, sync or read with an errno, and
//! it can simulate a power loss: it remembers, per page, what each segment held at its last
//! sync; at the loss each page written since then independently reaches the disk whole,
//! not at all, or torn at 512-byte sectors (a sector is written whole or not at all), and
//! every later operation fails with `EIO`. The files on disk are then what a machine would
//! find after the power came back; a store opened on them without faults is the recovery.
//!
//! Durability is simulated: a successful sync marks the pages durable without calling
//! `fdatasync` (the test files are thrown away).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use parking_lot::Mutex;

/// Page size of the simulated page cache.
const PAGE_BYTES: u64 = 4096;
/// Unit a disk writes whole or not at all.
const SECTOR_BYTES: usize = 512;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// The error an injected failure returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedError {
    /// `EIO`: the device failed.
    Io,
    /// `ENOSPC`: the device is full.
    NoSpace,
}

impl InjectedError {
    fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            InjectedError::Io => EIO,
            InjectedError::NoSpace => ENOSPC,
        })
    }
}

/// What a simulated power loss did to the pages written since their last sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerLoss {
    /// Pages whose new content reached the disk whole.
    pub pages_kept: u64,
    /// Pages left as they were at their file's last sync.
    pub pages_dropped: u64,
    /// Pages with some sectors new and some old.
    pub pages_torn: u64,
}

/// A plan of faults for one store; see the module documentation.
#[derive(Default)]
pub struct Faults {
    state: Mutex<State>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults")
    }
}

#[derive(Default)]
struct State {
    writes: u64,
    syncs: u64,
    reads: u64,
    fail_write: Option<(u64, InjectedError)>,
    fail_sync: Option<(u64, InjectedError)>,
    fail_read: Option<(u64, InjectedError)>,
    /// Power is lost instead of doing the n-th write or sync (counted together).
    power_loss_at: Option<(u64, u64)>,
    power_loss: Option<PowerLoss>,
    /// Per segment: a handle and the content each page had at the last sync.
    unsynced: BTreeMap<u64, UnsyncedFile>,
}

struct UnsyncedFile {
    file: File,
    pages: BTreeMap<u64, Vec<u8>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The `nth` write (0-based, counting every segment write) fails with `error`.
    pub fn fail_write(&self, nth: u64, error: InjectedError) {
        self.state.lock().fail_write = Some((nth, error));
    }

    /// The `nth` data sync (0-based) fails with `error`; what it was to sync stays unsynced.
    pub fn fail_sync(&self, nth: u64, error: InjectedError) {
        self.state.lock().fail_sync = Some((nth, error));
    }

    /// The `nth` read (0-based) fails with `error`.
    pub fn fail_read(&self, nth: u64, error: InjectedError) {
        self.state.lock().fail_read = Some((nth, error));
    }

    /// Power is lost instead of the `nth` write or sync (0-based, counted together); `seed`
    /// decides which unsynced pages reach the disk.
    pub fn lose_power_at(&self, nth: u64, seed: u64) {
        self.state.lock().power_loss_at = Some((nth, seed));
    }

    /// Loses power now.
    pub fn lose_power_now(&self, seed: u64) -> PowerLoss {
        let mut state = self.state.lock();
        state.lose_power(seed)
    }

    /// What the power loss did, once it happened.
    pub fn power_loss(&self) -> Option<PowerLoss> {
        self.state.lock().power_loss
    }

    /// Writes and syncs done (or attempted) so far.
    pub fn operations(&self) -> u64 {
        let state = self.state.lock();
        state.writes + state.syncs
    }

    /// Reads done (or attempted) so far.
    pub fn reads(&self) -> u64 {
        self.state.lock().reads
    }

    /// Writes done (or attempted) so far.
    pub fn writes(&self) -> u64 {
        self.state.lock().writes
    }

    pub(crate) fn write_at(
        &self,
        file: &File,
        segment_index: u64,
        buffer: &[u8],
        offset: u64,
    ) -> io::Result<usize> {
        let mut state = self.state.lock();
        state.before_operation()?;
        let nth = state.writes;
        state.writes += 1;
        if let Some((at, error)) = state.fail_write
            && at == nth
        {
            return Err(error.to_io());
        }
        state.remember_pages(file, segment_index, offset, buffer.len())?;
        // Written while the lock is held, so a power loss sees each write whole or not at all.
        file.write_at(buffer, offset)
    }

    pub(crate) fn sync_data(&self, file: &File, segment_index: u64) -> io::Result<()> {
        let _ = file;
        let mut state = self.state.lock();
        state.before_operation()?;
        let nth = state.syncs;
        state.syncs += 1;
        if let Some((at, error)) = state.fail_sync
            && at == nth
        {
            return Err(error.to_io());
        }
        state.unsynced.remove(&segment_index);
        Ok(())
    }

    pub(crate) fn read_at(&self, file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        {
            let mut state = self.state.lock();
            let nth = state.reads;
            state.reads += 1;
            if let Some((at, error)) = state.fail_read
                && at == nth
            {
                return Err(error.to_io());
            }
        }
        file.read_at(buffer, offset)
    }
}

impl State {
    /// Fails once the power is gone; loses it when this operation is the one planned.
    fn before_operation(&mut self) -> io::Result<()> {
        if self.power_loss.is_some() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        if let Some((at, seed)) = self.power_loss_at
            && at == self.writes + self.syncs
        {
            self.lose_power(seed);
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }

    /// Keeps what each page about to be written held since the last sync.
    fn remember_pages(
        &mut self,
        file: &File,
        segment_index: u64,
        offset: u64,
        length: usize,
    ) -> io::Result<()> {
        if length == 0 {
            return Ok(());
        }
        let unsynced = match self.unsynced.entry(segment_index) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(UnsyncedFile {
                file: file.try_clone()?,
                pages: BTreeMap::new(),
            }),
        };
        let first_page = offset / PAGE_BYTES;
        let last_page = (offset + length as u64 - 1) / PAGE_BYTES;
        for page in first_page..=last_page {
            if unsynced.pages.contains_key(&page) {
                continue;
            }
            let mut before = vec![0u8; PAGE_BYTES as usize];
            let mut filled = 0;
            while filled < before.len() {
                let read =
                    file.read_at(&mut before[filled..], page * PAGE_BYTES + filled as u64)?;
                if read == 0 {
                    break;
                }
                filled += read;
            }
            before.truncate(filled);
            unsynced.pages.insert(page, before);
        }
        Ok(())
    }

    fn lose_power(&mut self, seed: u64) -> PowerLoss {
        if let Some(done) = self.power_loss {
            return done;
        }
        let mut random = SplitMix64(seed);
        let mut outcome = PowerLoss::default();
        for unsynced in std::mem::take(&mut self.unsynced).into_values() {
            for (page, before) in unsynced.pages {
                let offset = page * PAGE_BYTES;
                let mut now = vec![0u8; before.len()];
                if unsynced.file.read_exact_at(&mut now, offset).is_err() {
                    continue;
                }
                let image = match random.next() % 4 {
                    0 => {
                        outcome.pages_kept += 1;
                        continue;
                    }
                    1 => {
                        outcome.pages_dropped += 1;
                        before
                    }
                    _ => {
                        outcome.pages_torn += 1;
                        let mut image = now;
                        for (sector, old) in image
                            .chunks_mut(SECTOR_BYTES)
                            .zip(before.chunks(SECTOR_BYTES))
                        {
                            if random.next().is_multiple_of(2) {
                                sector.copy_from_slice(old);
                            }
                        }
                        image
                    }
                };
                // The machine is off: nothing can be reported if the test's disk fails here.
                let _ = unsynced.file.write_all_at(&image, offset);
            }
        }
        self.power_loss = Some(outcome);
        outcome
    }
}

/// A small deterministic generator, so a seed replays the same loss.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_loss_keeps_synced_pages_and_decides_unsynced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.set_len(4 * PAGE_BYTES).unwrap();
        let faults = Faults::new();
        faults.write_at(&file, 0, &[1u8; 4096], 0).unwrap();
        faults.sync_data(&file, 0).unwrap();
        faults.write_at(&file, 0, &[2u8; 8192], 4096).unwrap();
        let outcome = faults.lose_power_now(7);
        assert_eq!(
            outcome.pages_kept + outcome.pages_dropped + outcome.pages_torn,
            2
        );
        let mut synced = [0u8; 4096];
        file.read_exact_at(&mut synced, 0).unwrap();
        assert!(synced.iter().all(|&byte| byte == 1), "synced page kept");
        let mut rest = [0u8; 8192];
        file.read_exact_at(&mut rest, 4096).unwrap();
        for sector in rest.chunks(SECTOR_BYTES) {
            assert!(
                sector.iter().all(|&byte| byte == 2) || sector.iter().all(|&byte| byte == 0),
                "every sector is old or new, whole"
            );
        }
        assert!(faults.write_at(&file, 0, &[3u8; 8], 0).is_err());
        assert!(faults.sync_data(&file, 0).is_err());
    }
}
