//! The second stage of group commit: makes written groups durable and visible.
//!
//! The writer plans, encodes and writes a group, then hands it here and goes on with the
//! next one. The syncer takes every group handed over so far, makes them durable with one
//! `fdatasync` per segment touched, then — in order — updates the index, publishes the new
//! durable end and acknowledges the appenders. One sync thus covers all groups written while
//! the previous sync ran, which is what lets many concurrent single-event appends share it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_core::{
    AppendResult, DeleteResult, Error, MultiAppendResult, Position, Result, StreamMetadata,
    StreamName,
};
use tokio::sync::oneshot;

use crate::config::Durability;
use crate::format::SEGMENT_HEADER_BYTES;
use crate::index_saver::{IndexFileContents, IndexSaver, RunsAtOpen};
use crate::io::SegmentFile;
use crate::recovery::write_clean_marker;
use crate::run_file::RunSet;
use crate::secondary::RunKeys;
use crate::shared::Shared;

/// What one group commit made durable: every group the writer handed over while the
/// previous commit ran, synced with one `fdatasync` per segment touched.
#[derive(Clone, Copy, Debug)]
pub struct CommitStats {
    /// Appends and deletes the commit acknowledged.
    pub requests: usize,
    /// Log bytes it made durable.
    pub bytes: u64,
    /// Time spent in `fdatasync` (zero with durability `none`).
    pub sync: Duration,
    /// Time from taking the groups to acknowledging them: the syncs, the index update and
    /// the publication of the new durable end.
    pub flush: Duration,
}

/// Told about each group commit once it is durable and acknowledged (on the syncer's
/// thread: it must return quickly).
pub trait CommitObserver: Send + Sync {
    fn committed(&self, stats: &CommitStats);
}

pub(crate) enum Reply {
    Append(oneshot::Sender<Result<AppendResult>>, Result<AppendResult>),
    Delete(oneshot::Sender<Result<DeleteResult>>, Result<DeleteResult>),
    AppendMulti(
        oneshot::Sender<Result<MultiAppendResult>>,
        Result<MultiAppendResult>,
    ),
}

impl Reply {
    fn send(self) {
        match self {
            Reply::Append(sender, outcome) => {
                let _ = sender.send(outcome);
            }
            Reply::Delete(sender, outcome) => {
                let _ = sender.send(outcome);
            }
            Reply::AppendMulti(sender, outcome) => {
                let _ = sender.send(outcome);
            }
        }
    }

    /// Replaces a success with `Poisoned`: what was written is not known to be durable.
    fn fail(self, cause: &str) {
        let poisoned = || Error::Poisoned {
            cause: cause.to_owned(),
        };
        match self {
            Reply::Append(sender, outcome) => {
                let _ = sender.send(outcome.and_then(|_| Err(poisoned())));
            }
            Reply::Delete(sender, outcome) => {
                let _ = sender.send(outcome.and_then(|_| Err(poisoned())));
            }
            Reply::AppendMulti(sender, outcome) => {
                let _ = sender.send(outcome.and_then(|_| Err(poisoned())));
            }
        }
    }
}

pub(crate) enum IndexUpdate {
    /// Consecutive revisions of one stream from `first_revision`; a tombstone is a lone
    /// event at the tombstone revision.
    Events {
        stream: StreamName,
        first_revision: u64,
        positions: Vec<u64>,
        /// What the secondary indexes need of these events.
        keys: RunKeys,
    },
    Metadata {
        stream: StreamName,
        metadata: Arc<StreamMetadata>,
    },
}

/// A group the writer has written (not yet synced).
pub(crate) struct WrittenGroup {
    pub sequence: u64,
    /// Position after the group's last frame.
    pub end_position: u64,
    pub segments_touched: Vec<u64>,
    pub updates: Vec<IndexUpdate>,
    pub replies: Vec<Reply>,
    /// The `(id hash, position)` of its event frames but tombstones (event id index on).
    pub ids: Vec<(u64, u64)>,
}

pub(crate) enum Handoff {
    Group(WrittenGroup),
    /// The writer has stopped; finish, save the index, mark the shutdown clean.
    Shutdown(std::sync::mpsc::Sender<()>),
    /// Save an index file after the groups before it, then say so once it is written.
    SaveIndex(std::sync::mpsc::Sender<()>),
}

pub(crate) struct Syncer {
    shared: Arc<Shared>,
    handoffs: std::sync::mpsc::Receiver<Handoff>,
    index_file_sequence: u64,
    index_covered_to: u64,
    durable_end: u64,
    /// The published groups' `(id hash, position)` pairs since the last index save (or the
    /// open), handed to the event id builder with the next save.
    ids: crate::id_index::HandedIds,
    syncs_done: u64,
    index_saver: IndexSaver,
}

impl Syncer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        handoffs: std::sync::mpsc::Receiver<Handoff>,
        index_file_sequence: u64,
        index_covered_to: u64,
        durable_end: u64,
        runs: RunSet,
    ) -> Self {
        Self {
            index_saver: IndexSaver::start(
                shared.index_dir.clone(),
                shared.clone(),
                RunsAtOpen {
                    runs,
                    start: SEGMENT_HEADER_BYTES,
                    index_covered_to,
                },
            ),
            shared,
            handoffs,
            index_file_sequence,
            index_covered_to,
            durable_end,
            ids: crate::id_index::HandedIds::new(durable_end),
            syncs_done: 0,
        }
    }

    pub(crate) fn run(mut self) {
        let mut shutdown = None;
        while shutdown.is_none() {
            let Ok(first) = self.handoffs.recv() else {
                break;
            };
            let mut groups = Vec::new();
            let mut index_saves = Vec::new();
            for handoff in std::iter::once(first).chain(self.handoffs.try_iter()) {
                match handoff {
                    Handoff::Group(group) => groups.push(group),
                    Handoff::Shutdown(done) => shutdown = Some(done),
                    Handoff::SaveIndex(done) => index_saves.push(done),
                }
            }
            self.complete(groups);
            if !index_saves.is_empty() {
                self.save_index();
                for done in index_saves {
                    self.index_saver.flushed(done);
                }
            }
        }
        self.finish();
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
    }

    fn complete(&mut self, groups: Vec<WrittenGroup>) {
        if groups.is_empty() {
            return;
        }
        let started = Instant::now();
        let durable_before = self.durable_end;
        let requests = groups.iter().map(|group| group.replies.len()).sum();
        let outcome = match self.shared.poison_cause() {
            Some(cause) => Err(cause),
            None => self.sync(&groups).map_err(|error| {
                let cause = error.to_string();
                tracing::error!(%cause, "sync failed: the store is poisoned");
                self.shared.poison(cause.clone());
                cause
            }),
        };
        match outcome {
            Ok(()) => {
                if self.shared.config.durability == Durability::Fsync
                    && let Some(last) = groups.last()
                {
                    // Synced: later groups may say so in their sync marks.
                    self.shared
                        .synced_end
                        .store(last.end_position, Ordering::Release);
                }
                let sync = started.elapsed();
                self.publish(groups);
                if let Some(observer) = self.shared.commit_observer.get() {
                    observer.committed(&CommitStats {
                        requests,
                        bytes: self.durable_end - durable_before,
                        sync: if self.shared.config.durability == Durability::Fsync {
                            sync
                        } else {
                            Duration::ZERO
                        },
                        flush: started.elapsed(),
                    });
                }
            }
            Err(cause) => {
                for reply in groups.into_iter().flat_map(|group| group.replies) {
                    reply.fail(&cause);
                }
            }
        }
        if self.durable_end - self.index_covered_to
            >= self.shared.config.index_checkpoint_interval_bytes
        {
            self.save_index();
        }
    }

    fn sync(&mut self, groups: &[WrittenGroup]) -> Result<()> {
        if self.shared.config.durability != Durability::Fsync {
            return Ok(());
        }
        let mut segments: Vec<u64> = groups
            .iter()
            .flat_map(|group| group.segments_touched.iter().copied())
            .collect();
        segments.sort_unstable();
        segments.dedup();
        for segment_index in segments {
            let file = self.shared.segments.file(segment_index)?;
            self.sync_file(&file, segment_index)?;
        }
        Ok(())
    }

    fn sync_file(&mut self, file: &SegmentFile, segment_index: u64) -> Result<()> {
        let attempt = self.syncs_done;
        self.syncs_done += 1;
        let position = self.shared.segments.segment_start(segment_index);
        if self.shared.config.fail_sync_at == Some(attempt) {
            return Err(Error::io(
                format!(
                    "syncing {} (injected failure)",
                    self.shared.segments.describe(position)
                ),
                std::io::Error::other("injected fsync failure"),
            ));
        }
        file.sync_data().map_err(|error| {
            Error::io(
                format!("syncing {}", self.shared.segments.describe(position)),
                error,
            )
        })
    }

    /// Makes the groups visible in order: index first, then the durable end, then the
    /// watchers, then the replies.
    fn publish(&mut self, mut groups: Vec<WrittenGroup>) {
        for group in &mut groups {
            self.ids.add(&group.ids);
        }
        let mut replies = Vec::new();
        let mut published_sequence = 0;
        {
            let mut index = self.shared.index.write();
            for group in groups {
                for update in group.updates {
                    match update {
                        IndexUpdate::Events {
                            stream,
                            first_revision,
                            positions,
                            keys,
                        } => index.add_events(&stream, first_revision, &positions, &keys),
                        IndexUpdate::Metadata { stream, metadata } => {
                            index.set_metadata(&stream, metadata);
                        }
                    }
                }
                self.durable_end = group.end_position;
                published_sequence = group.sequence;
                replies.extend(group.replies);
            }
        }
        self.shared
            .published_sequence
            .store(published_sequence, Ordering::Release);
        self.shared
            .durable_end
            .store(self.durable_end, Ordering::Release);
        self.shared.log_end.send_replace(Position(self.durable_end));
        for reply in replies {
            reply.send();
        }
    }

    /// Hands what the index gained since the last index file to the saver.
    fn save_index(&mut self) {
        if self.durable_end == self.index_covered_to || self.shared.poison_cause().is_some() {
            return;
        }
        if self.shared.config.durability != Durability::Fsync
            && let Err(error) = self.sync_log_up_to_durable_end()
        {
            // An index file must never cover log that is not on disk.
            tracing::warn!(%error, "could not sync the log; the index file waits");
            return;
        }
        let (streams, postings, secondary_kept) = {
            let mut index = self.shared.index.write();
            let kept = index.secondary.enabled();
            (index.take_unsaved(), index.secondary.take_unsaved(), kept)
        };
        self.index_saver.save(IndexFileContents {
            sequence: self.index_file_sequence,
            covers_from: self.index_covered_to,
            covers_to: self.durable_end,
            streams,
            postings,
            secondary_kept,
        });
        self.index_file_sequence += 1;
        self.index_covered_to = self.durable_end;
        let ids = std::mem::replace(
            &mut self.ids,
            crate::id_index::HandedIds::new(self.durable_end),
        );
        self.shared.id_index.extend_with(ids, self.durable_end);
    }

    /// With durability `none` nothing syncs the log as it goes; an index file may only
    /// cover log that is on disk, so the log is synced first.
    fn sync_log_up_to_durable_end(&mut self) -> Result<()> {
        let segments = &self.shared.segments;
        let first = segments.segment_of(self.index_covered_to);
        let last = segments.segment_of(self.durable_end.saturating_sub(1));
        segments.sync(first..last + 1)?;
        self.shared
            .synced_end
            .store(self.durable_end, Ordering::Release);
        Ok(())
    }

    fn finish(&mut self) {
        self.save_index();
        self.index_saver.finish();
        if self.shared.poison_cause().is_none()
            && let Err(error) = write_clean_marker(&self.shared.data_dir, self.durable_end)
        {
            tracing::warn!(%error, "could not mark the shutdown clean");
        }
    }
}
