//! The system streams a connector keeps its state in, named as KurrentDB names them:
//! definitions in `$connectors`, progress in `$connectors/<id>/checkpoints` (one event
//! kept), refused events in `$connectors/<id>/dead-letters`.

use serde::{Deserialize, Serialize};
use strata_core::{
    Bytes, ContentType, EventId, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions,
    RecordedEvent, StreamMetadata, StreamName,
};

use crate::definition::{ConnectorDefinition, Source, StartFrom};
use crate::error::{Error, Result};

/// Event type of checkpoints.
pub(crate) const CHECKPOINT_EVENT_TYPE: &str = "$ConnectorCheckpoint";

/// Event type of the stored list of connectors.
const DEFINITIONS_EVENT_TYPE: &str = "$ConnectorDefinitions";

/// Metadata key of a dead letter saying why the broker refused it.
pub const DEAD_LETTER_REASON_KEY: &str = "$deadLetterReason";

/// The stream of definitions.
pub fn definitions_stream() -> StreamName {
    StreamName::from_stored("$connectors")
}

/// Where connector `id` checkpoints.
pub fn checkpoint_stream(id: &str) -> StreamName {
    StreamName::from_stored(&format!("$connectors/{id}/checkpoints"))
}

/// Where connector `id` parks the events its broker refused for good.
pub fn dead_letter_stream(id: &str) -> StreamName {
    StreamName::from_stored(&format!("$connectors/{id}/dead-letters"))
}

/// Where to resume: the source cursor (a position, or a revision for a stream source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) resume: StartFrom,
}

pub(crate) async fn load_checkpoint(
    store: &dyn EventStore,
    id: &str,
) -> Result<Option<Checkpoint>> {
    let stream = checkpoint_stream(id);
    let Some(event) = last_event(store, &stream).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&event.data)
        .map(Some)
        .map_err(|error| Error::CorruptState {
            stream: stream.to_string(),
            detail: format!(
                "checkpoint at revision {} does not parse: {error}",
                event.revision
            ),
        })
}

pub(crate) async fn save_checkpoint(
    store: &dyn EventStore,
    id: &str,
    checkpoint: Checkpoint,
) -> Result<()> {
    let data = serde_json::to_vec(&checkpoint).unwrap_or_default();
    store
        .append(
            &checkpoint_stream(id),
            ExpectedRevision::Any,
            vec![system_event(CHECKPOINT_EVENT_TYPE, data)],
        )
        .await?;
    Ok(())
}

/// Keeps one checkpoint event: only the newest matters.
pub(crate) async fn limit_checkpoints(store: &dyn EventStore, id: &str) -> Result<()> {
    let metadata = StreamMetadata {
        max_count: Some(1),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&checkpoint_stream(id), ExpectedRevision::Any, &metadata)
        .await?;
    Ok(())
}

/// Parks `event` with `reason`. The dead letter's id derives from the event's, so parking
/// the same event again after a crash is recognised as a re-send.
pub(crate) async fn dead_letter(
    store: &dyn EventStore,
    id: &str,
    event: &RecordedEvent,
    reason: &str,
) -> Result<()> {
    let original_metadata = serde_json::from_slice::<serde_json::Value>(&event.metadata).ok();
    let metadata = serde_json::json!({
        DEAD_LETTER_REASON_KEY: reason,
        "$originalStream": event.stream.as_str(),
        "$originalRevision": event.revision.0,
        "$originalPosition": event.position.0,
        "$originalId": event.id.to_string(),
        "$originalMetadata": original_metadata,
    });
    let letter = ProposedEvent {
        id: EventId::from_u128(event.id.as_u128() ^ DEAD_LETTER_ID_MASK),
        event_type: event.event_type.as_str().into(),
        content_type: event.content_type,
        data: event.data.clone(),
        metadata: Bytes::from(metadata.to_string()),
    };
    store
        .append(&dead_letter_stream(id), ExpectedRevision::Any, vec![letter])
        .await?;
    Ok(())
}

/// Flips bits of an event id to name its dead letter: distinct from the original, the same
/// every time.
const DEAD_LETTER_ID_MASK: u128 = 0x5a5a_5a5a_0000_0000_0000_0000_dead_1e77;

/// One stored connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredConnector {
    pub(crate) definition: ConnectorDefinition,
    pub(crate) enabled: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredDefinitions {
    version: u32,
    connectors: Vec<StoredConnector>,
}

/// Each stored connector's source and checkpoint cursor (after this position, or revision
/// for a stream source; `None`: no checkpoint yet), read from the store alone, no connector
/// running: what `strata cluster status` shows beside the log end.
///
/// # Errors
/// Store errors; [`Error::CorruptState`] when a stored list or checkpoint does not parse.
pub async fn stored_progress(store: &dyn EventStore) -> Result<Vec<(String, Source, Option<u64>)>> {
    let (connectors, _) = load_definitions(store).await?;
    let mut progress = Vec::with_capacity(connectors.len());
    for connector in connectors {
        let id = connector.definition.id;
        let cursor = match load_checkpoint(store, &id).await? {
            Some(Checkpoint {
                resume: StartFrom::After(cursor),
            }) => Some(cursor),
            _ => None,
        };
        progress.push((id, connector.definition.source, cursor));
    }
    Ok(progress)
}

/// The stored connectors and the revision of the event they came from.
pub(crate) async fn load_definitions(
    store: &dyn EventStore,
) -> Result<(Vec<StoredConnector>, Option<u64>)> {
    let stream = definitions_stream();
    let Some(event) = last_event(store, &stream).await? else {
        return Ok((Vec::new(), None));
    };
    let stored: StoredDefinitions =
        serde_json::from_slice(&event.data).map_err(|error| Error::CorruptState {
            stream: stream.to_string(),
            detail: format!(
                "definitions at revision {} do not parse: {error}",
                event.revision
            ),
        })?;
    Ok((stored.connectors, Some(event.revision.0)))
}

/// Writes the whole list if the stored one is still at `revision`; returns the new one.
pub(crate) async fn save_definitions(
    store: &dyn EventStore,
    connectors: Vec<StoredConnector>,
    revision: Option<u64>,
) -> Result<u64> {
    let data = serde_json::to_vec(&StoredDefinitions {
        version: 1,
        connectors,
    })
    .unwrap_or_default();
    let expected = match revision {
        Some(revision) => ExpectedRevision::Exact(revision),
        None => ExpectedRevision::NoStream,
    };
    let result = store
        .append(
            &definitions_stream(),
            expected,
            vec![system_event(DEFINITIONS_EVENT_TYPE, data)],
        )
        .await?;
    Ok(result.current_revision.0)
}

async fn last_event(store: &dyn EventStore, stream: &StreamName) -> Result<Option<RecordedEvent>> {
    Ok(store
        .read_stream(stream, ReadStreamOptions::backwards().max_count(1))
        .await?
        .into_events()
        .into_iter()
        .next())
}

fn system_event(event_type: &str, data: Vec<u8>) -> ProposedEvent {
    ProposedEvent {
        id: EventId::new_random(),
        event_type: event_type.into(),
        content_type: ContentType::Json,
        data: Bytes::from(data),
        metadata: Bytes::new(),
    }
}
