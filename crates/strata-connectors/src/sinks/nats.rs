//! NATS JetStream (`async-nats`, the NATS maintainers' client). Every message carries
//! `Nats-Msg-Id` = the event id, so the stream's duplicate window drops a re-send after a
//! crash: effectively once within that window.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use async_trait::async_trait;
use strata_core::RecordedEvent;

use crate::definition::{NatsSettings, NatsStreamSpec};
use crate::sink::{Delivery, Sink, event_headers};
use crate::template::{Template, TemplateTarget};

/// How long connecting may take before a create fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct NatsSink {
    context: jetstream::Context,
    subject: Template,
}

impl NatsSink {
    pub(crate) async fn connect(settings: &NatsSettings) -> Result<Self, String> {
        let subject = Template::parse(&settings.subject, TemplateTarget::NatsSubject)?;
        let mut options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT);
        if let Some(token) = &settings.token {
            options = options.token(token.expose().to_owned());
        }
        let client = options
            .connect(settings.url.as_str())
            .await
            .map_err(|error| format!("cannot connect to NATS: {error}"))?;
        let mut context = jetstream::new(client);
        context.set_timeout(Duration::from_millis(settings.ack_timeout_ms.max(1)));
        if let Some(spec) = &settings.create_stream {
            create_stream(&context, spec).await?;
        }
        Ok(Self { context, subject })
    }
}

async fn create_stream(context: &jetstream::Context, spec: &NatsStreamSpec) -> Result<(), String> {
    let config = stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        duplicate_window: Duration::from_millis(spec.duplicate_window_ms),
        max_message_size: spec.max_message_bytes,
        storage: stream::StorageType::File,
        ..stream::Config::default()
    };
    context
        .get_or_create_stream(config)
        .await
        .map(|_| ())
        .map_err(|error| format!("cannot create JetStream stream {}: {error}", spec.name))
}

#[async_trait]
impl Sink for NatsSink {
    async fn publish(&mut self, events: &[RecordedEvent]) -> Vec<Delivery> {
        // Send them all (one ordered connection), then collect the acknowledgements.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = HeaderMap::new();
            for (name, value) in event_headers(event) {
                headers.insert(name, value.as_str());
            }
            let message = PublishMessage::build()
                .payload(event.data.clone())
                .headers(headers)
                .message_id(event.id.to_string());
            pending.push(
                self.context
                    .send_publish(self.subject.render(event), message)
                    .await,
            );
        }
        let mut deliveries = Vec::with_capacity(events.len());
        for sent in pending {
            let delivery = match sent {
                Ok(ack) => match ack.await {
                    Ok(ack) => Delivery::Acknowledged {
                        duplicate: ack.duplicate,
                    },
                    Err(error) => classify(&error),
                },
                Err(error) => classify(&error),
            };
            deliveries.push(delivery);
        }
        deliveries
    }
}

/// Permanent (the stream refuses this message whatever happens) or worth a retry.
fn classify(error: &jetstream::context::PublishError) -> Delivery {
    let text = match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    };
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => Delivery::Rejected { reason: text },
        PublishErrorKind::Other => {
            // A JetStream API error: 4xx codes (too large, bad headers) are this message's
            // fault; 5xx (no leader, storage) may pass later.
            let api = std::error::Error::source(error)
                .and_then(|source| source.downcast_ref::<jetstream::Error>());
            match api {
                Some(api) if (400..500).contains(&api.code()) => {
                    Delivery::Rejected { reason: text }
                }
                _ => Delivery::Failed { error: text },
            }
        }
        _ => Delivery::Failed { error: text },
    }
}
