//! A connector's optional JavaScript transform, run in the projections sandbox
//! ([`strata_projections::QuickJsTransform`]) on a thread of its own (a QuickJS runtime
//! stays on one thread). It maps one event to one message: the type, data and metadata may
//! change; the id, stream, revision and position never do, so brokers still deduplicate by
//! event id. `null`/`undefined` skips the event; a throw dead-letters it with the reason.

use base64::Engine as _;
use bytes::Bytes;
use strata_core::{ContentType, RecordedEvent};
use strata_projections::{Fault, QuickJsTransform, SandboxLimits};
use tokio::sync::oneshot;

use crate::sink::event_json;

/// What the transform made of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Publish this (the event with the transform's type, data and metadata).
    Publish(RecordedEvent),
    /// The transform returned null or undefined.
    Skip,
    /// The transform threw, broke a limit or returned something unusable.
    DeadLetter(String),
}

/// Compiles `source` and drops it: a compile error as a sentence.
pub(crate) fn check(source: &str) -> Result<(), String> {
    QuickJsTransform::compile(source, SandboxLimits::default())
        .map(drop)
        .map_err(|fault| compile_error(&fault))
}

fn compile_error(fault: &Fault) -> String {
    match fault {
        Fault::Syntax { message } => format!("the transform does not compile: {message}"),
        other => format!("the transform does not compile: {other}"),
    }
}

struct Job {
    events: Vec<RecordedEvent>,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// The transform's thread; it ends when this is dropped.
pub(crate) struct TransformWorker {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl TransformWorker {
    /// Starts the thread and compiles `source` on it.
    pub(crate) async fn start(connector: &str, source: String) -> Result<Self, String> {
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        let (compiled, compile_result) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("transform {connector}"))
            .spawn(move || {
                let limits = SandboxLimits::default();
                let mut transform = match QuickJsTransform::compile(&source, limits) {
                    Ok(transform) => {
                        let _ = compiled.send(Ok(()));
                        transform
                    }
                    Err(fault) => {
                        let _ = compiled.send(Err(compile_error(&fault)));
                        return;
                    }
                };
                while let Ok(job) = receiver.recv() {
                    let mut outcomes = Vec::with_capacity(job.events.len());
                    for event in job.events {
                        let outcome = match transform.apply(&event_json(&event).to_string()) {
                            Ok(None) => Outcome::Skip,
                            Ok(Some(output)) => match message(event, &output) {
                                Ok(message) => Outcome::Publish(message),
                                Err(reason) => Outcome::DeadLetter(format!(
                                    "the transform returned an unusable message: {reason}"
                                )),
                            },
                            Err(fault) => {
                                let reason = format!("the transform failed: {fault}");
                                if !matches!(fault, Fault::Exception { .. }) {
                                    // A broken limit may leave the runtime unfit: start afresh.
                                    match QuickJsTransform::compile(&source, limits) {
                                        Ok(fresh) => transform = fresh,
                                        Err(_) => return,
                                    }
                                }
                                Outcome::DeadLetter(reason)
                            }
                        };
                        outcomes.push(outcome);
                    }
                    let _ = job.reply.send(outcomes);
                }
            })
            .map_err(|error| format!("cannot start the transform's thread: {error}"))?;
        compile_result
            .await
            .map_err(|_| "the transform's thread ended".to_owned())??;
        Ok(Self { jobs })
    }

    /// One outcome per event, in order.
    pub(crate) async fn apply(&self, events: Vec<RecordedEvent>) -> Result<Vec<Outcome>, String> {
        let (reply, outcomes) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .map_err(|_| "the transform's thread ended".to_owned())?;
        outcomes
            .await
            .map_err(|_| "the transform's thread ended".to_owned())
    }
}

/// `event` with what the transform returned (`output`, a JSON object) replacing its type,
/// data and metadata; fields it does not name stay, the rest are ignored.
pub(crate) fn message(mut event: RecordedEvent, output: &str) -> Result<RecordedEvent, String> {
    let serde_json::Value::Object(fields) =
        serde_json::from_str::<serde_json::Value>(output).map_err(|error| error.to_string())?
    else {
        return Err("not an object".into());
    };
    let base64 = |key: &str, value: &serde_json::Value| match value {
        serde_json::Value::String(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|error| format!("`{key}` is not base64: {error}")),
        _ => Err(format!("`{key}` is not a string")),
    };
    if let Some(event_type) = fields.get("type") {
        match event_type {
            serde_json::Value::String(text) if !text.is_empty() => event.event_type = text.clone(),
            _ => return Err("`type` is not a non-empty string".into()),
        }
    }
    match (fields.get("data"), fields.get("dataBase64")) {
        (Some(_), Some(_)) => return Err("both `data` and `dataBase64`".into()),
        (Some(data), None) => {
            event.content_type = ContentType::Json;
            event.data = Bytes::from(data.to_string());
        }
        (None, Some(data)) => {
            event.content_type = ContentType::Binary;
            event.data = base64("dataBase64", data)?;
        }
        (None, None) => {}
    }
    match (fields.get("metadata"), fields.get("metadataBase64")) {
        (Some(_), Some(_)) => return Err("both `metadata` and `metadataBase64`".into()),
        (Some(serde_json::Value::Null), None) => event.metadata = Bytes::new(),
        (Some(metadata), None) => event.metadata = Bytes::from(metadata.to_string()),
        (None, Some(metadata)) => event.metadata = base64("metadataBase64", metadata)?,
        (None, None) => {}
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use strata_core::{EventId, Position, Revision, StreamName, Timestamp};

    use super::*;

    fn event() -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new("order-1").unwrap(),
            revision: Revision(4),
            position: Position(77),
            id: EventId::from_u128(9),
            event_type: "Placed".into(),
            content_type: ContentType::Json,
            data: Bytes::from_static(br#"{"total":5}"#),
            metadata: Bytes::from_static(br#"{"user":"ann"}"#),
            created: Timestamp(1),
        }
    }

    #[test]
    fn a_message_keeps_id_stream_and_position() {
        let out = message(
            event(),
            r#"{"id":"x","stream":"other","position":1,"type":"PlacedV2","data":[1],"metadata":null}"#,
        )
        .unwrap();
        assert_eq!(out.id, event().id);
        assert_eq!(out.stream, event().stream);
        assert_eq!((out.revision, out.position), (Revision(4), Position(77)));
        assert_eq!(out.event_type, "PlacedV2");
        assert_eq!(&out.data[..], b"[1]");
        assert!(out.metadata.is_empty());
    }

    #[test]
    fn unnamed_fields_stay_and_base64_makes_binary() {
        let out = message(event(), r#"{"dataBase64":"AAE="}"#).unwrap();
        assert_eq!(out.content_type, ContentType::Binary);
        assert_eq!(&out.data[..], &[0, 1]);
        assert_eq!(out.event_type, "Placed");
        assert_eq!(out.metadata, event().metadata);
    }

    #[test]
    fn unusable_messages_are_refused() {
        assert!(message(event(), r#"{"type":""}"#).is_err());
        assert!(message(event(), r#"{"type":3}"#).is_err());
        assert!(message(event(), r#"{"data":1,"dataBase64":"AA=="}"#).is_err());
        assert!(message(event(), r#"{"dataBase64":"!!"}"#).is_err());
    }

    #[tokio::test]
    async fn the_worker_maps_skips_and_dead_letters_in_order() {
        let worker = TransformWorker::start(
            "t",
            "(e) => { if (e.revision === 1) return null; \
                      if (e.revision === 2) throw new Error('no 2'); \
                      return { type: e.type + '!', data: { t: e.data.total } }; }"
                .into(),
        )
        .await
        .unwrap();
        let events: Vec<_> = (0..4)
            .map(|revision| RecordedEvent {
                revision: Revision(revision),
                ..event()
            })
            .collect();
        let outcomes = worker.apply(events).await.unwrap();
        assert_eq!(outcomes.len(), 4);
        assert!(
            matches!(&outcomes[0], Outcome::Publish(e) if e.event_type == "Placed!" && &e.data[..] == br#"{"t":5}"#)
        );
        assert_eq!(outcomes[1], Outcome::Skip);
        assert!(matches!(&outcomes[2], Outcome::DeadLetter(reason) if reason.contains("no 2")));
        assert!(matches!(&outcomes[3], Outcome::Publish(e) if e.revision == Revision(3)));
    }

    #[tokio::test]
    async fn a_compile_error_stops_the_worker_with_a_sentence() {
        let error = TransformWorker::start("t", "(e) => {".into())
            .await
            .err()
            .unwrap();
        assert!(
            error.starts_with("the transform does not compile"),
            "{error}"
        );
    }
}
