//! Where a store takes the time from: the `created` stamp of the events it records and the
//! "now" that `$maxAge` is measured from. A store reads the system clock unless it is given
//! a [`ManualClock`], which tests move by hand instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::types::Timestamp;

/// A store's source of time; cheap to clone. The default is the system clock.
#[derive(Clone, Default)]
pub struct Clock {
    /// Nanoseconds since the Unix epoch, set by a [`ManualClock`]; `None`: the system clock.
    manual_nanos: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time of this clock.
    pub fn now(&self) -> Timestamp {
        match &self.manual_nanos {
            None => Timestamp::now(),
            Some(nanos) => Timestamp(nanos.load(Ordering::Acquire)),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual_nanos {
            None => f.write_str("Clock::System"),
            Some(nanos) => write!(f, "Clock::Manual({})", nanos.load(Ordering::Acquire)),
        }
    }
}

/// A clock that stands still until it is moved: give [`ManualClock::clock`] to a store, then
/// [`ManualClock::advance`] to let its events age without waiting.
#[derive(Clone, Debug)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(start.0)),
        }
    }

    /// A clock showing the system time of the moment it is made.
    pub fn starting_now() -> Self {
        Self::starting_at(Timestamp::now())
    }

    /// The [`Clock`] that follows this one, for a store.
    pub fn clock(&self) -> Clock {
        Clock {
            manual_nanos: Some(self.nanos.clone()),
        }
    }

    /// Moves the time forwards by `by` (saturating at the end of the representable range).
    pub fn advance(&self, by: Duration) {
        let by_nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |nanos| {
                Some(nanos.saturating_add(by_nanos))
            });
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let manual = ManualClock::starting_at(Timestamp(1_000));
        let clock = manual.clock();
        assert_eq!(clock.now(), Timestamp(1_000));
        manual.advance(Duration::from_nanos(500));
        assert_eq!(clock.now(), Timestamp(1_500));
        assert_eq!(clock.clone().now(), manual.now());
    }

    #[test]
    fn the_default_clock_is_the_system_clock() {
        let before = Timestamp::now();
        let read = Clock::default().now();
        assert!(read >= before);
    }
}
