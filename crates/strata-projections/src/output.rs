//! Writing a batch's outputs exactly once.
//!
//! Every output carries a marker in its metadata: the projection, its epoch, and the place
//! of the source event that caused it (its position and the output's index among that
//! event's outputs); its id is derived from the same facts. After a restart the first batch
//! re-runs events whose outputs may already be written: for each stream it writes to, the
//! last marker of this projection found there says which outputs are already in place, and
//! only the rest are appended.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use strata_core::{
    APPEND_EVENTS_MAX, ContentType, EventId, EventStore, ExpectedRevision, ProposedEvent,
    ReadStreamOptions, StreamName,
};

use crate::error::Fault;
use crate::names;

/// Events read back from the end of a stream to find this projection's last output.
const MARKER_SEARCH_EVENTS_MAX: usize = 256;

const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c2b_1e7a_93d4_4f58_b0a1_5e9c_27d8_41f3);

/// The place of an output in the projection's run: ordered as the outputs were made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Marker {
    pub position: u64,
    pub index: u32,
}

/// An event to write.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub stream: String,
    pub event_type: String,
    pub data: String,
    pub is_json: bool,
    /// Metadata fields besides the marker.
    pub metadata: Map<String, Value>,
    pub marker: Marker,
}

/// Identifies one projection run: outputs of another epoch never count as written.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub projection: String,
    pub epoch: u64,
}

impl Writer {
    /// The id of an output: the same on every re-run.
    pub(crate) fn event_id(&self, stream: &str, marker: Marker) -> EventId {
        let name = format!(
            "{}\n{}\n{stream}\n{}\n{}",
            self.projection, self.epoch, marker.position, marker.index
        );
        EventId(uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()))
    }

    fn proposed(&self, output: &Output) -> ProposedEvent {
        let mut metadata = output.metadata.clone();
        metadata.insert("$projection".into(), self.projection.clone().into());
        metadata.insert("$epoch".into(), self.epoch.into());
        metadata.insert("$position".into(), output.marker.position.into());
        metadata.insert("$index".into(), output.marker.index.into());
        ProposedEvent {
            id: self.event_id(&output.stream, output.marker),
            event_type: output.event_type.as_str().into(),
            content_type: if output.is_json {
                ContentType::Json
            } else {
                ContentType::Binary
            },
            data: output.data.clone().into_bytes().into(),
            metadata: Value::Object(metadata).to_string().into_bytes().into(),
        }
    }

    /// The marker of this projection's (this epoch's) last output in `stream`, if any.
    pub(crate) async fn last_marker(
        &self,
        store: &dyn EventStore,
        stream: &StreamName,
    ) -> Result<Option<Marker>, Fault> {
        let options = ReadStreamOptions::backwards().max_count(MARKER_SEARCH_EVENTS_MAX);
        let events = match store.read_stream(stream, options).await {
            Ok(slice) => slice.into_events(),
            Err(strata_core::Error::StreamDeleted { .. }) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        Ok(events
            .iter()
            .find_map(|event| self.marker_of(&event.metadata)))
    }

    /// The marker in `metadata` when it is this projection's, this epoch.
    pub(crate) fn marker_of(&self, metadata: &[u8]) -> Option<Marker> {
        let value: Value = serde_json::from_slice(metadata).ok()?;
        if value.get("$projection")?.as_str()? != self.projection
            || value.get("$epoch")?.as_u64()? != self.epoch
        {
            return None;
        }
        Some(Marker {
            position: value.get("$position")?.as_u64()?,
            index: u32::try_from(value.get("$index")?.as_u64()?).ok()?,
        })
    }

    /// Appends `outputs`, stream by stream in the order made. With `recovering`, outputs
    /// already in place (at or before the stream's last marker) are left out.
    pub(crate) async fn write(
        &self,
        store: &dyn EventStore,
        outputs: Vec<Output>,
        recovering: bool,
    ) -> Result<(), Fault> {
        let mut by_stream: BTreeMap<String, Vec<Output>> = BTreeMap::new();
        for output in outputs {
            by_stream
                .entry(output.stream.clone())
                .or_default()
                .push(output);
        }
        for (stream, mut outputs) in by_stream {
            let name = names::stream(&stream)?;
            if recovering && let Some(last) = self.last_marker(store, &name).await? {
                outputs.retain(|output| output.marker > last);
            }
            for chunk in outputs.chunks(APPEND_EVENTS_MAX.min(4_096)) {
                let events = chunk.iter().map(|output| self.proposed(output)).collect();
                store
                    .append(&name, ExpectedRevision::Any, events)
                    .await
                    .map_err(|error| Fault::Store {
                        message: format!("writing to {stream}: {error}"),
                    })?;
            }
        }
        Ok(())
    }
}
