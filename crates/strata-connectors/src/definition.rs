//! What a connector is: an id, a source, a sink and its settings. Stored as JSON in the
//! `$connectors` stream; shown back with every secret replaced by `***`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use strata_core::{EventFilter, FilterTarget, StreamName};

use crate::error::{Error, Result};
use crate::template::{Template, TemplateTarget};

/// Longest connector id, in bytes.
pub const CONNECTOR_ID_BYTES_MAX: usize = 128;

/// Events published together (in flight at once), at most.
pub const BATCH_EVENTS_MAX: usize = 10_000;

/// What replaces a secret when a definition is shown.
pub const REDACTED: &str = "***";

/// A connector as created.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorDefinition {
    pub id: String,
    pub source: Source,
    pub sink: SinkSettings,
    #[serde(default)]
    pub settings: ConnectorSettings,
    /// JavaScript mapping each event to the message published (type, data, metadata), or
    /// skipping it (null / undefined). See `docs/CONNECTORS.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

impl fmt::Debug for ConnectorDefinition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never a secret in a log line.
        write!(formatter, "{}", self.redacted_json())
    }
}

/// Where a connector reads from. Events of system streams (`$…`) are never published from
/// `$all` or a category; they still move the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// The global log, optionally filtered.
    All {
        #[serde(default)]
        filter: Option<FilterSpec>,
    },
    /// One stream.
    Stream { stream: String },
    /// Every stream `<category>-…`.
    Category { category: String },
}

/// A filter on `$all`, as the read and subscription filters take it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    pub target: FilterField,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterField {
    StreamName,
    EventType,
}

impl FilterSpec {
    /// The core filter this stands for.
    ///
    /// # Errors
    /// A sentence naming the problem.
    pub fn to_filter(&self) -> std::result::Result<EventFilter, String> {
        let target = match self.target {
            FilterField::StreamName => FilterTarget::StreamName,
            FilterField::EventType => FilterTarget::EventType,
        };
        let filter = match (&self.regex, self.prefixes.is_empty()) {
            (Some(pattern), true) => EventFilter::regex(target, pattern),
            (None, false) => EventFilter::prefixes(target, self.prefixes.clone()),
            _ => {
                return Err("a filter has either prefixes or a regex, not both nor neither".into());
            }
        };
        filter.map_err(|error| error.to_string())
    }
}

/// Where a connector starts when it has no checkpoint (and where a reset puts it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Start,
    End,
    /// After this position (`$all`, category) or revision (stream), exclusive.
    After(u64),
}

/// How a connector batches, checkpoints and retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorSettings {
    /// Where to start without a checkpoint.
    pub start_from: StartFrom,
    /// Events published at once before waiting for their acknowledgements (the in-flight
    /// window). 1 publishes one event at a time.
    pub batch_events_max: usize,
    /// Events the subscription buffers ahead of the sink (back-pressure beyond that).
    pub buffer_events: usize,
    /// A checkpoint after this many acknowledged events...
    pub checkpoint_interval_events: u64,
    /// ...or this long after the first unsaved acknowledgement, whichever comes first.
    pub checkpoint_interval_ms: u64,
    /// First wait before a retry; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A publish the sink has not answered within this long fails (and is retried): a
    /// client that waits for its broker to come back cannot hold the connector silently.
    pub publish_timeout_ms: u64,
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        Self {
            start_from: StartFrom::Start,
            batch_events_max: 256,
            buffer_events: 2_048,
            checkpoint_interval_events: 1_000,
            checkpoint_interval_ms: 1_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            publish_timeout_ms: 30_000,
        }
    }
}

/// A secret (password, token, signing key): stored, used, never shown or logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

/// Where events go, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SinkSettings {
    Nats(NatsSettings),
    RabbitMq(RabbitMqSettings),
    Http(HttpSettings),
}

impl SinkSettings {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSettings::Nats(_) => "nats",
            SinkSettings::RabbitMq(_) => "rabbit-mq",
            SinkSettings::Http(_) => "http",
        }
    }
}

/// NATS JetStream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// `nats://host:port`; a user and password in it are secrets.
    pub url: String,
    /// Subject template, e.g. `events.{category}.{stream}`.
    pub subject: String,
    /// A token to authenticate with, if any.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Creates (or checks) this JetStream stream at start.
    #[serde(default)]
    pub create_stream: Option<NatsStreamSpec>,
    /// How long to wait for one publish acknowledgement.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Effectively once without a duplicate window: each publish expects the subject's
    /// last sequence (`Nats-Expected-Last-Subject-Sequence`), and after a restart the last
    /// message of a subject tells which events it already holds. Events of one subject are
    /// then sent one at a time (subjects still go in parallel). Needs `create_stream`.
    #[serde(default)]
    pub effectively_once: bool,
}

/// A JetStream stream to create when missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsStreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    /// Window in which a re-sent `Nats-Msg-Id` is dropped (JetStream's default: 2 min).
    #[serde(default = "default_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
    /// Largest message the stream accepts; larger events are dead-lettered. -1: no limit.
    #[serde(default = "no_limit")]
    pub max_message_bytes: i32,
}

fn default_ack_timeout_ms() -> u64 {
    5_000
}

fn default_duplicate_window_ms() -> u64 {
    120_000
}

fn no_limit() -> i32 {
    -1
}

/// RabbitMQ (AMQP 0-9-1) with publisher confirms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSettings {
    /// `amqp://user:password@host:port/vhost`; the password is a secret.
    pub url: String,
    /// Exchange template (`""` is the default exchange).
    #[serde(default)]
    pub exchange: String,
    /// Routing-key template, e.g. `{category}.{type}`.
    pub routing_key: String,
    /// Declares the exchange (durable) of this kind at start: `topic`, `direct`, `fanout`,
    /// `headers`. Only for an exchange without placeholders.
    #[serde(default)]
    pub declare_exchange: Option<String>,
    /// Publishes as mandatory: a message no queue takes is dead-lettered instead of lost.
    #[serde(default = "yes")]
    pub mandatory: bool,
}

fn yes() -> bool {
    true
}

/// An HTTP endpoint that events are POSTed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub url: String,
    #[serde(default)]
    pub format: HttpFormat,
    /// Events per request: 1 posts one event as an object, more posts a JSON array.
    #[serde(default = "one")]
    pub events_per_request: usize,
    /// Extra request headers; their values are treated as secrets when shown.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Key of the `X-Strata-Signature: sha256=<hex HMAC-SHA256 of the body>` header.
    #[serde(default)]
    pub signing_key: Option<Secret>,
    #[serde(default = "default_request_timeout_ms")]
    pub timeout_ms: u64,
}

fn one() -> usize {
    1
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpFormat {
    /// Strata's JSON: id, stream, revision, position, type, data, metadata, created.
    #[default]
    Json,
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`, or
    /// `application/cloudevents-batch+json` for several).
    CloudEvents,
}

impl ConnectorDefinition {
    /// Parses a definition from JSON, naming what is wrong (an unknown sink type, a
    /// missing field) in the error.
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`].
    pub fn from_json(text: &str) -> Result<Self> {
        let definition: Self = serde_json::from_str(text).map_err(|error| {
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|value| {
                    value
                        .get("id")
                        .and_then(|id| id.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "(no id)".to_owned());
            Error::InvalidDefinition {
                id,
                reason: error.to_string(),
            }
        })?;
        definition.validate()?;
        Ok(definition)
    }

    /// Checks everything that can be checked without the network.
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|reason| Error::InvalidDefinition {
            id: self.id.clone(),
            reason,
        })
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_id(&self.id)?;
        match &self.source {
            Source::All {
                filter: Some(filter),
            } => {
                filter.to_filter()?;
            }
            Source::All { filter: None } => {}
            Source::Stream { stream } => {
                StreamName::new(stream).map_err(|error| error.to_string())?;
            }
            Source::Category { category } => {
                if category.is_empty() || category.contains('-') || category.starts_with('$') {
                    return Err(format!(
                        "category {category:?} must be non-empty, without '-' and not start \
                         with '$'"
                    ));
                }
            }
        }
        let settings = &self.settings;
        if settings.batch_events_max == 0 || settings.batch_events_max > BATCH_EVENTS_MAX {
            return Err(format!(
                "batch_events_max must be between 1 and {BATCH_EVENTS_MAX}"
            ));
        }
        if settings.buffer_events == 0 || settings.checkpoint_interval_events == 0 {
            return Err("buffer_events and checkpoint_interval_events must be at least 1".into());
        }
        if settings.retry_initial_ms == 0 || settings.retry_max_ms < settings.retry_initial_ms {
            return Err("retry_initial_ms must be at least 1 and at most retry_max_ms".into());
        }
        if settings.publish_timeout_ms == 0 {
            return Err("publish_timeout_ms must be at least 1".into());
        }
        self.check_sink()
    }

    fn check_sink(&self) -> std::result::Result<(), String> {
        match &self.sink {
            SinkSettings::Nats(nats) => {
                check_url(&nats.url, &["nats", "tls"])?;
                Template::parse(&nats.subject, TemplateTarget::NatsSubject)?;
                if nats.effectively_once && nats.create_stream.is_none() {
                    return Err(
                        "effectively_once needs create_stream: it reads the stream's last \
                         message of each subject"
                            .into(),
                    );
                }
                if let Some(stream) = &nats.create_stream
                    && (stream.name.is_empty()
                        || stream.name.contains(['.', ' ', '*', '>'])
                        || stream.subjects.is_empty())
                {
                    return Err(format!(
                        "JetStream stream {:?} needs a name without '.', ' ', '*', '>' and at \
                         least one subject",
                        stream.name
                    ));
                }
            }
            SinkSettings::RabbitMq(rabbit) => {
                check_url(&rabbit.url, &["amqp", "amqps"])?;
                if !rabbit.exchange.is_empty() {
                    Template::parse(&rabbit.exchange, TemplateTarget::Amqp)?;
                }
                Template::parse(&rabbit.routing_key, TemplateTarget::Amqp)?;
                if let Some(kind) = &rabbit.declare_exchange {
                    if !matches!(kind.as_str(), "topic" | "direct" | "fanout" | "headers") {
                        return Err(format!(
                            "exchange kind {kind:?} is not one of topic, direct, fanout, headers"
                        ));
                    }
                    if rabbit.exchange.is_empty() || rabbit.exchange.contains('{') {
                        return Err(
                            "declare_exchange needs a fixed, non-empty exchange name".into()
                        );
                    }
                }
            }
            SinkSettings::Http(http) => {
                check_url(&http.url, &["http", "https"])?;
                if http.events_per_request == 0 || http.events_per_request > BATCH_EVENTS_MAX {
                    return Err(format!(
                        "events_per_request must be between 1 and {BATCH_EVENTS_MAX}"
                    ));
                }
                for name in http.headers.keys() {
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                        return Err(format!("{name:?} is not a valid HTTP header name"));
                    }
                }
            }
        }
        if let Some(source) = &self.transform {
            crate::transform::check(source)?;
        }
        Ok(())
    }

    /// The definition as JSON with every secret (passwords in URLs, tokens, header values,
    /// signing keys) replaced by `***`: what list and show print.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut copy = self.clone();
        let hidden = || Secret::new(REDACTED);
        match &mut copy.sink {
            SinkSettings::Nats(nats) => {
                nats.url = redact_url(&nats.url);
                if nats.token.is_some() {
                    nats.token = Some(hidden());
                }
            }
            SinkSettings::RabbitMq(rabbit) => rabbit.url = redact_url(&rabbit.url),
            SinkSettings::Http(http) => {
                http.url = redact_url(&http.url);
                for value in http.headers.values_mut() {
                    *value = hidden();
                }
                if http.signing_key.is_some() {
                    http.signing_key = Some(hidden());
                }
            }
        }
        serde_json::to_value(&copy).unwrap_or(serde_json::Value::Null)
    }
}

fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > CONNECTOR_ID_BYTES_MAX {
        return Err(format!(
            "the id must be 1 to {CONNECTOR_ID_BYTES_MAX} bytes"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "id {id:?} may hold only ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn check_url(url: &str, schemes: &[&str]) -> std::result::Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{:?} is not a URL (no scheme://)", redact_url(url)))?;
    if !schemes.contains(&scheme) {
        return Err(format!(
            "URL scheme {scheme:?} is not one of {}",
            schemes.join(", ")
        ));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("URL {:?} has no host", redact_url(url)));
    }
    Ok(())
}

/// `scheme://user:password@host/...` with the password replaced by `***`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or("");
            let shown = if user_info.contains(':') {
                format!("{user}:{REDACTED}")
            } else {
                REDACTED.to_owned()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats(subject: &str) -> String {
        format!(
            r#"{{"id":"c1","source":{{"kind":"all"}},
                "sink":{{"type":"nats","url":"nats://127.0.0.1:4222","subject":"{subject}"}}}}"#
        )
    }

    #[test]
    fn parses_and_refuses_with_a_clear_reason() {
        ConnectorDefinition::from_json(&nats("events.{category}.{stream}")).unwrap();
        let error = ConnectorDefinition::from_json(&nats("events.{nope}")).unwrap_err();
        assert!(
            error.to_string().contains("unknown placeholder {nope}"),
            "{error}"
        );
        let kafka = r#"{"id":"k","source":{"kind":"all"},"sink":{"type":"kafka","url":"x"}}"#;
        let error = ConnectorDefinition::from_json(kafka).unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `kafka`"),
            "{error}"
        );
        assert!(error.to_string().contains("connector k"), "{error}");
    }

    #[test]
    fn never_shows_a_secret() {
        let text = r#"{"id":"h","source":{"kind":"stream","stream":"a"},
            "sink":{"type":"http","url":"https://bob:pw1@hooks.example/x",
                    "headers":{"Authorization":"Bearer tok2"},"signing_key":"key3"}}"#;
        let definition = ConnectorDefinition::from_json(text).unwrap();
        let shown = definition.redacted_json().to_string() + &format!("{definition:?}");
        for secret in ["pw1", "tok2", "key3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("bob:***@hooks.example/x"), "{shown}");
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
    }
}
