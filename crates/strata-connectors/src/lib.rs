//! Connectors: publish a Strata store's log to NATS JetStream, RabbitMQ or an HTTP
//! endpoint, at least once and in order per stream, resuming from a checkpoint after any
//! crash. Works over any [`strata_core::EventStore`].
//!
//! Each connector reads its source (`$all` with the usual filters, one stream, or a
//! category) through a catch-up subscription, publishes batches in log order, waits for the
//! broker's acknowledgements, parks events the broker refuses for good in
//! `$connectors/<id>/dead-letters`, retries everything else with backoff, and writes its
//! position to `$connectors/<id>/checkpoints` after the acknowledgements, every N events or
//! T milliseconds. See `docs/CONNECTORS.md`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use strata_connectors::{ConnectorDefinition, Connectors};
//!
//! # async fn run(store: Arc<dyn strata_core::EventStore>) -> Result<(), strata_connectors::Error> {
//! let connectors = Connectors::open(store).await?;
//! let definition = ConnectorDefinition::from_json(
//!     r#"{"id": "orders-to-nats",
//!         "source": {"kind": "category", "category": "order"},
//!         "sink": {"type": "nats", "url": "nats://127.0.0.1:4222",
//!                  "subject": "events.{category}.{stream}",
//!                  "create_stream": {"name": "EVENTS", "subjects": ["events.>"]}}}"#,
//! )?;
//! let created = connectors.create(definition).await?;
//! println!("{} is {:?}", created.id, created.state);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod definition;
mod error;
mod lag;
mod manager;
mod runtime;
mod sink;
mod sinks;
mod status;
mod streams;
mod template;
mod transform;

pub use definition::{
    BATCH_EVENTS_MAX, CONNECTOR_ID_BYTES_MAX, ConnectorDefinition, ConnectorSettings, FilterField,
    FilterSpec, HttpFormat, HttpSettings, NatsSettings, NatsStreamSpec, REDACTED, RabbitMqSettings,
    Secret, SinkSettings, Source, StartFrom,
};
pub use error::{Error, Result};
pub use lag::LAG_EVENTS_COUNT_MAX;
pub use manager::{ConnectorInfo, Connectors, Declared};
pub use sink::{Delivery, Sink, event_cloud_event, event_headers, event_json};
pub use sinks::SIGNATURE_HEADER;
pub use status::{ConnectorCounters, ConnectorState};
pub use streams::{
    DEAD_LETTER_REASON_KEY, checkpoint_stream, dead_letter_stream, definitions_stream,
    stored_progress,
};
pub use template::{Template, TemplateTarget};
