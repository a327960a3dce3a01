//! What the server derives from the workload's events, checked against the final order:
//! - a continuous JavaScript projection on the workload's category counting its events and
//!   emitting one event per source event: once it has caught up, its state counts every
//!   event of the final order and its emitted stream holds one event per source event, in
//!   order, none twice, none missing (exactly once across kills, docs/PROJECTIONS.md);
//! - a connector publishing the category to NATS JetStream: what it published is the log's
//!   events in order per stream, a re-send only going back to an earlier revision and going
//!   on in order from there, and once it has caught up every event is there at least once
//!   (docs/CONNECTORS.md, *Guarantees*). Re-sends are counted, not refused: the connector
//!   promises at least once.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use kurrentdb::{
    ClientSettings, CreateProjectionOptions, GenericProjectionOptions, GetStateProjectionOptions,
    ProjectionClient, ReadStreamOptions, StreamPosition,
};
use tokio::process::Command;
use uuid::Uuid;

use crate::history::Seen;
use crate::workload::connect;

/// How long the projection and the connector get to catch up with the final order.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// The connector's checkpoint interval and batch: after a kill it sends again at most their
/// sum (docs/CONNECTORS.md, *Guarantees*).
const CONNECTOR_CHECKPOINT_EVENTS: u64 = 100;
const CONNECTOR_BATCH_EVENTS: u64 = 32;
/// JetStream's duplicate window for the connector's stream: short, so that re-sends after a
/// kill are kept and counted rather than dropped.
const DUPLICATE_WINDOW_MS: u64 = 1_000;

/// Counts of what the checks of the projection and the connector covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DerivedFigures {
    /// Events the projection's state counted at its last check.
    pub projection_counted: u64,
    /// Emitted events checked: one per source event, in the final order.
    pub projection_emitted: u64,
    /// Messages read from JetStream and checked.
    pub connector_messages: u64,
    /// Of those, re-sends of an event published before (after a kill).
    pub connector_resent: u64,
    /// Events of the final order found published when the connector was last waited for.
    pub connector_events: u64,
}

/// Something the projection or the connector did that its promise rules out, or that did
/// not happen in time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DerivedError {
    #[error("the projection: {0}")]
    Projection(String),
    #[error("the connector: {0}")]
    Connector(String),
}

/// The workload's category: its streams are `<category>-<n>`.
fn category(prefix: &str) -> &str {
    prefix.trim_end_matches('-')
}

/// The projection and the connector of one soak, and how far their checks got.
pub struct Derived {
    projection: Option<ProjectionCheck>,
    connector: Option<ConnectorCheck>,
    /// Per stream of the final order, the ids of its events by revision, and how much of
    /// the final order they cover.
    ids: HashMap<String, Vec<Uuid>>,
    indexed: usize,
    pub figures: DerivedFigures,
}

struct ProjectionCheck {
    name: String,
    emitted: String,
}

struct ConnectorCheck {
    nats: String,
    jetstream: String,
    /// JetStream sequences read so far.
    read: u64,
    /// Per stream, the revision the next new message must carry.
    next: HashMap<String, u64>,
}

impl Derived {
    /// Creates the projection (when `projection`) and the connector to NATS JetStream at
    /// `nats` (when given) on the server at `url` (HTTP on `port`) before any event is
    /// written, for the workload whose streams start with `prefix`.
    ///
    /// # Errors
    /// When either cannot be created.
    pub async fn create(
        strata: &Path,
        url: &str,
        port: u16,
        prefix: &str,
        projection: bool,
        nats: Option<&str>,
    ) -> Result<Self, DerivedError> {
        let category = category(prefix);
        let projection = if projection {
            let check = ProjectionCheck {
                name: format!("{category}-count"),
                emitted: format!("{category}projected"),
            };
            let query = format!(
                "fromCategory('{category}').when({{
                    $init: function () {{ return {{ count: 0 }}; }},
                    $any: function (s, e) {{
                        s.count++;
                        emit('{}', 'Seen', {{ stream: e.streamId, revision: e.sequenceNumber }});
                    }}
                }}).outputState()",
                check.emitted
            );
            projections(url)
                .map_err(DerivedError::Projection)?
                .create(
                    &check.name,
                    query,
                    // The Rust client sends `emit` where the contract reads tracking, and the
                    // other way round (docs/PROJECTIONS.md, *Served*): both on.
                    &CreateProjectionOptions::default()
                        .emit(true)
                        .track_emitted_streams(true),
                )
                .await
                .map_err(|error| DerivedError::Projection(format!("create: {error}")))?;
            Some(check)
        } else {
            None
        };
        let connector = match nats {
            Some(nats) => {
                let check = ConnectorCheck {
                    nats: nats.to_owned(),
                    jetstream: format!("STRATA_{}", category.to_uppercase()),
                    read: 0,
                    next: HashMap::new(),
                };
                create_connector(strata, port, category, &check).await?;
                Some(check)
            }
            None => None,
        };
        Ok(Derived {
            projection,
            connector,
            ids: HashMap::new(),
            indexed: 0,
            figures: DerivedFigures::default(),
        })
    }

    /// Checks both against `order`, the final order so far (no event is being written):
    /// waits for the projection to catch up with it and checks its state and everything it
    /// emitted since the last check; checks every message the connector published since
    /// the last check, and with `wait_for_connector` waits until every event is published.
    ///
    /// # Errors
    /// The first broken promise, or a catch-up that did not come in time.
    pub async fn check(
        &mut self,
        url: &str,
        order: &[Seen],
        wait_for_connector: bool,
    ) -> Result<(), DerivedError> {
        for event in &order[self.indexed.min(order.len())..] {
            let ids = self.ids.entry(event.stream.clone()).or_default();
            if ids.len() as u64 == event.revision {
                ids.push(event.id);
            }
        }
        self.indexed = order.len();
        if let Some(projection) = &self.projection {
            let counted = projection.wait_for_count(url, order.len() as u64).await?;
            self.figures.projection_counted = counted;
            // The emitted events are written before the state that counts them; they may
            // still be on their way when the state is read from memory.
            let deadline = Instant::now() + CATCH_UP_TIMEOUT;
            loop {
                let from = self.figures.projection_emitted;
                let checked = projection.check_emitted(url, order, from).await?;
                self.figures.projection_emitted = checked;
                if checked == counted {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(DerivedError::Projection(format!(
                        "{}: {checked} events emitted for the {counted} counted",
                        projection.emitted
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some(connector) = &mut self.connector {
            connector.check_new(&self.ids, &mut self.figures).await?;
            if wait_for_connector {
                let deadline = Instant::now() + CATCH_UP_TIMEOUT;
                loop {
                    let missing = connector.missing(&self.ids);
                    if missing.is_empty() {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(DerivedError::Connector(format!(
                            "{} events not published {} s after the load stopped, e.g. {:?}",
                            missing.len(),
                            CATCH_UP_TIMEOUT.as_secs(),
                            &missing[..missing.len().min(3)]
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    connector.check_new(&self.ids, &mut self.figures).await?;
                }
                self.figures.connector_events = order.len() as u64;
            }
        }
        Ok(())
    }

    /// Deletes the connector's JetStream stream (the store keeps the rest).
    pub async fn clean_up(&self) {
        if let Some(connector) = &self.connector
            && let Ok(client) = async_nats::connect(connector.nats.as_str()).await
        {
            let _ = jetstream::new(client)
                .delete_stream(&connector.jetstream)
                .await;
        }
    }

    /// The connector's largest promised number of re-sends for `kills` kills.
    pub fn resend_bound(kills: u64) -> u64 {
        kills * (CONNECTOR_CHECKPOINT_EVENTS + CONNECTOR_BATCH_EVENTS)
    }
}

fn projections(url: &str) -> Result<ProjectionClient, String> {
    let settings: ClientSettings = url
        .parse()
        .map_err(|error| format!("the connection string {url} is not valid: {error}"))?;
    ProjectionClient::new(settings).map_err(|error| format!("{error}"))
}

/// The counting projection's state: `{count}` (`google.protobuf.Value` carries numbers as
/// doubles), or `{}` before its first event (the server has no state to give yet).
#[derive(serde::Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum CountState {
    Count { count: f64 },
    NoneYet {},
}

impl CountState {
    fn count(&self) -> f64 {
        match self {
            Self::Count { count } => *count,
            Self::NoneYet {} => 0.0,
        }
    }
}

#[derive(serde::Deserialize)]
struct SeenBody {
    stream: String,
    revision: u64,
}

impl ProjectionCheck {
    /// Waits until the state counts `expected` events; a count past it is an event counted
    /// twice.
    async fn wait_for_count(&self, url: &str, expected: u64) -> Result<u64, DerivedError> {
        let client = projections(url).map_err(DerivedError::Projection)?;
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match client
                .get_state::<_, CountState>(&self.name, &GetStateProjectionOptions::default())
                .await
            {
                Ok(Ok(state)) if state.count() == expected as f64 => return Ok(expected),
                Ok(Ok(state)) if state.count() > expected as f64 => {
                    return Err(DerivedError::Projection(format!(
                        "its state counts {} events, the final order holds {expected}",
                        state.count()
                    )));
                }
                Ok(Ok(state)) => last = format!("state counts {}", state.count()),
                Ok(Err(error)) => last = format!("state is neither {{count}} nor {{}}: {error}"),
                Err(error) => last = format!("state: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = client
            .get_status(&self.name, &GenericProjectionOptions::default())
            .await;
        Err(DerivedError::Projection(format!(
            "did not count the {expected} events in {} s ({last}; status {status:?})",
            CATCH_UP_TIMEOUT.as_secs()
        )))
    }

    /// Reads the emitted stream from revision `from`: the event at revision `i` must name
    /// event `i` of the final order (none past its end). Returns the revision after the
    /// last one read.
    async fn check_emitted(
        &self,
        url: &str,
        order: &[Seen],
        from: u64,
    ) -> Result<u64, DerivedError> {
        let failed = |what: String| DerivedError::Projection(format!("{}: {what}", self.emitted));
        let client = connect(url).map_err(|error| failed(format!("{error}")))?;
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from));
        let mut reader = match client.read_stream(self.emitted.as_str(), &options).await {
            Ok(reader) => reader,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(from),
            Err(error) => return Err(failed(format!("read: {error}"))),
        };
        let mut revision = from;
        loop {
            let event = match reader.next().await {
                Ok(Some(resolved)) => match resolved.event {
                    Some(event) => event,
                    None => continue,
                },
                Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => break,
                Err(error) => return Err(failed(format!("read: {error}"))),
            };
            if event.revision != revision {
                return Err(failed(format!(
                    "revision {} read where {revision} was due",
                    event.revision
                )));
            }
            let body: SeenBody = serde_json::from_slice(&event.data).map_err(|error| {
                failed(format!(
                    "revision {revision} is not {{stream, revision}}: {error}"
                ))
            })?;
            let Some(source) = order.get(revision as usize) else {
                return Err(failed(format!(
                    "revision {revision} emitted for {}@{}, past the {} events of the final order \
                     (an event emitted twice)",
                    body.stream,
                    body.revision,
                    order.len()
                )));
            };
            if body.stream != source.stream || body.revision != source.revision {
                return Err(failed(format!(
                    "revision {revision} emitted for {}@{}, where the final order has {}@{} \
                     (a duplicate or a gap)",
                    body.stream, body.revision, source.stream, source.revision
                )));
            }
            revision += 1;
        }
        Ok(revision)
    }
}

/// `strata connector create` against the server's HTTP API on `port`.
async fn create_connector(
    strata: &Path,
    port: u16,
    category: &str,
    check: &ConnectorCheck,
) -> Result<(), DerivedError> {
    let subjects = category.to_lowercase();
    let definition = serde_json::json!({
        "id": format!("{category}-nats"),
        "source": {"kind": "category", "category": category},
        "sink": {"type": "nats", "url": check.nats, "subject": format!("{subjects}.{{stream}}"),
                 "create_stream": {"name": check.jetstream, "subjects": [format!("{subjects}.>")],
                                   "duplicate_window_ms": DUPLICATE_WINDOW_MS}},
        "settings": {"checkpoint_interval_events": CONNECTOR_CHECKPOINT_EVENTS,
                     "checkpoint_interval_ms": 60_000,
                     "batch_events_max": CONNECTOR_BATCH_EVENTS,
                     "retry_initial_ms": 50, "retry_max_ms": 1_000}
    });
    let output = Command::new(strata)
        .args(["connector", "create", "--definition"])
        .arg(definition.to_string())
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|error| DerivedError::Connector(format!("{}: {error}", strata.display())))?;
    if !output.status.success() {
        return Err(DerivedError::Connector(format!(
            "create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

impl ConnectorCheck {
    /// Reads the messages JetStream took since the last call and checks each: it is the
    /// log's event at its stream and revision, and it is that stream's next revision or an
    /// earlier one (a re-send, counted).
    async fn check_new(
        &mut self,
        ids: &HashMap<String, Vec<Uuid>>,
        figures: &mut DerivedFigures,
    ) -> Result<(), DerivedError> {
        let failed = |what: String| DerivedError::Connector(format!("{}: {what}", self.jetstream));
        let client = async_nats::connect(self.nats.as_str())
            .await
            .map_err(|error| failed(format!("cannot connect to NATS: {error}")))?;
        let context = jetstream::new(client);
        let mut stream = match context.get_stream(&self.jetstream).await {
            Ok(stream) => stream,
            Err(error) => return Err(failed(format!("no stream: {error}"))),
        };
        let last = stream
            .info()
            .await
            .map_err(|error| failed(format!("info: {error}")))?
            .state
            .last_sequence;
        if last <= self.read {
            return Ok(());
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: self.read + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|error| failed(format!("consumer: {error}")))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| failed(format!("messages: {error}")))?;
        while self.read < last {
            let message = match tokio::time::timeout(Duration::from_secs(30), messages.next()).await
            {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => return Err(failed(format!("message: {error}"))),
                Ok(None) | Err(_) => {
                    return Err(failed(format!(
                        "sequence {} of {last} not delivered",
                        self.read + 1
                    )));
                }
            };
            self.read += 1;
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(name))
                    .map(|value| value.as_str().to_owned())
                    .ok_or_else(|| failed(format!("sequence {} has no {name}", self.read)))
            };
            let stream_name = header("esdb-record-stream-id")?;
            let revision: u64 = header("esdb-record-stream-revision")?
                .parse()
                .map_err(|error| failed(format!("sequence {}: revision {error}", self.read)))?;
            let id = header("esdb-record-id")?;
            let logged = ids
                .get(&stream_name)
                .and_then(|ids| ids.get(revision as usize));
            if logged.map(Uuid::to_string).as_deref() != Some(id.as_str()) {
                return Err(failed(format!(
                    "sequence {} is event {id} at {stream_name}@{revision}, which the log holds \
                     as {logged:?}",
                    self.read
                )));
            }
            let next = self.next.entry(stream_name.clone()).or_default();
            if revision > *next {
                return Err(failed(format!(
                    "sequence {}: {stream_name}@{revision} published before {stream_name}@{next} \
                     (out of order or skipped)",
                    self.read
                )));
            }
            figures.connector_messages += 1;
            if revision < *next {
                figures.connector_resent += 1;
            } else {
                *next += 1;
            }
        }
        Ok(())
    }

    /// Events of the final order not published yet (stream and revision).
    fn missing(&self, ids: &HashMap<String, Vec<Uuid>>) -> Vec<(String, u64)> {
        let mut missing = Vec::new();
        for (stream, ids) in ids {
            let next = self.next.get(stream).copied().unwrap_or(0);
            missing.extend((next..ids.len() as u64).map(|revision| (stream.clone(), revision)));
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::CountState;

    #[test]
    fn the_count_state_is_a_count_or_nothing_yet_and_nothing_else() {
        let parse = |text: &str| serde_json::from_str::<CountState>(text).map(|s| s.count());
        assert_eq!(parse(r#"{"count": 7.0}"#).unwrap(), 7.0);
        assert_eq!(parse("{}").unwrap(), 0.0);
        assert!(parse(r#"{"total": 7}"#).is_err());
        assert!(parse(r#"{"count": 7, "other": 1}"#).is_err());
    }
}
