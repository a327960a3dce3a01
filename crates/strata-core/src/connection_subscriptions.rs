//! The bound on subscriptions one client connection may hold at once. The server puts a
//! [`ConnectionSubscriptions`] into every request of a connection (as an extension), and
//! each front end (gRPC, HTTP) takes a place from it for each subscription it starts, so
//! that one client cannot take every one of the server's subscription slots over one
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Subscriptions one connection may hold at once, unless configured otherwise.
pub const CONNECTION_SUBSCRIPTIONS_MAX_DEFAULT: usize = 128;

/// One connection's subscription places; clones share them.
#[derive(Clone, Debug)]
pub struct ConnectionSubscriptions {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One subscription's place on its connection, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSubscription {
    open: Arc<AtomicUsize>,
}

impl ConnectionSubscriptions {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Subscriptions open on this connection now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A place for one more subscription; `None` when the connection holds its limit.
    pub fn take(&self) -> Option<ConnectionSubscription> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()?;
        Some(ConnectionSubscription {
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for ConnectionSubscription {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionSubscriptions;

    #[test]
    fn places_run_out_at_the_limit_and_come_back_when_dropped() {
        let connection = ConnectionSubscriptions::new(2);
        let first = connection.take().expect("a first place");
        let second = connection.clone().take().expect("a second place, shared");
        assert!(connection.take().is_none(), "the third is over the limit");
        assert_eq!(connection.open(), 2);
        drop(first);
        assert_eq!(connection.open(), 1);
        let _third = connection.take().expect("a place came back");
        drop(second);
        assert_eq!(connection.open(), 1);
    }

    #[test]
    fn a_limit_of_zero_refuses_every_subscription() {
        assert!(ConnectionSubscriptions::new(0).take().is_none());
    }
}
