//! Facts about the machine that are cheap to read and put the figures in context.

/// Cores and memory of the machine the bench ran on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Machine {
    pub(crate) cores: u64,
    pub(crate) memory_bytes: Option<u64>,
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|cores| cores.get() as u64)
            .unwrap_or(1);
        Self {
            cores,
            memory_bytes: memory_total_bytes(),
        }
    }
}

/// `MemTotal` from /proc/meminfo (Linux); `None` elsewhere.
fn memory_total_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kibibytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kibibytes * 1024)
}
