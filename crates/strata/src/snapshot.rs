//! Snapshots: an aggregate's serialised state at a revision, stored in the system stream
//! `$snapshot-<category>-<id>` beside the aggregate's own stream.
//!
//! A snapshot is derived data: it can be dropped at any time and the aggregate rebuilt from
//! its events, which never change. The `$` prefix keeps snapshots out of the aggregate's
//! category (a `cart-` subscription never sees them) and out of the toolkit's `$all`
//! projections, and `$maxCount: 1` on the snapshot stream hides all but the newest.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_core::{
    Bytes, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamMetadata,
    StreamName,
};

use crate::aggregate::Aggregate;
use crate::command_id::CommandId;
use crate::error::{Error, Result};

/// The event type of snapshot records.
pub const SNAPSHOT_EVENT_TYPE: &str = "$snapshot";

/// When the repository writes a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Only when asked ([`crate::Repository::snapshot`]).
    OnDemand,
    /// After a command leaves this many events (or more) since the last snapshot; a load
    /// then reads fewer than this many events after the snapshot.
    EveryEvents(u64),
}

/// The stream holding the snapshots of `stream`.
pub(crate) fn snapshot_stream(stream: &StreamName) -> StreamName {
    // Derived from a valid name; like `$$name`, it may be a few bytes over the name limit.
    StreamName::from_stored(&format!("$snapshot-{stream}"))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotMetadata {
    snapshot_version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotRecord {
    /// Revision of the last event the state includes.
    revision: u64,
    state: Value,
    /// The newest command ids the aggregate had seen, for idempotence past the snapshot.
    command_ids: Vec<CommandId>,
}

/// A snapshot read back and understood.
pub(crate) struct Snapshot<A> {
    pub aggregate: A,
    pub revision: u64,
    pub command_ids: Vec<CommandId>,
}

/// Reads the newest snapshot of `stream`; `None` when there is none or it cannot be read
/// (another snapshot version, or a state that no longer deserialises).
///
/// # Errors
/// Storage errors only.
pub(crate) async fn read_snapshot<A: Aggregate, S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
) -> Result<Option<Snapshot<A>>> {
    let snapshots = snapshot_stream(stream);
    let newest = store
        .read_stream(&snapshots, ReadStreamOptions::backwards().max_count(1))
        .await?
        .into_events();
    let Some(event) = newest.first() else {
        return Ok(None);
    };
    let version = serde_json::from_slice::<SnapshotMetadata>(&event.metadata)
        .map(|metadata| metadata.snapshot_version)
        .ok();
    if version != Some(A::SNAPSHOT_VERSION) {
        tracing::debug!(%snapshots, ?version, "snapshot of another version; replaying events");
        return Ok(None);
    }
    let decoded = serde_json::from_slice::<SnapshotRecord>(&event.data).and_then(|record| {
        let aggregate = serde_json::from_value::<A>(record.state)?;
        Ok(Snapshot {
            aggregate,
            revision: record.revision,
            command_ids: record.command_ids,
        })
    });
    match decoded {
        Ok(snapshot) => Ok(Some(snapshot)),
        Err(error) => {
            tracing::warn!(%snapshots, %error, "snapshot cannot be read; replaying events");
            Ok(None)
        }
    }
}

/// Appends a snapshot of `aggregate` at `revision`.
///
/// # Errors
/// [`Error::Encode`] when the state does not serialise; storage errors.
pub(crate) async fn write_snapshot<A: Aggregate, S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    aggregate: &A,
    revision: u64,
    command_ids: &[CommandId],
) -> Result<()> {
    let encode_error = |error: serde_json::Error| Error::Encode {
        event_type: SNAPSHOT_EVENT_TYPE.to_owned(),
        reason: error.to_string(),
    };
    let record = SnapshotRecord {
        revision,
        state: serde_json::to_value(aggregate).map_err(encode_error)?,
        command_ids: command_ids.to_vec(),
    };
    let data = serde_json::to_vec(&record).map_err(encode_error)?;
    let metadata = serde_json::to_vec(&SnapshotMetadata {
        snapshot_version: A::SNAPSHOT_VERSION,
    })
    .map_err(encode_error)?;
    let snapshots = snapshot_stream(stream);
    let event = ProposedEvent::json(SNAPSHOT_EVENT_TYPE, data).with_metadata(Bytes::from(metadata));
    let result = store
        .append(&snapshots, ExpectedRevision::Any, vec![event])
        .await?;
    if result.current_revision.0 == 0 {
        let keep_newest = StreamMetadata {
            max_count: Some(1),
            ..StreamMetadata::default()
        };
        store
            .set_stream_metadata(&snapshots, ExpectedRevision::Any, &keep_newest)
            .await?;
    }
    Ok(())
}
