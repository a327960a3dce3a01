//! The Prometheus metrics of a node, under KurrentDB's names where KurrentDB has an
//! equivalent (`kurrentdb_io_*`, `kurrentdb_grpc_method_duration_seconds`,
//! `kurrentdb_*_incoming_grpc_calls*`, `kurrentdb_persistent_sub_*`) and `strata_*`
//! otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_core::{Position, SubscriptionProgress};
use strata_persistent::GroupInfo;

use crate::kept_series::{CallKind, CallSeries, GrpcActivity, IoActivity};

/// Made once: a header looked up by `&str` has its name parsed on every call.
const GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");

/// Reads gauges off a part of the node (the store, ...) when the metrics are scraped.
type Sampler = Box<dyn Fn(&Metrics) + Send + Sync>;

pub(crate) type Labels = Vec<(&'static str, String)>;
pub(crate) type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets from 10 µs to ~5 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

/// Every metric of a node; shared by the gRPC and HTTP front ends and the store wrapper.
pub struct Metrics {
    registry: Registry,
    pub(crate) io_events: Family<Labels, Counter>,
    pub(crate) io_bytes: Family<Labels, Counter>,
    grpc_method_duration: HistogramFamily,
    grpc_current_calls: Gauge,
    grpc_calls: Family<Labels, Counter>,
    /// The series of the families above that every call touches.
    series: CallSeries,
    http_requests: Family<Labels, Counter>,
    http_request_duration: HistogramFamily,
    pub(crate) append_duration: Histogram,
    pub(crate) append_events: Histogram,
    persistent_connections: Family<Labels, Gauge>,
    persistent_parked: Family<Labels, Gauge>,
    persistent_in_flight: Family<Labels, Gauge>,
    persistent_items_processed: Family<Labels, Gauge>,
    persistent_groups: Gauge,
    projection_events_processed: Family<Labels, Counter>,
    projection_progress: Family<Labels, Gauge<f64, AtomicU64>>,
    projection_running: Family<Labels, Gauge>,
    projection_status: Family<Labels, Gauge>,
    writer_flush_size_max: Gauge,
    writer_flush_duration_max: Gauge<f64, AtomicU64>,
    /// The largest flush since the last scrape: bytes, and nanoseconds.
    flush_bytes_since_scrape: AtomicU64,
    flush_nanos_since_scrape: AtomicU64,
    commit_appends: Histogram,
    commit_bytes: Histogram,
    commit_duration: Histogram,
    fsync_duration: Histogram,
    appends_in_flight_kib: Gauge,
    postgres_reader_connections: Gauge,
    subscriptions_live: Gauge,
    subscription_lag_max: Gauge,
    grpc_subscriptions_live: Gauge,
    grpc_subscription_lag_max: Gauge,
    /// Where the live catch-up subscriptions of each front end have got to.
    http_subscriptions: SubscriptionProgress,
    grpc_subscriptions: SubscriptionProgress,
    samplers: parking_lot::Mutex<Vec<Sampler>>,
    /// 1 while this node leads its cluster (always, for a single node); the term.
    cluster_leader: Gauge,
    cluster_epoch: Gauge,
    /// False from an append refused because the store cannot write until one succeeds.
    pub(crate) writable: AtomicBool,
    /// Per-connector figures (`strata_connector_*`).
    pub(crate) connectors: crate::connector_metrics::ConnectorMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let io_events = Family::<Labels, Counter>::default();
        registry.register(
            "kurrentdb_io_events",
            "Events read and written",
            io_events.clone(),
        );
        let io_bytes = Family::<Labels, Counter>::default();
        registry.register(
            "kurrentdb_io_bytes",
            "Event bytes read and written",
            io_bytes.clone(),
        );
        let grpc_method_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "kurrentdb_grpc_method_duration_seconds",
            "Duration of client-protocol gRPC calls",
            grpc_method_duration.clone(),
        );
        let grpc_current_calls = Gauge::default();
        registry.register(
            "kurrentdb_current_incoming_grpc_calls",
            "gRPC calls started and not yet answered",
            grpc_current_calls.clone(),
        );
        let grpc_calls = Family::<Labels, Counter>::default();
        registry.register(
            "kurrentdb_incoming_grpc_calls",
            "gRPC calls by outcome",
            grpc_calls.clone(),
        );
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "strata_http_requests",
            "HTTP requests by method and status",
            http_requests.clone(),
        );
        let http_request_duration: HistogramFamily =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "strata_http_request_duration_seconds",
            "Time to the answer's head of HTTP requests",
            http_request_duration.clone(),
        );
        let append_duration = latency_histogram();
        registry.register(
            "strata_append_duration_seconds",
            "Time from an append's call to its durable acknowledgement",
            append_duration.clone(),
        );
        let append_events = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register(
            "strata_append_events",
            "Events per append",
            append_events.clone(),
        );
        let persistent_connections = Family::<Labels, Gauge>::default();
        registry.register(
            "kurrentdb_persistent_sub_connections",
            "Consumers connected to a persistent subscription group",
            persistent_connections.clone(),
        );
        let persistent_parked = Family::<Labels, Gauge>::default();
        registry.register(
            "kurrentdb_persistent_sub_parked_messages",
            "Parked events of a group",
            persistent_parked.clone(),
        );
        let persistent_in_flight = Family::<Labels, Gauge>::default();
        registry.register(
            "kurrentdb_persistent_sub_in_flight_messages",
            "Events of a group delivered and not yet acknowledged",
            persistent_in_flight.clone(),
        );
        let persistent_items_processed = Family::<Labels, Gauge>::default();
        registry.register(
            "strata_persistent_sub_items_processed",
            "Events a group delivered since it started",
            persistent_items_processed.clone(),
        );
        let persistent_groups = Gauge::default();
        registry.register(
            "strata_persistent_sub_groups",
            "Persistent subscription groups",
            persistent_groups.clone(),
        );
        let projection_events_processed = Family::<Labels, Counter>::default();
        registry.register(
            "kurrentdb_projection_events_processed_after_restart",
            "Events a projection processed since it last started",
            projection_events_processed.clone(),
        );
        let projection_progress = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "kurrentdb_projection_progress",
            "Projection progress 0 - 1, where 1 = projection progress at 100%",
            projection_progress.clone(),
        );
        let projection_running = Family::<Labels, Gauge>::default();
        registry.register(
            "kurrentdb_projection_running",
            "If 1, projection is in 'Running' state",
            projection_running.clone(),
        );
        let projection_status = Family::<Labels, Gauge>::default();
        registry.register(
            "kurrentdb_projection_status",
            "If 1, projection is in specified state",
            projection_status.clone(),
        );
        let writer_flush_size_max = Gauge::default();
        registry.register(
            "kurrentdb_writer_flush_size_max",
            "Largest group commit since the previous scrape, in log bytes",
            writer_flush_size_max.clone(),
        );
        let writer_flush_duration_max = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kurrentdb_writer_flush_duration_max_seconds",
            "Longest group commit since the previous scrape",
            writer_flush_duration_max.clone(),
        );
        let commit_appends = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "strata_group_commit_appends",
            "Appends and deletes acknowledged by one group commit",
            commit_appends.clone(),
        );
        let commit_bytes = Histogram::new(exponential_buckets(256.0, 4.0, 10));
        registry.register(
            "strata_group_commit_bytes",
            "Log bytes made durable by one group commit",
            commit_bytes.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register(
            "strata_group_commit_duration_seconds",
            "Time of one group commit: syncs, index update, acknowledgement",
            commit_duration.clone(),
        );
        let fsync_duration = latency_histogram();
        registry.register(
            "strata_fsync_duration_seconds",
            "Time in fdatasync per group commit",
            fsync_duration.clone(),
        );
        let appends_in_flight_kib = Gauge::default();
        registry.register(
            "strata_appends_in_flight_kib",
            "Appends accepted and not yet acknowledged (queued for the writer or committing), KiB",
            appends_in_flight_kib.clone(),
        );
        let postgres_reader_connections = Gauge::default();
        registry.register(
            "strata_postgres_reader_connections",
            "PostgreSQL connections the readers hold open (the writer has one more)",
            postgres_reader_connections.clone(),
        );
        let subscriptions_live = Gauge::default();
        registry.register(
            "strata_http_subscriptions",
            "Catch-up subscriptions open over HTTP",
            subscriptions_live.clone(),
        );
        let subscription_lag_max = Gauge::default();
        registry.register(
            "strata_http_subscription_lag_bytes_max",
            "Log bytes between the end of $all and the last event the furthest-behind HTTP subscription delivered",
            subscription_lag_max.clone(),
        );
        let grpc_subscriptions_live = Gauge::default();
        registry.register(
            "strata_grpc_subscriptions",
            "Catch-up subscriptions open over gRPC",
            grpc_subscriptions_live.clone(),
        );
        let grpc_subscription_lag_max = Gauge::default();
        registry.register(
            "strata_grpc_subscription_lag_bytes_max",
            "Log bytes between the end of $all and the last event the furthest-behind gRPC catch-up subscription delivered",
            grpc_subscription_lag_max.clone(),
        );
        let connectors = crate::connector_metrics::ConnectorMetrics::register(&mut registry);
        let cluster_leader = Gauge::default();
        registry.register(
            "strata_cluster_leader",
            "1 while this node is its cluster's leader (runs persistent groups, projections, connectors), else 0",
            cluster_leader.clone(),
        );
        let cluster_epoch = Gauge::default();
        registry.register(
            "strata_cluster_epoch",
            "The leadership term this node last saw",
            cluster_epoch.clone(),
        );
        cluster_leader.set(1);
        cluster_epoch.set(1);
        Self {
            registry,
            io_events,
            io_bytes,
            grpc_method_duration,
            grpc_current_calls,
            grpc_calls,
            series: CallSeries::default(),
            http_requests,
            http_request_duration,
            append_duration,
            append_events,
            persistent_connections,
            persistent_parked,
            persistent_in_flight,
            persistent_items_processed,
            persistent_groups,
            projection_events_processed,
            projection_progress,
            projection_running,
            projection_status,
            writer_flush_size_max,
            writer_flush_duration_max,
            flush_bytes_since_scrape: AtomicU64::new(0),
            flush_nanos_since_scrape: AtomicU64::new(0),
            commit_appends,
            commit_bytes,
            commit_duration,
            fsync_duration,
            appends_in_flight_kib,
            postgres_reader_connections,
            subscriptions_live,
            subscription_lag_max,
            grpc_subscriptions_live,
            grpc_subscription_lag_max,
            http_subscriptions: SubscriptionProgress::default(),
            grpc_subscriptions: SubscriptionProgress::default(),
            samplers: parking_lot::Mutex::new(Vec::new()),
            cluster_leader,
            cluster_epoch,
            writable: AtomicBool::new(true),
            connectors,
        }
    }

    pub(crate) fn count_io(&self, activity: IoActivity, events: usize, bytes: usize) {
        if events == 0 {
            return;
        }
        self.series
            .io_events(&self.io_events, activity)
            .inc_by(events as u64);
        self.series
            .io_bytes(&self.io_bytes, activity)
            .inc_by(bytes as u64);
    }

    /// Counts one group commit of the store: `requests` appends and deletes acknowledged,
    /// `bytes` made durable, `sync` of it in fdatasync (zero when the store does not sync
    /// itself, as with PostgreSQL), `flush` in all.
    pub fn record_commit(&self, requests: usize, bytes: u64, sync: Duration, flush: Duration) {
        self.commit_appends.observe(requests as f64);
        self.commit_bytes.observe(bytes as f64);
        self.commit_duration.observe(flush.as_secs_f64());
        if !sync.is_zero() {
            self.fsync_duration.observe(sync.as_secs_f64());
        }
        self.flush_bytes_since_scrape
            .fetch_max(bytes, Ordering::Relaxed);
        let nanos = u64::try_from(flush.as_nanos()).unwrap_or(u64::MAX);
        self.flush_nanos_since_scrape
            .fetch_max(nanos, Ordering::Relaxed);
    }

    /// Sets the KiB of appends accepted and not yet acknowledged.
    pub fn set_appends_in_flight_kib(&self, kib: u64) {
        self.appends_in_flight_kib
            .set(i64::try_from(kib).unwrap_or(i64::MAX));
    }

    /// Sets the PostgreSQL reader connections open.
    pub fn set_postgres_reader_connections(&self, open: usize) {
        self.postgres_reader_connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Runs `sampler` at each scrape, before the metrics are encoded, to read gauges off
    /// the node (e.g. [`Metrics::set_appends_in_flight_kib`] from the store).
    pub fn on_scrape(&self, sampler: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.samplers.lock().push(Box::new(sampler));
    }

    /// The progress of the live HTTP subscriptions.
    pub(crate) fn http_subscriptions(&self) -> &SubscriptionProgress {
        &self.http_subscriptions
    }

    /// Sets the cluster gauges: whether this node leads, and the term it last saw.
    pub fn set_cluster(&self, leader: bool, epoch: u64) {
        self.cluster_leader.set(i64::from(leader));
        self.cluster_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// The progress of the live gRPC catch-up subscriptions: hand it to the gRPC front
    /// end (`GrpcOptions::subscription_progress`).
    pub fn grpc_subscriptions(&self) -> &SubscriptionProgress {
        &self.grpc_subscriptions
    }

    /// Sets the subscription gauges of both front ends against `log_end`, the end of `$all`.
    pub(crate) fn set_subscription_lag(&self, log_end: Position) {
        let gauges = [
            (
                &self.http_subscriptions,
                &self.subscriptions_live,
                &self.subscription_lag_max,
            ),
            (
                &self.grpc_subscriptions,
                &self.grpc_subscriptions_live,
                &self.grpc_subscription_lag_max,
            ),
        ];
        for (progress, live, lag_max) in gauges {
            let sample = progress.sample(log_end);
            live.set(i64::try_from(sample.live).unwrap_or(i64::MAX));
            lag_max.set(i64::try_from(sample.lag_bytes_max).unwrap_or(i64::MAX));
        }
    }

    /// Sets the persistent-subscription gauges to `groups` (groups gone disappear).
    pub(crate) fn set_persistent(&self, groups: &[GroupInfo]) {
        self.persistent_groups
            .set(i64::try_from(groups.len()).unwrap_or(i64::MAX));
        for family in [
            &self.persistent_connections,
            &self.persistent_parked,
            &self.persistent_in_flight,
            &self.persistent_items_processed,
        ] {
            family.clear();
        }
        for group in groups {
            let labels = vec![
                ("event_stream_id", group.source.to_string()),
                ("group_name", group.group.clone()),
            ];
            let set = |family: &Family<Labels, Gauge>, value: u64| {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(&self.persistent_connections, group.connections.len() as u64);
            set(&self.persistent_parked, group.parked_count);
            set(&self.persistent_in_flight, group.in_flight_count);
            set(&self.persistent_items_processed, group.total_items);
        }
    }

    /// Sets the projection gauges to `projections` (projections gone disappear), under
    /// KurrentDB's names and statuses (`Running`, `Faulted`, `Stopped`).
    pub fn set_projections(&self, projections: &[ProjectionSample]) {
        self.projection_events_processed.clear();
        self.projection_progress.clear();
        self.projection_running.clear();
        self.projection_status.clear();
        for projection in projections {
            let labels = vec![("projection", projection.name.clone())];
            self.projection_events_processed
                .get_or_create(&labels)
                .inc_by(projection.events_processed_after_restart);
            self.projection_progress
                .get_or_create(&labels)
                .set(projection.progress);
            let status = projection.kurrentdb_status();
            self.projection_running
                .get_or_create(&labels)
                .set(i64::from(status == "Running"));
            for named in ["Running", "Faulted", "Stopped"] {
                self.projection_status
                    .get_or_create(&vec![
                        ("projection", projection.name.clone()),
                        ("status", named.to_owned()),
                    ])
                    .set(i64::from(status == named));
            }
        }
    }

    /// The metrics in the OpenMetrics text format (what Prometheus scrapes). The flush
    /// maxima start again from this scrape.
    pub fn encode(&self) -> String {
        for sampler in self.samplers.lock().iter() {
            sampler(self);
        }
        let bytes = self.flush_bytes_since_scrape.swap(0, Ordering::Relaxed);
        self.writer_flush_size_max
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let nanos = self.flush_nanos_since_scrape.swap(0, Ordering::Relaxed);
        self.writer_flush_duration_max
            .set(Duration::from_nanos(nanos).as_secs_f64());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Whether the last append did not fail for a reason only a restart cures.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Events read and written so far, as the `io` counters hold them.
    pub fn io_events(&self, activity: &'static str) -> u64 {
        self.io_events
            .get_or_create(&vec![("activity", activity.to_owned())])
            .get()
    }
}

/// What the projection gauges show of one projection ([`Metrics::set_projections`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionSample {
    pub name: String,
    /// The projection's status as its statistics give it (`Running`, `Faulted`,
    /// `Completed/Stopped`, ...).
    pub status: String,
    /// 0 to 1.
    pub progress: f64,
    pub events_processed_after_restart: u64,
}

impl ProjectionSample {
    /// The status among KurrentDB's three metric statuses.
    fn kurrentdb_status(&self) -> &'static str {
        if self.status.starts_with("Faulted") {
            "Faulted"
        } else if self.status == "Running" {
            "Running"
        } else {
            "Stopped"
        }
    }
}

/// KurrentDB's `activity` label for a client-protocol gRPC method; `None` for the others.
fn grpc_activity(path: &str) -> Option<GrpcActivity> {
    let method = path.rsplit('/').next()?;
    let service = path.trim_start_matches('/').split('/').next()?;
    if !service.ends_with("streams.Streams") && !service.ends_with("StreamsService") {
        return None;
    }
    match method {
        "Append" | "BatchAppend" | "AppendSession" | "MultiStreamAppend" => {
            Some(GrpcActivity::Append)
        }
        "Read" => Some(GrpcActivity::Read),
        "Delete" => Some(GrpcActivity::Delete),
        "Tombstone" => Some(GrpcActivity::Tombstone),
        _ => None,
    }
}

/// A call as it arrived, to be counted and timed when its answer's head leaves
/// ([`Metrics::call_answered`]).
pub(crate) struct ArrivedCall {
    started: Instant,
    kind: ArrivedKind,
}

enum ArrivedKind {
    /// An HTTP request, counted under `strata_http_*` by method and status.
    Http { method: axum::http::Method },
    /// A gRPC call, counted under KurrentDB's names.
    Grpc { activity: Option<GrpcActivity> },
}

impl Metrics {
    /// Notes a call arriving: gRPC calls under KurrentDB's names, other HTTP requests under
    /// `strata_http_*`.
    pub(crate) fn call_arrived<B>(&self, request: &axum::http::Request<B>) -> ArrivedCall {
        let is_grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        let started = Instant::now();
        if !is_grpc {
            let method = request.method().clone();
            return ArrivedCall {
                started,
                kind: ArrivedKind::Http { method },
            };
        }
        let activity = grpc_activity(request.uri().path());
        self.grpc_current_calls.inc();
        ArrivedCall {
            started,
            kind: ArrivedKind::Grpc { activity },
        }
    }

    /// Counts and times `call` by the head of its answer.
    pub(crate) fn call_answered(&self, call: ArrivedCall, response: &Response) {
        let activity = match call.kind {
            ArrivedKind::Http { method } => {
                let labels = vec![
                    ("method", method.as_str().to_owned()),
                    ("status", response.status().as_u16().to_string()),
                ];
                self.http_requests.get_or_create(&labels).inc();
                self.http_request_duration
                    .get_or_create(&vec![("method", labels[0].1.clone())])
                    .observe(call.started.elapsed().as_secs_f64());
                return;
            }
            ArrivedKind::Grpc { activity } => activity,
        };
        self.grpc_current_calls.dec();
        // A status in the head is a trailers-only answer: the call failed before any message
        // (0 is OK; 12 is UNIMPLEMENTED, 4 DEADLINE_EXCEEDED).
        let status = response
            .headers()
            .get(&GRPC_STATUS)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u32>().ok());
        let count = |kind: CallKind| {
            self.series.grpc_calls(&self.grpc_calls, kind).inc();
        };
        count(CallKind::Total);
        match status {
            Some(0) | None => {}
            Some(12) => {
                count(CallKind::Failed);
                count(CallKind::Unimplemented);
            }
            Some(4) => {
                count(CallKind::Failed);
                count(CallKind::DeadlineExceeded);
            }
            Some(_) => count(CallKind::Failed),
        }
        if let Some(activity) = activity {
            let succeeded = matches!(status, Some(0) | None);
            self.series
                .grpc_duration(&self.grpc_method_duration, activity, succeeded)
                .observe(call.started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_client_protocol_methods_as_kurrentdb_does() {
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/Append").map(GrpcActivity::label),
            Some("append")
        );
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/BatchAppend")
                .map(GrpcActivity::label),
            Some("append")
        );
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/Read").map(GrpcActivity::label),
            Some("read")
        );
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/Tombstone").map(GrpcActivity::label),
            Some("tombstone")
        );
        assert_eq!(
            grpc_activity("/event_store.client.gossip.Gossip/Read").map(GrpcActivity::label),
            None
        );
    }

    #[test]
    fn projections_show_under_kurrentdb_names_and_statuses() {
        let metrics = Metrics::new();
        metrics.set_projections(&[
            ProjectionSample {
                name: "orders".to_owned(),
                status: "Running".to_owned(),
                progress: 1.0,
                events_processed_after_restart: 42,
            },
            ProjectionSample {
                name: "broken".to_owned(),
                status: "Faulted".to_owned(),
                progress: 0.0,
                events_processed_after_restart: 0,
            },
        ]);
        let text = metrics.encode();
        for line in [
            "kurrentdb_projection_events_processed_after_restart_total{projection=\"orders\"} 42",
            "kurrentdb_projection_running{projection=\"orders\"} 1",
            "kurrentdb_projection_running{projection=\"broken\"} 0",
            "kurrentdb_projection_status{projection=\"broken\",status=\"Faulted\"} 1",
            "kurrentdb_projection_status{projection=\"broken\",status=\"Running\"} 0",
            "kurrentdb_projection_progress{projection=\"orders\"} 1.0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        metrics.set_projections(&[]);
        assert!(!metrics.encode().contains("projection=\"orders\""));
    }

    #[test]
    fn counters_carry_kurrentdb_names() {
        let metrics = Metrics::new();
        metrics.count_io(IoActivity::Written, 3, 300);
        let text = metrics.encode();
        assert!(
            text.contains("kurrentdb_io_events_total{activity=\"written\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("kurrentdb_io_bytes_total{activity=\"written\"} 300"),
            "{text}"
        );
    }
}
