//! A count of events over the time it took.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Throughput {
    pub(crate) events: u64,
    pub(crate) elapsed: Duration,
}

impl Throughput {
    pub(crate) fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}
