//! The projection manager: create, update, delete, enable, disable, abort, reset, and read
//! state, result and statistics — what the gRPC `Projections` service translates onto.
//!
//! Definitions live in system streams as KurrentDB keeps them: `$projections-$all` registers
//! names (`$ProjectionCreated` / `$ProjectionDeleted`, data = the name) and
//! `$projections-<name>` holds the definition (`$ProjectionUpdated`, JSON). [`ProjectionManager::start`]
//! reads them back and starts every enabled projection where its checkpoint left it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_core::{
    EventStore, ExpectedRevision, Leadership, ProposedEvent, ReadStreamOptions, StreamName,
};
use tokio::runtime::Handle;
use tokio::sync::Mutex;

use crate::engine::{EngineFactory, QueryDefinition, SandboxLimits};
use crate::error::{Fault, ProjectionError};
use crate::names::{ProjectionNames, REGISTRY_STREAM};
use crate::runner::{self, BATCH_EVENTS_DEFAULT, Mode, RunConfig, RunHandle, RunStatus};

const CREATED_EVENT_TYPE: &str = "$ProjectionCreated";
const DELETED_EVENT_TYPE: &str = "$ProjectionDeleted";
const UPDATED_EVENT_TYPE: &str = "$ProjectionUpdated";
/// How often a stopping run is looked at while the manager waits for it.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Longest name a projection may have (its streams carry it).
pub const NAME_BYTES_MAX: usize = 200;

/// A projection's definition as stored in `$projections-<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDefinition {
    pub name: String,
    pub handler_type: String,
    pub query: String,
    pub mode: Mode,
    pub enabled: bool,
    pub emit_enabled: bool,
    pub track_emitted_streams: bool,
    /// Bumped by each reset.
    pub epoch: u64,
    /// Bumped by each update.
    pub version: u64,
}

/// How a projection is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    pub mode: Mode,
    pub emit_enabled: bool,
    pub track_emitted_streams: bool,
}

/// What a delete removes besides the definition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// The streams the projection emitted to (those `-emittedstreams` lists).
    pub delete_emitted_streams: bool,
    /// The result streams and the partition states.
    pub delete_state_stream: bool,
    /// `-checkpoint`.
    pub delete_checkpoint_stream: bool,
}

/// What `Statistics` reports of one projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Statistics {
    pub name: String,
    pub effective_name: String,
    /// `Running`, `Stopped`, `Faulted`, `Completed/Stopped`.
    pub status: String,
    /// Why it faulted, or empty.
    pub state_reason: String,
    /// `OneTime` or `Continuous`.
    pub mode: String,
    pub epoch: u64,
    pub version: u64,
    /// The checkpoint's cursors, as JSON.
    pub position: String,
    /// 100 when caught up, else the last processed position over the log's end, in percent.
    pub progress: f32,
    pub events_processed_after_restart: u64,
    pub partitions_cached: usize,
    pub checkpoint_status: String,
}

struct Managed {
    definition: StoredDefinition,
    run: Option<RunHandle>,
}

/// Runs and manages the projections of one store.
pub struct ProjectionManager {
    store: Arc<dyn EventStore>,
    factory: Arc<dyn EngineFactory>,
    limits: SandboxLimits,
    handle: Handle,
    projections: Mutex<BTreeMap<String, Managed>>,
    /// The node's place in its cluster (set once); on a follower every management call
    /// answers `not-leader`.
    leadership: OnceLock<Arc<Leadership>>,
}

impl ProjectionManager {
    /// Reads the stored definitions and starts the enabled projections. Call inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// Storage errors while reading the definitions.
    pub async fn start(
        store: Arc<dyn EventStore>,
        factory: Arc<dyn EngineFactory>,
        limits: SandboxLimits,
    ) -> Result<Arc<Self>, ProjectionError> {
        let manager = Arc::new(Self {
            store,
            factory,
            limits,
            handle: Handle::current(),
            projections: Mutex::new(BTreeMap::new()),
            leadership: OnceLock::new(),
        });
        let mut projections = manager.projections.lock().await;
        *projections = manager.load_definitions().await?;
        for managed in projections.values_mut() {
            if managed.definition.enabled {
                manager.start_run(managed);
            }
        }
        drop(projections);
        Ok(manager)
    }

    /// The stored definitions, none running.
    async fn load_definitions(&self) -> Result<BTreeMap<String, Managed>, ProjectionError> {
        let mut names = Vec::new();
        for event in
            read_events(&*self.store, REGISTRY_STREAM, ReadStreamOptions::forwards()).await?
        {
            let name = String::from_utf8_lossy(&event.data).into_owned();
            match event.event_type.as_str() {
                CREATED_EVENT_TYPE if !names.contains(&name) => names.push(name),
                DELETED_EVENT_TYPE => names.retain(|known| known != &name),
                _ => {}
            }
        }
        let mut loaded = BTreeMap::new();
        for name in names {
            let Some(definition) = self.stored_definition(&name).await? else {
                continue;
            };
            loaded.insert(
                name,
                Managed {
                    definition,
                    run: None,
                },
            );
        }
        Ok(loaded)
    }

    /// Makes the manager follow `leadership`: while this node is not the leader, every
    /// management call (statistics, state and result among them) fails with
    /// [`strata_core::Error::NotLeader`] naming the leader, as the reference server answers
    /// leader-only calls on a follower. Set once; later calls are ignored.
    pub fn set_leadership(&self, leadership: Arc<Leadership>) {
        let _ = self.leadership.set(leadership);
    }

    /// `Ok` unless this node is a cluster's follower ([`strata_core::Error::NotLeader`]).
    ///
    /// # Errors
    /// [`ProjectionError::Store`] with [`strata_core::Error::NotLeader`] on a follower.
    pub fn check_leader(&self) -> Result<(), ProjectionError> {
        match self.leadership.get() {
            Some(leadership) if !leadership.is_leader() => {
                Err(ProjectionError::Store(strata_core::Error::NotLeader {
                    leader: leadership.leader(),
                }))
            }
            _ => Ok(()),
        }
    }

    async fn stored_definition(
        &self,
        name: &str,
    ) -> Result<Option<StoredDefinition>, ProjectionError> {
        let stream = ProjectionNames::definition(name);
        let last = read_events(
            &*self.store,
            &stream,
            ReadStreamOptions::backwards().max_count(1),
        )
        .await?;
        Ok(last
            .first()
            .filter(|event| event.event_type == UPDATED_EVENT_TYPE)
            .and_then(|event| serde_json::from_slice(&event.data).ok()))
    }

    /// Creates a projection and starts it.
    ///
    /// # Errors
    /// [`ProjectionError::AlreadyExists`], [`ProjectionError::InvalidArgument`] for a bad
    /// name or [`TRACK_WITHOUT_EMIT`]; storage errors.
    pub async fn create(
        &self,
        name: &str,
        query: &str,
        options: CreateOptions,
    ) -> Result<(), ProjectionError> {
        self.check_leader()?;
        check_name(name)?;
        // Checked before the name is looked up, as the reference's `ProjectionConfig` is.
        if options.track_emitted_streams && !options.emit_enabled {
            return Err(ProjectionError::InvalidArgument {
                reason: TRACK_WITHOUT_EMIT.into(),
            });
        }
        let mut projections = self.projections.lock().await;
        if projections.contains_key(name) {
            return Err(ProjectionError::AlreadyExists { name: name.into() });
        }
        let definition = StoredDefinition {
            name: name.to_owned(),
            handler_type: "JS".into(),
            query: query.to_owned(),
            mode: options.mode,
            enabled: true,
            emit_enabled: options.emit_enabled,
            track_emitted_streams: options.track_emitted_streams,
            epoch: 0,
            version: 0,
        };
        self.append(
            REGISTRY_STREAM,
            CREATED_EVENT_TYPE,
            name.as_bytes().to_vec(),
            false,
        )
        .await?;
        self.persist(&definition).await?;
        let mut managed = Managed {
            definition,
            run: None,
        };
        self.start_run(&mut managed);
        projections.insert(name.to_owned(), managed);
        Ok(())
    }

    /// Replaces the query (and the emit option when given); a running projection restarts
    /// with it from its checkpoint.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn update(
        &self,
        name: &str,
        query: &str,
        emit_enabled: Option<bool>,
    ) -> Result<(), ProjectionError> {
        self.change(
            name,
            |definition| {
                definition.query = query.to_owned();
                if let Some(emit_enabled) = emit_enabled {
                    definition.emit_enabled = emit_enabled;
                }
                definition.version += 1;
            },
            Restart::IfEnabled,
        )
        .await
    }

    /// Starts a stopped or faulted projection.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn enable(&self, name: &str) -> Result<(), ProjectionError> {
        self.change(
            name,
            |definition| definition.enabled = true,
            Restart::IfEnabled,
        )
        .await
    }

    /// Stops a projection after its current batch, its checkpoint written.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn disable(&self, name: &str) -> Result<(), ProjectionError> {
        self.change(name, |definition| definition.enabled = false, Restart::Stop)
            .await
    }

    /// Stops a projection at once, without writing its current batch.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn abort(&self, name: &str) -> Result<(), ProjectionError> {
        self.change(
            name,
            |definition| definition.enabled = false,
            Restart::Abort,
        )
        .await
    }

    /// Starts a new epoch: state, results and checkpoint are rebuilt from the start. A
    /// running projection keeps running.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn reset(&self, name: &str) -> Result<(), ProjectionError> {
        self.change(name, |definition| definition.epoch += 1, Restart::IfEnabled)
            .await
    }

    /// Deletes a stopped projection and, as asked, its streams.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; [`ProjectionError::FailedPrecondition`] while it runs;
    /// storage errors.
    pub async fn delete(&self, name: &str, options: DeleteOptions) -> Result<(), ProjectionError> {
        self.check_leader()?;
        let mut projections = self.projections.lock().await;
        let managed = projections
            .get_mut(name)
            .ok_or_else(|| ProjectionError::NotFound { name: name.into() })?;
        let definition = managed.definition.clone();
        let query_definition = self.query_definition(&definition.query);
        // A query that reads nothing never runs (its run faults at once): deleting it right
        // after its create must not race that fault.
        if query_definition.has_source()
            && managed
                .run
                .as_ref()
                .is_some_and(|run| run.progress().status == RunStatus::Running)
        {
            return Err(ProjectionError::FailedPrecondition {
                reason: format!("Projection '{name}' is running: disable it before deleting it"),
            });
        }
        let names = ProjectionNames::new(name, &query_definition);
        let partitions: Vec<String> = read_events(
            &*self.store,
            &names.partitions(),
            ReadStreamOptions::forwards(),
        )
        .await?
        .iter()
        .map(|event| String::from_utf8_lossy(&event.data).into_owned())
        .collect();
        let mut doomed = Vec::new();
        if options.delete_emitted_streams {
            for event in read_events(
                &*self.store,
                &names.emitted_streams(),
                ReadStreamOptions::forwards(),
            )
            .await?
            {
                doomed.push(String::from_utf8_lossy(&event.data).into_owned());
            }
            doomed.push(names.emitted_streams());
        }
        // The result streams stay, whatever the flags: the reference's delete never removes
        // them (its `DeleteStateStream` removes nothing), and clients read them after.
        if options.delete_state_stream {
            for partition in &partitions {
                doomed.push(names.partition_checkpoint(partition));
            }
            doomed.push(names.partitions());
        }
        if options.delete_checkpoint_stream {
            doomed.push(names.checkpoint());
        }
        for stream in doomed {
            self.delete_stream(&stream).await?;
        }
        self.append(
            REGISTRY_STREAM,
            DELETED_EVENT_TYPE,
            name.as_bytes().to_vec(),
            false,
        )
        .await?;
        self.append(
            &ProjectionNames::definition(name),
            DELETED_EVENT_TYPE,
            name.as_bytes().to_vec(),
            false,
        )
        .await?;
        projections.remove(name);
        Ok(())
    }

    async fn delete_stream(&self, stream: &str) -> Result<(), ProjectionError> {
        let Ok(name) = StreamName::new(stream) else {
            return Ok(());
        };
        match self.store.delete_stream(&name, ExpectedRevision::Any).await {
            Ok(_) | Err(strata_core::Error::StreamDeleted { .. }) => Ok(()),
            // A stream that never had events has nothing to delete.
            Err(strata_core::Error::WrongExpectedRevision { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The state a projection last checkpointed (of `partition`, or the root's for `""`).
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn state(
        &self,
        name: &str,
        partition: &str,
    ) -> Result<Option<String>, ProjectionError> {
        self.check_leader()?;
        let definition = self.definition(name).await?;
        let query_definition = self.query_definition(&definition.query);
        runner::stored_state(
            &*self.store,
            name,
            definition.epoch,
            &query_definition,
            partition,
        )
        .await
        .map_err(fault_error)
    }

    /// The result a projection last wrote (of `partition`, or the root's for `""`).
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`]; storage errors.
    pub async fn result(
        &self,
        name: &str,
        partition: &str,
    ) -> Result<Option<String>, ProjectionError> {
        self.check_leader()?;
        let definition = self.definition(name).await?;
        let query_definition = self.query_definition(&definition.query);
        runner::stored_result(
            &*self.store,
            name,
            definition.epoch,
            &query_definition,
            partition,
        )
        .await
        .map_err(fault_error)
    }

    /// The stored definition of `name`.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`].
    pub async fn definition(&self, name: &str) -> Result<StoredDefinition, ProjectionError> {
        self.check_leader()?;
        self.projections
            .lock()
            .await
            .get(name)
            .map(|managed| managed.definition.clone())
            .ok_or_else(|| ProjectionError::NotFound { name: name.into() })
    }

    /// Statistics of `name`, or of every projection when `None`.
    ///
    /// # Errors
    /// [`ProjectionError::NotFound`] for an unknown name.
    pub async fn statistics(&self, name: Option<&str>) -> Result<Vec<Statistics>, ProjectionError> {
        self.check_leader()?;
        let log_end = self.store.last_position().await?.map(|position| position.0);
        let projections = self.projections.lock().await;
        if let Some(name) = name {
            let managed = projections
                .get(name)
                .ok_or_else(|| ProjectionError::NotFound { name: name.into() })?;
            return Ok(vec![statistics_of(managed, log_end)]);
        }
        Ok(projections
            .values()
            .map(|managed| statistics_of(managed, log_end))
            .collect())
    }

    /// Statistics of every projection, unless a management call holds them right now (for
    /// metrics, which must not wait).
    /// Progress is measured against the log's durable end, not its last event.
    pub fn try_statistics(&self) -> Option<Vec<Statistics>> {
        let projections = self.projections.try_lock().ok()?;
        let log_end = Some(self.store.watch_log_end().borrow().0);
        Some(
            projections
                .values()
                .map(|managed| statistics_of(managed, log_end))
                .collect(),
        )
    }

    /// Stops every projection and starts the enabled ones again.
    ///
    /// The definitions are read again from the store first: in a cluster, a node that
    /// becomes the leader runs what the previous leader created, changed or deleted.
    pub async fn restart_all(&self) {
        let mut projections = self.projections.lock().await;
        for managed in projections.values_mut() {
            stop_run(managed, false).await;
        }
        match self.load_definitions().await {
            Ok(loaded) => *projections = loaded,
            Err(error) => {
                tracing::warn!(%error, "cannot read the projections' definitions again: restarting the known ones");
            }
        }
        for managed in projections.values_mut() {
            if managed.definition.enabled {
                self.start_run(managed);
            }
        }
    }

    /// Stops every projection (their checkpoints written).
    pub async fn shutdown(&self) {
        let mut projections = self.projections.lock().await;
        for managed in projections.values_mut() {
            stop_run(managed, false).await;
        }
    }

    async fn change(
        &self,
        name: &str,
        edit: impl FnOnce(&mut StoredDefinition),
        restart: Restart,
    ) -> Result<(), ProjectionError> {
        self.check_leader()?;
        let mut projections = self.projections.lock().await;
        let managed = projections
            .get_mut(name)
            .ok_or_else(|| ProjectionError::NotFound { name: name.into() })?;
        stop_run(managed, restart == Restart::Abort).await;
        let mut definition = managed.definition.clone();
        edit(&mut definition);
        self.persist(&definition).await?;
        let new_epoch = definition.epoch != managed.definition.epoch;
        managed.definition = definition;
        if restart == Restart::IfEnabled && managed.definition.enabled {
            self.start_run(managed);
        } else if new_epoch {
            // A reset of a stopped projection: the ended run's counters and fault belong to
            // the old epoch (the reference reports 0 events processed after it).
            managed.run = None;
        }
        Ok(())
    }

    fn start_run(&self, managed: &mut Managed) {
        let definition = &managed.definition;
        let config = RunConfig {
            name: definition.name.clone(),
            query: definition.query.clone(),
            mode: definition.mode,
            emit_enabled: definition.emit_enabled,
            track_emitted_streams: definition.track_emitted_streams,
            epoch: definition.epoch,
            batch_events: BATCH_EVENTS_DEFAULT,
            checkpoint_events: runner::CHECKPOINT_EVENTS_DEFAULT,
            limits: self.limits,
            partitions_cached_max: runner::PARTITIONS_CACHED_MAX_DEFAULT,
        };
        match RunHandle::start(
            Arc::clone(&self.store),
            Arc::clone(&self.factory),
            config,
            self.handle.clone(),
        ) {
            Ok(run) => managed.run = Some(run),
            Err(fault) => tracing::error!(projection = %definition.name, %fault, "cannot start"),
        }
    }

    async fn persist(&self, definition: &StoredDefinition) -> Result<(), ProjectionError> {
        let data =
            serde_json::to_vec(definition).map_err(|error| ProjectionError::InvalidArgument {
                reason: format!("the definition does not serialize: {error}"),
            })?;
        self.append(
            &ProjectionNames::definition(&definition.name),
            UPDATED_EVENT_TYPE,
            data,
            true,
        )
        .await
    }

    async fn append(
        &self,
        stream: &str,
        event_type: &str,
        data: Vec<u8>,
        json: bool,
    ) -> Result<(), ProjectionError> {
        let stream = StreamName::new(stream)?;
        let event = if json {
            ProposedEvent::json(event_type, data)
        } else {
            ProposedEvent::binary(event_type, data)
        };
        self.store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await?;
        Ok(())
    }

    /// The compiled definition of `query` (for its stream names); an empty one when it does
    /// not compile.
    fn query_definition(&self, query: &str) -> QueryDefinition {
        self.factory
            .compile(query, self.limits)
            .map(|engine| engine.definition().clone())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for ProjectionManager {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProjectionManager")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for ProjectionManager {
    fn drop(&mut self) {
        for managed in self.projections.get_mut().values() {
            if let Some(run) = &managed.run {
                run.stop();
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    IfEnabled,
    Stop,
    Abort,
}

/// Stops a projection's run and waits for its thread to end.
async fn stop_run(managed: &mut Managed, abort: bool) {
    let Some(run) = managed.run.take() else {
        return;
    };
    if abort {
        run.abort();
    } else {
        run.stop();
    }
    while !run.is_finished() {
        tokio::time::sleep(STOP_POLL_INTERVAL).await;
    }
    // Keep the ended run: its status and fault stay visible to `Statistics`.
    managed.run = Some(run);
}

/// Statistics of one projection; `log_end` is the position of the log's last event.
fn statistics_of(managed: &Managed, log_end: Option<u64>) -> Statistics {
    let definition = &managed.definition;
    let progress = managed
        .run
        .as_ref()
        .map(RunHandle::progress)
        .unwrap_or_default();
    let status = match (&managed.run, progress.status) {
        (None, _) => "Stopped",
        (Some(_), RunStatus::Running) if definition.enabled => "Running",
        (Some(_), RunStatus::Running | RunStatus::Stopped) => "Stopped",
        (Some(_), RunStatus::Completed) => "Completed/Stopped",
        (Some(_), RunStatus::Faulted) => "Faulted",
    };
    Statistics {
        name: definition.name.clone(),
        effective_name: definition.name.clone(),
        status: status.to_owned(),
        state_reason: progress.fault.clone().unwrap_or_default(),
        mode: match definition.mode {
            Mode::OneTime => "OneTime",
            Mode::Continuous => "Continuous",
        }
        .to_owned(),
        epoch: definition.epoch,
        version: definition.version,
        position: serde_json::to_string(&progress.cursors).unwrap_or_default(),
        progress: progress_percent(&progress, log_end),
        events_processed_after_restart: progress.events_processed,
        partitions_cached: progress.partitions_cached,
        checkpoint_status: String::new(),
    }
}

/// How far through the log a run is, in percent: 100 once caught up, else the position of
/// its last processed event over the log's end (an estimate, as the reference's is).
fn progress_percent(progress: &runner::Progress, log_end: Option<u64>) -> f32 {
    if progress.caught_up {
        return 100.0;
    }
    match (progress.position, log_end) {
        (Some(position), Some(end)) if end > 0 => {
            let ratio = position.min(end) as f64 / end as f64;
            (ratio * 100.0).min(99.9) as f32
        }
        _ => 0.0,
    }
}

/// Why a create asking to track emitted streams without emitting is refused (the
/// reference's words).
pub const TRACK_WITHOUT_EMIT: &str = "EmitEnabled must be true if TrackEmittedStreams is true.";

fn check_name(name: &str) -> Result<(), ProjectionError> {
    if name.trim().is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(ProjectionError::InvalidArgument {
            reason: format!("a projection name must be 1 to {NAME_BYTES_MAX} bytes and not blank"),
        });
    }
    Ok(())
}

fn fault_error(fault: Fault) -> ProjectionError {
    ProjectionError::InvalidArgument {
        reason: fault.to_string(),
    }
}

/// The position in `$all` of the last event each registered projection checkpointed
/// (`None`: no checkpoint yet), read from the store alone, no projection running: what
/// `strata cluster status` shows beside the log end.
///
/// # Errors
/// Storage errors.
pub async fn stored_positions(
    store: &dyn EventStore,
) -> Result<Vec<(String, Option<u64>)>, ProjectionError> {
    let mut names: Vec<String> = Vec::new();
    for event in read_events(store, REGISTRY_STREAM, ReadStreamOptions::forwards()).await? {
        let name = String::from_utf8_lossy(&event.data).into_owned();
        match event.event_type.as_str() {
            CREATED_EVENT_TYPE if !names.contains(&name) => names.push(name),
            DELETED_EVENT_TYPE => names.retain(|known| known != &name),
            _ => {}
        }
    }
    let mut positions = Vec::with_capacity(names.len());
    for name in names {
        let checkpoint = ProjectionNames::checkpoint_of(&name);
        let last = read_events(
            store,
            &checkpoint,
            ReadStreamOptions::backwards().max_count(1),
        )
        .await?
        .into_iter()
        .next();
        let position = last.and_then(|event| {
            serde_json::from_slice::<serde_json::Value>(&event.metadata)
                .ok()?
                .get("$lastPosition")?
                .as_u64()
        });
        positions.push((name, position));
    }
    Ok(positions)
}

async fn read_events(
    store: &dyn EventStore,
    stream: &str,
    options: ReadStreamOptions,
) -> Result<Vec<strata_core::RecordedEvent>, ProjectionError> {
    let stream = StreamName::new(stream)?;
    match store.read_stream(&stream, options).await {
        Ok(slice) => Ok(slice.into_events()),
        Err(strata_core::Error::StreamDeleted { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}
