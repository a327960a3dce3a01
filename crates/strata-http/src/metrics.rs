//! The Prometheus metrics of a node, under KurrentDB's names where KurrentDB has an
//! equivalent (`kurrentdb_io_*`, `kurrentdb_grpc_method_duration_seconds`,
//! `kurrentdb_*_incoming_grpc_calls*`, `kurrentdb_persistent_sub_*`) and `strata_*`
//! otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_persistent::GroupInfo;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

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
    http_requests: Family<Labels, Counter>,
    http_request_duration: HistogramFamily,
    pub(crate) append_duration: Histogram,
    pub(crate) append_events: Histogram,
    persistent_connections: Family<Labels, Gauge>,
    persistent_parked: Family<Labels, Gauge>,
    persistent_in_flight: Family<Labels, Gauge>,
    persistent_items_processed: Family<Labels, Gauge>,
    /// False from an append refused because the store cannot write until one succeeds.
    pub(crate) writable: AtomicBool,
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
        Self {
            registry,
            io_events,
            io_bytes,
            grpc_method_duration,
            grpc_current_calls,
            grpc_calls,
            http_requests,
            http_request_duration,
            append_duration,
            append_events,
            persistent_connections,
            persistent_parked,
            persistent_in_flight,
            persistent_items_processed,
            writable: AtomicBool::new(true),
        }
    }

    pub(crate) fn count_io(&self, activity: &'static str, events: usize, bytes: usize) {
        if events == 0 {
            return;
        }
        let labels = vec![("activity", activity.to_owned())];
        self.io_events.get_or_create(&labels).inc_by(events as u64);
        self.io_bytes.get_or_create(&labels).inc_by(bytes as u64);
    }

    /// Sets the persistent-subscription gauges to `groups` (groups gone disappear).
    pub(crate) fn set_persistent(&self, groups: &[GroupInfo]) {
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

    /// The metrics in the OpenMetrics text format (what Prometheus scrapes).
    pub fn encode(&self) -> String {
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

/// KurrentDB's `activity` label for a client-protocol gRPC method; `None` for the others.
fn grpc_activity(path: &str) -> Option<&'static str> {
    let method = path.rsplit('/').next()?;
    let service = path.trim_start_matches('/').split('/').next()?;
    if !service.ends_with("streams.Streams") && !service.ends_with("StreamsService") {
        return None;
    }
    match method {
        "Append" | "BatchAppend" | "AppendSession" | "MultiStreamAppend" => Some("append"),
        "Read" => Some("read"),
        "Delete" => Some("delete"),
        "Tombstone" => Some("tombstone"),
        _ => None,
    }
}

/// Counts and times every call through `router`: gRPC calls under KurrentDB's names, other
/// HTTP requests under `strata_http_*`.
pub fn instrument(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, track))
}

async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    let started = Instant::now();
    if !is_grpc {
        let method = request.method().as_str().to_owned();
        let response = next.run(request).await;
        let labels = vec![
            ("method", method),
            ("status", response.status().as_u16().to_string()),
        ];
        metrics.http_requests.get_or_create(&labels).inc();
        metrics
            .http_request_duration
            .get_or_create(&vec![("method", labels[0].1.clone())])
            .observe(started.elapsed().as_secs_f64());
        return response;
    }
    let activity = grpc_activity(request.uri().path());
    metrics.grpc_current_calls.inc();
    let response = next.run(request).await;
    metrics.grpc_current_calls.dec();
    // A status in the head is a trailers-only answer: the call failed before any message
    // (0 is OK; 12 is UNIMPLEMENTED, 4 DEADLINE_EXCEEDED).
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u32>().ok());
    let count = |kind: &str| {
        metrics
            .grpc_calls
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    };
    count("total");
    match status {
        Some(0) | None => {}
        Some(12) => {
            count("failed");
            count("unimplemented");
        }
        Some(4) => {
            count("failed");
            count("deadline-exceeded");
        }
        Some(_) => count("failed"),
    }
    if let Some(activity) = activity {
        let outcome = if matches!(status, Some(0) | None) {
            "successful"
        } else {
            "failed"
        };
        metrics
            .grpc_method_duration
            .get_or_create(&vec![
                ("activity", activity.to_owned()),
                ("status", outcome.to_owned()),
            ])
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_client_protocol_methods_as_kurrentdb_does() {
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/Append"),
            Some("append")
        );
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/BatchAppend"),
            Some("append")
        );
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/Read"),
            Some("read")
        );
        assert_eq!(
            grpc_activity("/event_store.client.streams.Streams/Tombstone"),
            Some("tombstone")
        );
        assert_eq!(
            grpc_activity("/event_store.client.gossip.Gossip/Read"),
            None
        );
    }

    #[test]
    fn counters_carry_kurrentdb_names() {
        let metrics = Metrics::new();
        metrics.count_io("written", 3, 300);
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
