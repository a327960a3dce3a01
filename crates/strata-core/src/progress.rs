//! How far behind the end of `$all` the live subscriptions of a front end are, for its
//! lag gauges: each subscription records the position of the last event it delivered,
//! and a scrape compares the furthest-behind one with the log end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::types::Position;

/// The delivered positions of a front end's live subscriptions. Clones share them.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionProgress {
    delivered: Arc<Mutex<Vec<Weak<DeliveredPosition>>>>,
}

/// One subscription's progress; it stops counting when dropped.
#[derive(Debug, Default)]
pub struct DeliveredPosition {
    /// One past the position of the last event delivered (0 before the first).
    next: AtomicU64,
}

impl DeliveredPosition {
    /// Records that the event at `position` was delivered.
    pub fn delivered(&self, position: Position) {
        self.next
            .store(position.0.saturating_add(1), Ordering::Relaxed);
    }
}

/// What [`SubscriptionProgress::sample`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressSample {
    /// Live subscriptions.
    pub live: usize,
    /// Log bytes between `log_end` and the last event delivered by the furthest-behind
    /// subscription that delivered any (0 when none has).
    pub lag_bytes_max: u64,
}

impl SubscriptionProgress {
    /// A new live subscription; keep the handle for as long as it lives.
    pub fn track(&self) -> Arc<DeliveredPosition> {
        let position = Arc::new(DeliveredPosition::default());
        self.lock().push(Arc::downgrade(&position));
        position
    }

    /// The live subscriptions and the largest lag against `log_end`; forgets ended ones.
    pub fn sample(&self, log_end: Position) -> ProgressSample {
        let mut delivered = self.lock();
        delivered.retain(|position| position.strong_count() > 0);
        let lag_bytes_max = delivered
            .iter()
            .filter_map(Weak::upgrade)
            .map(|position| position.next.load(Ordering::Relaxed))
            .filter(|&next| next > 0)
            .map(|next| log_end.0.saturating_sub(next - 1))
            .max()
            .unwrap_or(0);
        ProgressSample {
            live: delivered.len(),
            lag_bytes_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<DeliveredPosition>>> {
        // The vector stays consistent whatever a panicking holder did.
        self.delivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_furthest_behind_subscription_sets_the_lag() {
        let progress = SubscriptionProgress::default();
        let ahead = progress.track();
        let behind = progress.track();
        let silent = progress.track();
        ahead.delivered(Position(900));
        behind.delivered(Position(100));
        assert_eq!(
            progress.sample(Position(1_000)),
            ProgressSample {
                live: 3,
                lag_bytes_max: 900
            }
        );
        drop(behind);
        drop(silent);
        assert_eq!(
            progress.sample(Position(1_000)),
            ProgressSample {
                live: 1,
                lag_bytes_max: 100
            }
        );
    }
}
