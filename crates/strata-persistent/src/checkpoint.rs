//! A group's durable progress: everything up to `done_through` is finished, and so is every
//! source event whose place lies in one of `done_ranges` (finished out of order above it).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata_core::{
    Bytes, ContentType, EventId, EventStore, ExpectedRevision, Leadership, ProposedEvent,
    ReadStreamOptions, StreamMetadata, StreamName, StreamState,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Event type of checkpoint events.
pub(crate) const CHECKPOINT_EVENT_TYPE: &str = "$SubscriptionCheckpoint";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Every source event at or before this place is finished.
    pub(crate) done_through: Option<u64>,
    /// Inclusive ranges of places above `done_through`, in order, whose events are finished.
    #[serde(default)]
    pub(crate) done_ranges: Vec<(u64, u64)>,
}

impl Checkpoint {
    /// True when the event at `place` was finished when this checkpoint was taken.
    pub(crate) fn covers(&self, place: u64) -> bool {
        if self.done_through.is_some_and(|through| place <= through) {
            return true;
        }
        self.done_ranges
            .binary_search_by(|&(first, last)| {
                if last < place {
                    std::cmp::Ordering::Less
                } else if first > place {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Each stored group's source and checkpoint (every source event at or before this place
/// finished: a position for `$all`, a revision for a stream; `None`: no checkpoint yet),
/// read from the store alone, no group running: what `strata cluster status` shows beside
/// the log end.
///
/// # Errors
/// Store errors; [`Error::CorruptState`] when the configuration or a checkpoint does not
/// parse.
pub async fn stored_progress(
    store: &dyn EventStore,
) -> Result<Vec<(crate::SubscriptionSource, String, Option<u64>)>> {
    let (groups, _) = crate::config::load(store).await?;
    let mut progress = Vec::with_capacity(groups.len());
    for group in groups {
        let stream = crate::source::checkpoint_stream(&group.source, &group.group)?;
        let done_through = load(store, &stream)
            .await?
            .and_then(|checkpoint| checkpoint.done_through);
        progress.push((group.source, group.group, done_through));
    }
    Ok(progress)
}

/// The last checkpoint written to `stream`, if any.
pub(crate) async fn load(
    store: &dyn EventStore,
    stream: &StreamName,
) -> Result<Option<Checkpoint>> {
    let last = store
        .read_stream(stream, ReadStreamOptions::backwards().max_count(1))
        .await?
        .into_events();
    let Some(event) = last.first() else {
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

/// Writes one checkpoint now, as the event after `expected` (fencing: two writers of one
/// checkpoint stream cannot both succeed from the same revision), stamped with the leader
/// epoch it was written under when the node is part of a cluster.
pub(crate) async fn write(
    store: &dyn EventStore,
    stream: &StreamName,
    checkpoint: &Checkpoint,
    expected: ExpectedRevision,
    epoch: Option<u64>,
) -> strata_core::Result<strata_core::AppendResult> {
    let metadata = epoch
        .map(|epoch| Bytes::from(serde_json::json!({ LEADER_EPOCH_KEY: epoch }).to_string()))
        .unwrap_or_default();
    let event = ProposedEvent {
        id: EventId::new_random(),
        event_type: CHECKPOINT_EVENT_TYPE.into(),
        content_type: ContentType::Json,
        data: Bytes::from(checkpoint.to_json()),
        metadata,
    };
    store.append(stream, expected, vec![event]).await
}

/// Metadata key of a checkpoint event: the leadership epoch it was written under.
pub(crate) const LEADER_EPOCH_KEY: &str = "$leaderEpoch";

/// What the next checkpoint must follow: the stream's last event now.
async fn current_expected(store: &dyn EventStore, stream: &StreamName) -> Result<ExpectedRevision> {
    Ok(match store.stream_state(stream).await? {
        StreamState::At(revision) => ExpectedRevision::Exact(revision.0),
        StreamState::NoStream | StreamState::Tombstoned => ExpectedRevision::NoStream,
    })
}

/// Writes `checkpoint` after `expected` (read first when unknown); `expected` follows the
/// stream. A concurrent writer (an old leader whose lease had not yet run out) makes the
/// write fail; the next checkpoint re-reads the stream.
async fn write_fenced(
    store: &dyn EventStore,
    stream: &StreamName,
    checkpoint: &Checkpoint,
    expected: &mut Option<ExpectedRevision>,
    leadership: Option<&Leadership>,
) -> Result<()> {
    let epoch = match leadership {
        None => None,
        Some(leadership) => match leadership.fence() {
            Some(epoch) => Some(epoch),
            None => {
                return Err(Error::Store(strata_core::Error::NotLeader {
                    leader: leadership.leader(),
                }));
            }
        },
    };
    let after = match *expected {
        Some(after) => after,
        None => current_expected(store, stream).await?,
    };
    match write(store, stream, checkpoint, after, epoch).await {
        Ok(result) => {
            *expected = Some(ExpectedRevision::Exact(result.current_revision.0));
            Ok(())
        }
        Err(error) => {
            *expected = None;
            Err(error.into())
        }
    }
}

/// Only the newest checkpoint matters: keep one event in the stream.
pub(crate) async fn limit_to_last(store: &dyn EventStore, stream: &StreamName) -> Result<()> {
    let metadata = StreamMetadata {
        max_count: Some(1),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(stream, ExpectedRevision::Any, &metadata)
        .await?;
    Ok(())
}

/// Writes checkpoints in the background, always the newest one handed to it: the group
/// never waits for the disk, and a burst of checkpoints costs one write.
pub(crate) struct CheckpointWriter {
    latest: watch::Sender<Option<Checkpoint>>,
    task: JoinHandle<()>,
}

impl CheckpointWriter {
    pub(crate) fn spawn(
        store: Arc<dyn EventStore>,
        stream: StreamName,
        leadership: Option<Arc<Leadership>>,
    ) -> Self {
        let (latest, mut receiver) = watch::channel(None::<Checkpoint>);
        let task = tokio::spawn(async move {
            let mut metadata_written = false;
            let mut expected = None;
            // `changed` still reports a value sent just before the sender was dropped.
            while receiver.changed().await.is_ok() {
                let Some(checkpoint) = receiver.borrow_and_update().clone() else {
                    continue;
                };
                if !metadata_written {
                    metadata_written = limit_to_last(&*store, &stream).await.is_ok();
                }
                if let Err(error) = write_fenced(
                    &*store,
                    &stream,
                    &checkpoint,
                    &mut expected,
                    leadership.as_deref(),
                )
                .await
                {
                    tracing::warn!(%stream, %error, "persistent subscription checkpoint not written; the next one retries");
                }
            }
        });
        Self { latest, task }
    }

    /// Hands over a newer checkpoint.
    pub(crate) fn submit(&self, checkpoint: Checkpoint) {
        self.latest.send_replace(Some(checkpoint));
    }

    /// Writes `last` (if any) and waits until everything handed over is written.
    pub(crate) async fn finish(self, last: Option<Checkpoint>) {
        if let Some(checkpoint) = last {
            self.latest.send_replace(Some(checkpoint));
        }
        drop(self.latest);
        let _ = self.task.await;
    }

    /// Stops without writing what is pending (the group was deleted).
    pub(crate) fn abandon(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_prefix_and_the_ranges_only() {
        let checkpoint = Checkpoint {
            done_through: Some(10),
            done_ranges: vec![(15, 20), (30, 30)],
        };
        for place in [0, 10, 15, 17, 20, 30] {
            assert!(checkpoint.covers(place), "{place}");
        }
        for place in [11, 14, 21, 29, 31] {
            assert!(!checkpoint.covers(place), "{place}");
        }
        assert!(!Checkpoint::default().covers(0));
    }

    #[test]
    fn json_round_trips() {
        let checkpoint = Checkpoint {
            done_through: Some(7),
            done_ranges: vec![(9, 12)],
        };
        let parsed: Checkpoint = serde_json::from_slice(&checkpoint.to_json()).unwrap();
        assert_eq!(parsed, checkpoint);
    }
}
