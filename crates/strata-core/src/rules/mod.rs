//! The rules every backend applies, decided once: expected revisions, idempotent re-sends,
//! soft delete, revival and tombstones ([`plan_append`], [`plan_delete`],
//! [`check_expected`]), and which revisions a stream read visits ([`StreamRead`]).
//!
//! Nothing here does I/O. A backend answers the few questions the rules ask through
//! [`StreamView`] (a stream's head, whether an id is stored at a revision, where a recent id is),
//! carries out the [`WritePlan`] it gets back, and remembers the heads the plan lists. The
//! semantics follow KurrentDB's storage writer and index reader:
//!
//! - a soft delete writes metadata `{"$tb": i64::MAX}` and nothing else (KurrentDB's
//!   `StorageWriterService` writes `new StreamMetadata(truncateBefore: DeletedStream)`);
//! - writing a soft-deleted stream revives it: the store also writes the stream's metadata
//!   with `$tb` set to the first new revision, every other key kept, in the same
//!   transaction;
//! - writing the metadata stream `$$S` of a soft-deleted `S` undeletes `S` the same way:
//!   the written metadata, with `$tb` past `S`'s last event (the old events stay hidden);
//! - `$$S` of a tombstoned `S` accepts writes once it has events of its own (it stays
//!   unreadable), and refuses them with `StreamDeleted` while it has none: KurrentDB's
//!   writer answers from its cache of stream versions, where a metadata stream written
//!   before the tombstone keeps its version, while one never written reads as deleted.
//!
//! ```
//! use std::collections::HashMap;
//! use strata_core::rules::{AppendDecision, StreamHead, plan_append};
//! use strata_core::{ExpectedRevision, ProposedEvent, StreamName};
//!
//! # fn main() -> Result<(), strata_core::Error> {
//! let heads: HashMap<StreamName, StreamHead> = HashMap::new();
//! let stream = StreamName::new("order-1")?;
//! let events = [ProposedEvent::json("Placed", "{}")];
//! let AppendDecision::Write(plan) = plan_append(&heads, &stream, ExpectedRevision::NoStream, &events)?
//! else {
//!     unreachable!("nothing is stored yet");
//! };
//! assert_eq!(plan.records.len(), 1);
//! assert_eq!(plan.records[0].revision, 0);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::metadata::StreamMetadata;
use crate::types::{EventId, Position, Revision, StreamName, StreamState};

mod multi;
mod read;
mod write;

pub use multi::{MultiAppendDecision, MultiWritePlan, plan_multi_append};
pub use read::{ExpirySearch, Retention, StreamRead, plan_stream_read, retention};
pub use write::{
    AppendDecision, PlannedRecord, RecordBody, WritePlan, check_expected, plan_append, plan_delete,
    streams_consulted,
};

/// What a backend knows of one stream's head.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamHead {
    /// Revision of the stream's last event; `None` when it never had one.
    pub last_revision: Option<u64>,
    pub tombstoned: bool,
    /// Parsed from the last event of `$$stream`; `None` when none was written.
    pub metadata: Option<Arc<StreamMetadata>>,
}

impl StreamHead {
    /// The state concurrency checks report.
    pub fn state(&self) -> StreamState {
        match (self.tombstoned, self.last_revision) {
            (true, _) => StreamState::Tombstoned,
            (false, Some(last)) => StreamState::At(Revision(last)),
            (false, None) => StreamState::NoStream,
        }
    }

    /// True when the stream's metadata says it is soft-deleted.
    pub fn is_soft_deleted(&self) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|metadata| metadata.is_soft_deleted())
    }

    /// The revision the next event gets.
    pub fn next_revision(&self) -> u64 {
        self.last_revision.map_or(0, |last| last + 1)
    }
}

/// The questions the rules ask a backend. Answers include what earlier requests of the
/// group being planned wrote.
pub trait StreamView {
    /// The head of `stream` (the default head when the backend knows nothing of it).
    ///
    /// # Errors
    /// Storage errors.
    fn head(&self, stream: &StreamName) -> Result<StreamHead>;

    /// The position of the event at `revision` of `stream` when that event's id is `id`;
    /// `None` when there is no event there or it has another id.
    ///
    /// # Errors
    /// Storage errors.
    fn event_position(
        &self,
        stream: &StreamName,
        revision: u64,
        id: EventId,
    ) -> Result<Option<Position>>;

    /// The revision of `stream` where the event `id` was written, when the backend still
    /// knows (re-sends with `Any` and `StreamExists` are recognised only while it does).
    ///
    /// # Errors
    /// Storage errors.
    fn recent_revision(&self, stream: &StreamName, id: EventId) -> Result<Option<u64>>;

    /// True when the system streams of [`crate::system_streams`] are served from indexes:
    /// writes to them (and to their metadata streams) are then refused.
    fn serves_system_streams(&self) -> bool {
        true
    }
}

/// Heads gathered beforehand; no stored ids (a check-only view, and for tests).
impl StreamView for HashMap<StreamName, StreamHead> {
    fn head(&self, stream: &StreamName) -> Result<StreamHead> {
        Ok(self.get(stream).cloned().unwrap_or_default())
    }

    fn event_position(
        &self,
        _stream: &StreamName,
        _revision: u64,
        _id: EventId,
    ) -> Result<Option<Position>> {
        Ok(None)
    }

    fn recent_revision(&self, _stream: &StreamName, _id: EventId) -> Result<Option<u64>> {
        Ok(None)
    }
}
