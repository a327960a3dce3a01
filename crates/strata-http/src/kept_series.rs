//! The series that every call touches, each looked up in its family once and kept.
//!
//! A family lookup builds its label set (a `Vec` and `String`s), hashes it and takes the
//! family's lock; every append and read did that four to six times. A kept series is the
//! family's own metric (clones of a `Counter` or `Histogram` share their value), created on
//! first use as a lookup would create it, so what a scrape shows is unchanged.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{HistogramFamily, Labels};

/// One series of a family whose labels never change.
pub(crate) struct Kept<M>(OnceLock<M>);

impl<M> Default for Kept<M> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<M: Clone> Kept<M> {
    /// The series, looked up (and created) in `family` under `labels` on the first call.
    pub(crate) fn get<C: MetricConstructor<M>>(
        &self,
        family: &Family<Labels, M, C>,
        labels: impl FnOnce() -> Labels,
    ) -> &M {
        self.0
            .get_or_init(|| family.get_or_create(&labels()).clone())
    }
}

/// KurrentDB's `activity` label of a client-protocol gRPC method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrpcActivity {
    Append,
    Read,
    Delete,
    Tombstone,
}

impl GrpcActivity {
    const COUNT: usize = 4;

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Read => "read",
            Self::Delete => "delete",
            Self::Tombstone => "tombstone",
        }
    }
}

/// `kurrentdb_incoming_grpc_calls`'s `kind` label.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CallKind {
    Total,
    Failed,
    Unimplemented,
    DeadlineExceeded,
}

impl CallKind {
    const COUNT: usize = 4;

    fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Failed => "failed",
            Self::Unimplemented => "unimplemented",
            Self::DeadlineExceeded => "deadline-exceeded",
        }
    }
}

/// The kept series of the `io` counters, the gRPC call counts and the method durations.
#[derive(Default)]
pub(crate) struct CallSeries {
    /// Events and bytes; `[read, written]`.
    io_events: [Kept<Counter>; 2],
    io_bytes: [Kept<Counter>; 2],
    grpc_calls: [Kept<Counter>; CallKind::COUNT],
    /// By activity, then `[successful, failed]`.
    grpc_durations: [[Kept<Histogram>; 2]; GrpcActivity::COUNT],
}

/// `kurrentdb_io_*`'s `activity` label: what the front ends count.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IoActivity {
    Read,
    Written,
}

impl IoActivity {
    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Written => "written",
        }
    }
}

fn activity_labels(activity: IoActivity) -> Labels {
    vec![("activity", activity.label().to_owned())]
}

impl CallSeries {
    pub(crate) fn io_events<'a>(
        &'a self,
        family: &Family<Labels, Counter>,
        activity: IoActivity,
    ) -> &'a Counter {
        self.io_events[activity as usize].get(family, || activity_labels(activity))
    }

    pub(crate) fn io_bytes<'a>(
        &'a self,
        family: &Family<Labels, Counter>,
        activity: IoActivity,
    ) -> &'a Counter {
        self.io_bytes[activity as usize].get(family, || activity_labels(activity))
    }

    pub(crate) fn grpc_calls<'a>(
        &'a self,
        family: &Family<Labels, Counter>,
        kind: CallKind,
    ) -> &'a Counter {
        self.grpc_calls[kind as usize].get(family, || vec![("kind", kind.label().to_owned())])
    }

    pub(crate) fn grpc_duration<'a>(
        &'a self,
        family: &HistogramFamily,
        activity: GrpcActivity,
        succeeded: bool,
    ) -> &'a Histogram {
        let outcome = if succeeded { "successful" } else { "failed" };
        self.grpc_durations[activity as usize][usize::from(!succeeded)].get(family, || {
            vec![
                ("activity", activity.label().to_owned()),
                ("status", outcome.to_owned()),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_series_is_the_familys_own_metric() {
        let family = Family::<Labels, Counter>::default();
        let series = CallSeries::default();
        series.grpc_calls(&family, CallKind::Failed).inc();
        series.grpc_calls(&family, CallKind::Failed).inc();
        let labels = vec![("kind", "failed".to_owned())];
        family.get_or_create(&labels).inc();
        assert_eq!(family.get_or_create(&labels).get(), 3);
        assert_eq!(series.grpc_calls(&family, CallKind::Failed).get(), 3);
    }

    #[test]
    fn a_series_appears_only_once_used() {
        let family = Family::<Labels, Counter>::default();
        let series = CallSeries::default();
        let read = vec![("activity", "read".to_owned())];
        assert!(family.get(&read).is_none());
        series.io_events(&family, IoActivity::Read).inc_by(2);
        assert_eq!(family.get(&read).map(|counter| counter.get()), Some(2));
        assert!(
            family
                .get(&vec![("activity", "written".to_owned())])
                .is_none()
        );
    }

    #[test]
    fn durations_are_kept_by_activity_and_outcome() {
        fn one_bucket() -> Histogram {
            Histogram::new([1.0])
        }
        let family: HistogramFamily = Family::new_with_constructor(one_bucket);
        let series = CallSeries::default();
        series
            .grpc_duration(&family, GrpcActivity::Read, false)
            .observe(0.5);
        let labels = |activity: &str, status: &str| {
            vec![
                ("activity", activity.to_owned()),
                ("status", status.to_owned()),
            ]
        };
        assert!(family.get(&labels("read", "failed")).is_some());
        assert!(family.get(&labels("read", "successful")).is_none());
        assert!(family.get(&labels("append", "failed")).is_none());
    }
}
