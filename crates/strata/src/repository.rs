//! The repository: loads an aggregate (newest snapshot + newer events), handles a command,
//! and appends the events at the revision it loaded, retrying on concurrency conflicts.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use strata_core::{EventStore, ExpectedRevision, ReadStreamOptions, Revision, StreamName};

use crate::aggregate::{Aggregate, stream_name};
use crate::cache::AggregateCache;
use crate::codec::{EventMetadata, decode_event, encode};
use crate::command_id::CommandId;
use crate::error::{CommandError, Error, Result};
use crate::snapshot::{SnapshotPolicy, read_snapshot, write_snapshot};
use crate::upcaster::Upcasters;

/// Conflict retries of one command by default.
pub const CONFLICT_RETRIES_DEFAULT: u32 = 16;

/// Command ids remembered per aggregate by default: a command id re-sent after this many
/// newer commands on the same aggregate is no longer recognised.
pub const COMMAND_IDS_REMEMBERED_DEFAULT: usize = 256;

/// Events read from the store per page while loading.
const LOAD_PAGE_EVENTS_MAX: usize = 4_096;

/// An aggregate as loaded, with where it stands in its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    aggregate: A,
    revision: Option<u64>,
    events_replayed: u64,
    events_since_snapshot: u64,
    from_snapshot: bool,
    command_ids: VecDeque<CommandId>,
}

impl<A> Loaded<A> {
    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    pub fn into_aggregate(self) -> A {
        self.aggregate
    }

    /// Revision of the last event the state includes; `None` for a new aggregate.
    pub fn revision(&self) -> Option<Revision> {
        self.revision.map(Revision)
    }

    /// Events read from the aggregate's stream by this load (those after the snapshot).
    pub fn events_replayed(&self) -> u64 {
        self.events_replayed
    }

    /// True when the load started from a snapshot.
    pub fn from_snapshot(&self) -> bool {
        self.from_snapshot
    }
}

/// What executing a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutcome {
    /// The stream's revision after the command; `None` when the aggregate has no events.
    pub revision: Option<Revision>,
    /// Events this execution appended (0 for a command that caused none, or a recognised
    /// duplicate; a copy racing its original is deduplicated by the store and reports the
    /// original's events).
    pub events_appended: usize,
    /// True when the command id had already been handled: nothing was appended again.
    pub duplicate: bool,
    /// Attempts made (1 when there was no conflict).
    pub attempts: u32,
}

/// Loads aggregates of type `A` from `S` and executes commands on them.
pub struct Repository<A, S: ?Sized> {
    store: Arc<S>,
    upcasters: Upcasters,
    snapshot_policy: SnapshotPolicy,
    conflict_retries_max: u32,
    command_ids_remembered_max: usize,
    cache: Option<AggregateCache<A>>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: EventStore + ?Sized> Repository<A, S> {
    /// A repository with no upcasters, snapshots on demand only, and the default retries.
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            upcasters: Upcasters::new(),
            snapshot_policy: SnapshotPolicy::OnDemand,
            conflict_retries_max: CONFLICT_RETRIES_DEFAULT,
            command_ids_remembered_max: COMMAND_IDS_REMEMBERED_DEFAULT,
            cache: None,
            aggregate: PhantomData,
        }
    }

    /// Keeps up to `aggregates` aggregates in memory between commands: a command on a cached
    /// aggregate reads only the events appended since (by anyone), not the whole stream
    /// after the snapshot. Events hidden later by metadata (`$tb`, `$maxCount`, a soft
    /// delete) stay in a cached state, as they do in a snapshot taken before.
    pub fn with_cache(mut self, aggregates: usize) -> Self {
        self.cache = Some(AggregateCache::new(aggregates));
        self
    }

    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot_policy = policy;
        self
    }

    /// How many times a command is reloaded and handled again after losing a race.
    pub fn with_conflict_retries(mut self, retries_max: u32) -> Self {
        self.conflict_retries_max = retries_max;
        self
    }

    pub fn with_command_ids_remembered(mut self, command_ids_max: usize) -> Self {
        self.command_ids_remembered_max = command_ids_max;
        self
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Loads aggregate `id`: the newest readable snapshot, then the events after it.
    ///
    /// # Errors
    /// [`Error::Decode`] or [`Error::Upcast`] for an event that cannot be read; storage
    /// errors (a tombstoned stream is [`strata_core::Error::StreamDeleted`]).
    pub async fn load(&self, id: &str) -> Result<Loaded<A>> {
        let stream = stream_name::<A>(id)?;
        self.load_stream(&stream).await
    }

    async fn load_stream(&self, stream: &StreamName) -> Result<Loaded<A>> {
        let loaded = match read_snapshot::<A, S>(&self.store, stream).await? {
            Some(snapshot) => Loaded {
                aggregate: snapshot.aggregate,
                revision: Some(snapshot.revision),
                events_replayed: 0,
                events_since_snapshot: 0,
                from_snapshot: true,
                command_ids: snapshot.command_ids.into(),
            },
            None => Loaded {
                aggregate: A::default(),
                revision: None,
                events_replayed: 0,
                events_since_snapshot: 0,
                from_snapshot: false,
                command_ids: VecDeque::new(),
            },
        };
        self.replay_after(stream, loaded).await
    }

    /// Applies the events of `stream` after `loaded`'s revision.
    async fn replay_after(&self, stream: &StreamName, mut loaded: Loaded<A>) -> Result<Loaded<A>> {
        loop {
            let next = loaded.revision.map_or(0, |revision| revision + 1);
            let options = ReadStreamOptions::forwards()
                .from_revision(next)
                .max_count(LOAD_PAGE_EVENTS_MAX);
            let events = self.store.read_stream(stream, options).await?.into_events();
            let page_was_full = events.len() == LOAD_PAGE_EVENTS_MAX;
            for recorded in &events {
                let event: A::Event = decode_event(recorded, &self.upcasters)?;
                loaded.aggregate.apply(&event);
                loaded.revision = Some(recorded.revision.0);
                loaded.events_replayed += 1;
                loaded.events_since_snapshot += 1;
                if let Some(command_id) = EventMetadata::of(recorded).command_id {
                    self.remember(&mut loaded.command_ids, command_id);
                }
            }
            if !page_was_full {
                return Ok(loaded);
            }
        }
    }

    fn remember(&self, command_ids: &mut VecDeque<CommandId>, command_id: CommandId) {
        if command_ids.back() == Some(&command_id) {
            return;
        }
        command_ids.push_back(command_id);
        while command_ids.len() > self.command_ids_remembered_max {
            command_ids.pop_front();
        }
    }

    /// Executes `command` on aggregate `id`; each call is a new command.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] when the aggregate refuses it;
    /// [`Error::ConflictRetriesExhausted`] when every attempt lost a race; load, encoding and
    /// storage errors.
    pub async fn execute(
        &self,
        id: &str,
        command: &A::Command,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        self.run(id, None, command).await
    }

    /// Executes `command` on aggregate `id` at most once per `command_id`: a repeat (a retry
    /// after a timeout, a redelivered message) appends nothing and reports a duplicate.
    ///
    /// The command id is stored in the metadata of the events and their ids are derived from
    /// it, so two racing copies of the command are deduplicated by the store, and a later
    /// copy is recognised among the aggregate's newest command ids (see
    /// [`COMMAND_IDS_REMEMBERED_DEFAULT`]). A command that caused no events leaves no trace.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_once(
        &self,
        id: &str,
        command_id: CommandId,
        command: &A::Command,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        self.run(id, Some(command_id), command).await
    }

    async fn run(
        &self,
        id: &str,
        command_id: Option<CommandId>,
        command: &A::Command,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        let stream = stream_name::<A>(id)?;
        let attempts_max = self.conflict_retries_max.saturating_add(1);
        let cached = self.cache.as_ref().and_then(|cache| cache.take(&stream));
        let mut known = match cached {
            Some(cached) => Some(self.replay_after(&stream, cached).await?),
            None => None,
        };
        for attempt in 1..=attempts_max {
            let loaded = match known.take() {
                Some(loaded) => loaded,
                None => self.load_stream(&stream).await?,
            };
            if let Some(command_id) = command_id
                && loaded.command_ids.contains(&command_id)
            {
                return Ok(CommandOutcome {
                    revision: loaded.revision(),
                    events_appended: 0,
                    duplicate: true,
                    attempts: attempt,
                });
            }
            let events = loaded
                .aggregate
                .handle(command)
                .map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(CommandOutcome {
                    revision: loaded.revision(),
                    events_appended: 0,
                    duplicate: false,
                    attempts: attempt,
                });
            }
            let proposed = events
                .iter()
                .enumerate()
                .map(|(index, event)| {
                    let event_id = command_id
                        .map_or_else(strata_core::EventId::new_random, |id| id.event_id(index));
                    encode(event, event_id, command_id)
                })
                .collect::<Result<Vec<_>>>()?;
            let expected = loaded
                .revision
                .map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            match self.store.append(&stream, expected, proposed).await {
                Ok(result) => {
                    let outcome = CommandOutcome {
                        revision: Some(result.current_revision),
                        events_appended: events.len(),
                        duplicate: false,
                        attempts: attempt,
                    };
                    let Some(mut loaded) = self
                        .after_append(&stream, loaded, command_id, &events, result)
                        .await
                    else {
                        return Ok(outcome);
                    };
                    self.snapshot_by_policy(&stream, &mut loaded).await;
                    if let Some(cache) = &self.cache {
                        cache.put(stream, loaded);
                    }
                    return Ok(outcome);
                }
                Err(strata_core::Error::WrongExpectedRevision { .. }) => {
                    // Let the winner's followers through, then read only what they added.
                    tokio::task::yield_now().await;
                    known = Some(self.replay_after(&stream, loaded).await?);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::ConflictRetriesExhausted {
            stream,
            attempts: attempts_max,
        }
        .into())
    }

    /// The state after a successful append of `events`.
    ///
    /// With a command id, the store may have answered a re-send: a racing copy of the command
    /// appended first, and this append reports its revision and position, exactly as it
    /// would report its own (nothing in `AppendResult` tells the two apart). The copy's events
    /// may differ from these (a handler may read the clock or draw ids), so the state is
    /// brought forward from the store instead, which costs one read of the events appended.
    /// `None` when that read fails: the command succeeded, but its state is not kept.
    async fn after_append(
        &self,
        stream: &StreamName,
        mut loaded: Loaded<A>,
        command_id: Option<CommandId>,
        events: &[A::Event],
        result: strata_core::AppendResult,
    ) -> Option<Loaded<A>> {
        if command_id.is_none() {
            // Random event ids: no other append can be taken for this one.
            for event in events {
                loaded.aggregate.apply(event);
            }
            loaded.revision = Some(result.current_revision.0);
            loaded.events_since_snapshot += events.len() as u64;
            return Some(loaded);
        }
        match self.replay_after(stream, loaded).await {
            Ok(reloaded) => Some(reloaded),
            Err(error) => {
                tracing::warn!(%stream, %error, "state after a command not reloaded; the next command loads it");
                None
            }
        }
    }

    /// A failed snapshot costs only a longer load later: the command's events are stored.
    async fn snapshot_by_policy(&self, stream: &StreamName, loaded: &mut Loaded<A>) {
        let SnapshotPolicy::EveryEvents(events_max) = self.snapshot_policy else {
            return;
        };
        let Some(revision) = loaded.revision else {
            return;
        };
        if loaded.events_since_snapshot < events_max.max(1) {
            return;
        }
        let command_ids: Vec<CommandId> = loaded.command_ids.iter().copied().collect();
        let written = write_snapshot(
            &*self.store,
            stream,
            &loaded.aggregate,
            revision,
            &command_ids,
        )
        .await;
        match written {
            Ok(()) => loaded.events_since_snapshot = 0,
            Err(error) => {
                tracing::warn!(%stream, %error, "snapshot not written; loads replay more events");
            }
        }
    }

    /// Writes a snapshot of aggregate `id` now; returns the revision it covers (`None` for
    /// an aggregate with no events, which gets no snapshot).
    ///
    /// # Errors
    /// Load errors; [`Error::Encode`] when the state does not serialise; storage errors.
    pub async fn snapshot(&self, id: &str) -> Result<Option<Revision>> {
        let stream = stream_name::<A>(id)?;
        let loaded = self.load_stream(&stream).await?;
        let Some(revision) = loaded.revision else {
            return Ok(None);
        };
        let command_ids: Vec<CommandId> = loaded.command_ids.iter().copied().collect();
        write_snapshot(
            &*self.store,
            &stream,
            &loaded.aggregate,
            revision,
            &command_ids,
        )
        .await?;
        Ok(Some(Revision(revision)))
    }
}
