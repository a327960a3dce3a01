//! NATS JetStream (`async-nats`, the NATS maintainers' client). Every message carries
//! `Nats-Msg-Id` = the event id, so the stream's duplicate window drops a re-send after a
//! crash: effectively once within that window.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use async_trait::async_trait;
use strata_core::RecordedEvent;

use crate::definition::{NatsSettings, NatsStreamSpec};
use crate::sink::{Delivery, Sink, event_headers, header};
use crate::template::{Template, TemplateTarget};

/// How long connecting may take before a create fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Subjects whose last sequence the effectively-once mode remembers; past that it forgets
/// them all and asks the server again as needed.
const SUBJECTS_REMEMBERED_MAX: usize = 100_000;

pub(crate) struct NatsSink {
    context: jetstream::Context,
    subject: Template,
    /// In effectively-once mode: the JetStream stream, and per subject the sequence and
    /// Strata position of its last message.
    once: Option<(jetstream::stream::Stream, HashMap<String, SubjectHead>)>,
}

#[derive(Clone, Copy, Debug)]
struct SubjectHead {
    sequence: u64,
    position: Option<u64>,
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
        let mut once = None;
        if let Some(spec) = &settings.create_stream {
            let stream = create_stream(&context, spec).await?;
            if settings.effectively_once {
                once = Some((stream, HashMap::new()));
            }
        }
        Ok(Self {
            context,
            subject,
            once,
        })
    }

    async fn send(
        &self,
        event: &RecordedEvent,
        subject: String,
        expected_sequence: Option<u64>,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let mut headers = HeaderMap::new();
        for (name, value) in event_headers(event) {
            headers.insert(name, value.as_str());
        }
        let mut message = PublishMessage::build()
            .payload(event.data.clone())
            .headers(headers)
            .message_id(event.id.to_string());
        if let Some(sequence) = expected_sequence {
            message = message.expected_last_subject_sequence(sequence);
        }
        self.context.send_publish(subject, message).await
    }

    /// Effectively once: per subject one message in flight, each expecting the subject's
    /// last sequence; an event at or before the position of the subject's last message is
    /// already there (sent before a crash) and is not sent again.
    async fn publish_once(&mut self, events: &[RecordedEvent]) -> Vec<Delivery> {
        let subjects: Vec<String> = events.iter().map(|e| self.subject.render(e)).collect();
        let mut deliveries: Vec<Option<Delivery>> = vec![None; events.len()];
        // Round r holds each subject's r-th event of the batch: one per subject.
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (index, subject) in subjects.iter().enumerate() {
            let round = seen.entry(subject.as_str()).or_default();
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(index);
            *round += 1;
        }
        for round in rounds {
            let mut pending = Vec::with_capacity(round.len());
            for index in round {
                let event = &events[index];
                let subject = &subjects[index];
                let head = match self.head(subject).await {
                    Ok(head) => head,
                    Err(error) => {
                        deliveries[index] = Some(Delivery::Failed { error });
                        continue;
                    }
                };
                if head
                    .position
                    .is_some_and(|position| position >= event.position.0)
                {
                    deliveries[index] = Some(Delivery::Acknowledged { duplicate: true });
                    continue;
                }
                let sent = self.send(event, subject.clone(), Some(head.sequence)).await;
                pending.push((index, sent));
            }
            for (index, sent) in pending {
                let delivery = match sent {
                    Ok(ack) => ack.await,
                    Err(error) => Err(error),
                };
                let subject = &subjects[index];
                let delivery = match delivery {
                    Ok(ack) => {
                        self.remember(
                            subject,
                            SubjectHead {
                                sequence: ack.sequence,
                                position: Some(events[index].position.0),
                            },
                        );
                        Delivery::Acknowledged {
                            duplicate: ack.duplicate,
                        }
                    }
                    Err(error) => {
                        // Whatever happened, ask the server for this subject's head again.
                        if let Some((_, heads)) = &mut self.once {
                            heads.remove(subject);
                        }
                        match error.kind() {
                            PublishErrorKind::WrongLastSequence => Delivery::Failed {
                                error: format!("subject {subject} moved under us: {error}"),
                            },
                            _ => classify(&error),
                        }
                    }
                };
                deliveries[index] = Some(delivery);
            }
        }
        deliveries
            .into_iter()
            .map(|delivery| {
                delivery.unwrap_or(Delivery::Failed {
                    error: "not sent".into(),
                })
            })
            .collect()
    }

    /// The subject's last sequence and the Strata position it carries (0 / none if empty).
    async fn head(&mut self, subject: &str) -> Result<SubjectHead, String> {
        let Some((stream, heads)) = &mut self.once else {
            return Err("effectively-once mode is off".into());
        };
        if let Some(head) = heads.get(subject) {
            return Ok(*head);
        }
        let head = match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => SubjectHead {
                sequence: message.sequence,
                position: message
                    .headers
                    .get(header::LOG_POSITION)
                    .and_then(|value| value.as_str().parse().ok()),
            },
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => SubjectHead {
                sequence: 0,
                position: None,
            },
            Err(error) => {
                return Err(format!(
                    "cannot read the last message of {subject}: {error}"
                ));
            }
        };
        self.remember(subject, head);
        Ok(head)
    }

    fn remember(&mut self, subject: &str, head: SubjectHead) {
        if let Some((_, heads)) = &mut self.once {
            if heads.len() >= SUBJECTS_REMEMBERED_MAX {
                heads.clear();
            }
            heads.insert(subject.to_owned(), head);
        }
    }
}

async fn create_stream(
    context: &jetstream::Context,
    spec: &NatsStreamSpec,
) -> Result<jetstream::stream::Stream, String> {
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
        .map_err(|error| format!("cannot create JetStream stream {}: {error}", spec.name))
}

#[async_trait]
impl Sink for NatsSink {
    async fn publish(&mut self, events: &[RecordedEvent]) -> Vec<Delivery> {
        if self.once.is_some() {
            return self.publish_once(events).await;
        }
        // Send them all (one ordered connection), then collect the acknowledgements.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            pending.push(self.send(event, self.subject.render(event), None).await);
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
