//! Failed logins slow down the address they come from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Added to the answer per recent failure from the same address.
const DELAY_PER_FAILURE: Duration = Duration::from_millis(200);
/// The longest a failed login is held back.
const DELAY_MAX: Duration = Duration::from_secs(3);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(300);
/// Addresses remembered at most; the oldest are forgotten first when full.
const ADDRESSES_MAX: usize = 10_000;

#[derive(Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    /// Records a failure and says how long to hold the answer back.
    pub(crate) fn failed(&self, source: Option<IpAddr>) -> Duration {
        let Some(source) = source else {
            return DELAY_PER_FAILURE;
        };
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= ADDRESSES_MAX {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
            if failures.len() >= ADDRESSES_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(source).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        DELAY_PER_FAILURE.saturating_mul(entry.0).min(DELAY_MAX)
    }

    pub(crate) fn succeeded(&self, source: Option<IpAddr>) {
        if let Some(source) = source {
            self.failures.lock().remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_address_up_to_the_maximum() {
        let throttle = LoginThrottle::default();
        let address: IpAddr = "10.0.0.1".parse().expect("address");
        let other: IpAddr = "10.0.0.2".parse().expect("address");
        let first = throttle.failed(Some(address));
        let second = throttle.failed(Some(address));
        assert!(second > first);
        assert_eq!(throttle.failed(Some(other)), first);
        for _ in 0..100 {
            assert!(throttle.failed(Some(address)) <= DELAY_MAX);
        }
        throttle.succeeded(Some(address));
        assert_eq!(throttle.failed(Some(address)), first);
    }
}
