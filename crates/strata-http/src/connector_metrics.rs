//! Per-connector metrics, labelled `connector` (the id) and `sink`: events published,
//! duplicates the broker dropped, events re-sent, events dead-lettered, failures that made
//! the connector retry, checkpoints (counters), and the lag in events and seconds and the
//! state (gauges). Fed from `Connectors::list` by [`crate::spawn_connector_metrics`].

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_connectors::{ConnectorCounters, ConnectorInfo, ConnectorState};

use crate::metrics::Metrics;

type Labels = Vec<(&'static str, String)>;

pub(crate) struct ConnectorMetrics {
    published: Family<Labels, Counter>,
    duplicates: Family<Labels, Counter>,
    retried: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    checkpoints: Family<Labels, Counter>,
    lag_events: Family<Labels, Gauge>,
    lag_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    state: Family<Labels, Gauge>,
    /// The counters each connector reported last time: a connector's own counters start
    /// again when it restarts, the exported ones only grow.
    last: parking_lot::Mutex<HashMap<String, ConnectorCounters>>,
}

const STATES: [(ConnectorState, &str); 4] = [
    (ConnectorState::Stopped, "stopped"),
    (ConnectorState::Starting, "starting"),
    (ConnectorState::Running, "running"),
    (ConnectorState::Retrying, "retrying"),
];

impl ConnectorMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let published = counter(
            registry,
            "strata_connector_published_events",
            "Events a connector's broker acknowledged (duplicates included)",
        );
        let duplicates = counter(
            registry,
            "strata_connector_duplicate_events",
            "Re-sent events the broker dropped as duplicates",
        );
        let retried = counter(
            registry,
            "strata_connector_retried_events",
            "Events a connector sent again after a failure",
        );
        let dead_lettered = counter(
            registry,
            "strata_connector_dead_lettered_events",
            "Events the broker refused for good, parked in $connectors/<id>/dead-letters",
        );
        let failures = counter(
            registry,
            "strata_connector_errors",
            "Failures (broker away or refusing for now, store errors) after which a connector waited and retried",
        );
        let checkpoints = counter(
            registry,
            "strata_connector_checkpoints",
            "Checkpoints a connector wrote",
        );
        let lag_events = Family::<Labels, Gauge>::default();
        registry.register(
            "strata_connector_lag_events",
            "Events of the source after the last one the connector handled (counted up to 10,000)",
            lag_events.clone(),
        );
        let lag_seconds = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "strata_connector_lag_seconds",
            "Age of the last event handled while events are waiting; 0 when caught up",
            lag_seconds.clone(),
        );
        let state = Family::<Labels, Gauge>::default();
        registry.register(
            "strata_connector_state",
            "1 for the state a connector is in (stopped, starting, running, retrying)",
            state.clone(),
        );
        Self {
            published,
            duplicates,
            retried,
            dead_lettered,
            failures,
            checkpoints,
            lag_events,
            lag_seconds,
            state,
            last: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    fn set(&self, infos: &[ConnectorInfo]) {
        let mut last = self.last.lock();
        // Gauges of deleted connectors disappear; their counters stay, as counters do.
        self.lag_events.clear();
        self.lag_seconds.clear();
        self.state.clear();
        for info in infos {
            let labels = vec![
                ("connector", info.id.clone()),
                ("sink", info.sink.to_owned()),
            ];
            let before = last.get(&info.id).copied().unwrap_or_default();
            let now = info.counters;
            let grow = |family: &Family<Labels, Counter>, before: u64, now: u64| {
                // A restarted connector counts from 0 again: all it counted is new.
                let delta = if now >= before { now - before } else { now };
                family.get_or_create(&labels).inc_by(delta);
            };
            grow(&self.published, before.published, now.published);
            grow(&self.duplicates, before.duplicates, now.duplicates);
            grow(&self.retried, before.retried, now.retried);
            grow(&self.dead_lettered, before.dead_lettered, now.dead_lettered);
            grow(&self.failures, before.failures, now.failures);
            grow(&self.checkpoints, before.checkpoints, now.checkpoints);
            last.insert(info.id.clone(), now);
            if let Some(lag) = info.lag_events {
                self.lag_events
                    .get_or_create(&labels)
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            self.lag_seconds
                .get_or_create(&labels)
                .set(info.lag_seconds);
            for (state, name) in STATES {
                let mut labels = labels.clone();
                labels.push(("state", name.to_owned()));
                self.state
                    .get_or_create(&labels)
                    .set(i64::from(info.state == state));
            }
        }
        last.retain(|id, _| infos.iter().any(|info| &info.id == id));
    }
}

impl Metrics {
    /// Sets the per-connector metrics from `infos` (what `Connectors::list` says now).
    pub fn set_connectors(&self, infos: &[ConnectorInfo]) {
        self.connectors.set(infos);
    }
}
