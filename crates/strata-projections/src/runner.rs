//! Runs one projection on its own thread: reads its sources in batches, runs the handlers,
//! writes outputs, states and a checkpoint after each batch, and — in continuous mode —
//! waits for the log to grow.
//!
//! The thread owns the JavaScript engine (which is not `Send`) and calls the store through
//! the tokio runtime's handle. Exactly once: a batch's outputs are written before its
//! checkpoint, with ids and markers derived from the source (see [`crate::output`]), so a
//! re-run of a batch after a crash re-sends what may be there and writes only what is not.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::{Map, Value};
use strata_core::{EventStore, Position, ReadStreamOptions, RecordedEvent};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::engine::{EngineFactory, EventView, ProjectionEngine, QueryDefinition, SandboxLimits};
use crate::error::Fault;
use crate::names::{self, ProjectionNames};
use crate::output::{Marker, Output, Writer};
use crate::source::{Batch, Source, SourceEvent};

/// Source events per read by default.
pub const BATCH_EVENTS_DEFAULT: usize = 512;
/// Handled source events between two checkpoints by default (KurrentDB's default
/// `checkpointHandledThreshold` is 4,000).
pub const CHECKPOINT_EVENTS_DEFAULT: usize = 4_096;
/// Outputs (emits, links, results, catalog entries) held before a checkpoint writes them.
const OUTPUTS_PENDING_MAX: usize = 4_096;
/// Partition states a run keeps in memory by default (`foreachStream`, `partitionBy`):
/// beyond it, checkpointed partitions are evicted and loaded again on their next event.
pub const PARTITIONS_CACHED_MAX_DEFAULT: usize = 4_096;
/// Streams whose `fromStreamsMatching` answer is kept (then the answers start over).
const MATCHING_CACHED_MAX: usize = 65_536;
/// Stack of a projection's thread: room for the engine's stack limit and the host's frames.
const THREAD_STACK_BYTES: usize = 16 * 1024 * 1024;

/// Why a query that reads nothing (an empty one) faults.
const NO_SOURCE: &str = "the query reads no events: it calls none of fromAll(), fromStream(), \
fromStreams(), fromCategory(), fromCategories() or fromStreamsMatching()";
const CHECKPOINT_EVENT_TYPE: &str = "$ProjectionCheckpoint";
const PARTITION_CHECKPOINT_EVENT_TYPE: &str = "$Checkpoint";
const PARTITION_EVENT_TYPE: &str = "$partition";
const STREAM_TRACKED_EVENT_TYPE: &str = "$StreamTracked";
const RESULT_EVENT_TYPE: &str = "Result";
/// Marker index of a batch's checkpoint (after every output of its last event).
const CHECKPOINT_INDEX: u32 = u32::MAX - 1;
/// Marker index of the checkpoint that completes a one-time projection (after the last
/// batch's checkpoint, which may be at the same position).
const COMPLETED_INDEX: u32 = u32::MAX;
/// First marker index of `-emittedstreams` entries, apart from the other outputs' indexes.
const TRACKED_INDEX_FIRST: u32 = 1 << 31;

/// How a projection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Processes what is there, then stops.
    OneTime,
    /// Processes what is there, then follows the log.
    Continuous,
}

/// Everything a run needs besides the store.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub name: String,
    pub query: String,
    pub mode: Mode,
    pub emit_enabled: bool,
    pub track_emitted_streams: bool,
    /// Bumped by a reset: outputs and checkpoints of other epochs are ignored.
    pub epoch: u64,
    /// Source events per read.
    pub batch_events: usize,
    /// Handled source events between two checkpoints (see [`Run::run_engine`] for why the
    /// count, not the reads, decides where checkpoints fall).
    pub checkpoint_events: usize,
    pub limits: SandboxLimits,
    /// Partition states kept in memory; least recently used ones beyond it are evicted
    /// after each checkpoint.
    pub partitions_cached_max: usize,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    /// Stopped on request (disable or abort).
    Stopped,
    /// A one-time projection processed everything.
    Completed,
    Faulted,
}

/// What a run reports while it goes.
#[derive(Clone, Debug)]
pub struct Progress {
    pub status: RunStatus,
    pub fault: Option<String>,
    /// Source events handled since this run started.
    pub events_processed: u64,
    /// The cursors of the last checkpoint, by input.
    pub cursors: BTreeMap<String, u64>,
    /// Position of the last processed source event.
    pub position: Option<u64>,
    pub partitions_cached: usize,
    /// True once the run has processed everything there was when it last looked.
    pub caught_up: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            status: RunStatus::Running,
            fault: None,
            events_processed: 0,
            cursors: BTreeMap::new(),
            position: None,
            partitions_cached: 0,
            caught_up: false,
        }
    }
}

/// A running projection: stop it and watch its progress.
pub struct RunHandle {
    progress: Arc<Mutex<Progress>>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    wake: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunHandle {
    /// Starts `config` on its own thread over `store`.
    ///
    /// # Errors
    /// [`Fault::Store`] when the thread cannot be started.
    pub fn start(
        store: Arc<dyn EventStore>,
        factory: Arc<dyn EngineFactory>,
        config: RunConfig,
        handle: Handle,
    ) -> Result<Self, Fault> {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let run = Run {
            store,
            handle,
            progress: Arc::clone(&progress),
            stop: Arc::clone(&stop),
            abort: Arc::clone(&abort),
            wake: Arc::clone(&wake),
        };
        let thread = std::thread::Builder::new()
            .name(format!("projection-{}", config.name))
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || run.run(&*factory, &config))
            .map_err(|error| Fault::Store {
                message: format!("starting the projection's thread: {error}"),
            })?;
        Ok(Self {
            progress,
            stop,
            abort,
            wake,
            thread: Some(thread),
        })
    }

    pub fn progress(&self) -> Progress {
        self.progress.lock().clone()
    }

    /// Asks the run to stop after its current batch (its checkpoint written).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Asks the run to stop at once, leaving its current batch unwritten.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// True when the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread
            .as_ref()
            .is_none_or(|thread| thread.is_finished())
    }

    /// Stops the run and waits for its thread (from a blocking context).
    pub fn join(mut self) -> Progress {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.progress()
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Run {
    store: Arc<dyn EventStore>,
    handle: Handle,
    progress: Arc<Mutex<Progress>>,
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

enum Ending {
    Completed,
    Stopped,
}

impl Run {
    fn run(&self, factory: &dyn EngineFactory, config: &RunConfig) {
        let ending = factory
            .compile(&config.query, config.limits)
            .and_then(|engine| self.run_engine(engine, config));
        let mut progress = self.progress.lock();
        match ending {
            Ok(Ending::Completed) => progress.status = RunStatus::Completed,
            Ok(Ending::Stopped) => progress.status = RunStatus::Stopped,
            Err(fault) => {
                tracing::warn!(projection = %config.name, %fault, "projection faulted");
                progress.status = RunStatus::Faulted;
                progress.fault = Some(fault.to_string());
            }
        }
    }

    fn run_engine(
        &self,
        engine: Box<dyn ProjectionEngine>,
        config: &RunConfig,
    ) -> Result<Ending, Fault> {
        let definition = engine.definition().clone();
        if !definition.has_source() {
            // The reference accepts such a query (an empty one) and the projection faults,
            // so that it can be deleted without being disabled first.
            return Err(Fault::InvalidQuery {
                reason: NO_SOURCE.into(),
            });
        }
        let mut state = RunState {
            store: Arc::clone(&self.store),
            handle: self.handle.clone(),
            names: ProjectionNames::new(&config.name, &definition),
            writer: Writer {
                projection: config.name.clone(),
                epoch: config.epoch,
            },
            source: Source::new(&definition)?,
            definition,
            engine,
            emit_enabled: config.emit_enabled,
            track_emitted_streams: config.track_emitted_streams,
            loaded: HashSet::new(),
            tracked: BTreeSet::new(),
            tracked_index: TRACKED_INDEX_FIRST,
            dirty: BTreeSet::new(),
            outputs: Vec::new(),
            last_position: None,
            checkpointed_position: None,
            partitions_cached_max: config.partitions_cached_max.max(1),
            used: BTreeMap::new(),
            uses: 0,
            matching: std::collections::HashMap::new(),
            view: EventView::default(),
            created_time: None,
            unsaved: 0,
        };
        if state.restore()? && config.mode == Mode::OneTime {
            // Completed before a restart: a one-time projection does not run again.
            self.report(&state, 0);
            self.progress.lock().caught_up = true;
            return Ok(Ending::Completed);
        }
        self.report(&state, 0);
        let mut recovering = true;
        let mut log_end = self.store.watch_log_end();
        let batch_events = config.batch_events.max(1);
        let checkpoint_events = config.checkpoint_events.max(1) as u64;
        // Where checkpoints fall is a function of the events read from the last checkpoint
        // on, never of how reads were cut: after `checkpoint_events` handled events (or
        // `OUTPUTS_PENDING_MAX` outputs), or when a read reaches the log's end as seen before
        // it. A run restarted after a crash reads the same events from the same checkpoint,
        // so its first checkpoint falls at the crashed run's next one or after it (the log
        // can only have grown): its first flush, which skips outputs already written
        // (`recovering`), covers everything the crashed run may have written.
        loop {
            if self.stop.load(Ordering::SeqCst) {
                if state.has_pending() {
                    state.flush(recovering)?;
                }
                return Ok(Ending::Stopped);
            }
            log_end.borrow_and_update();
            let Batch {
                events: batch,
                scanned,
                complete,
            } = state.read_batch(batch_events)?;
            if batch.is_empty() {
                // Nothing up to the horizon: the tombstone scan's cursor moves past it.
                state.source.advance_scan(scanned);
                if state.has_pending() {
                    state.flush(recovering)?;
                    recovering = false;
                    self.report(&state, 0);
                }
                self.progress.lock().caught_up = true;
                if config.mode == Mode::OneTime {
                    state.flush_completed()?;
                    return Ok(Ending::Completed);
                }
                self.handle.block_on(async {
                    tokio::select! {
                        _ = log_end.changed() => {}
                        _ = self.wake.notified() => {}
                    }
                });
                continue;
            }
            let mut processed = 0_u64;
            for event in &batch {
                if self.abort.load(Ordering::SeqCst) {
                    return Ok(Ending::Stopped);
                }
                state.handle_event(event)?;
                state.source.advance(event);
                if !event.skip {
                    processed += 1;
                    state.unsaved += 1;
                }
                if state.unsaved >= checkpoint_events || state.outputs.len() >= OUTPUTS_PENDING_MAX
                {
                    state.flush(recovering)?;
                    recovering = false;
                }
            }
            if self.abort.load(Ordering::SeqCst) {
                return Ok(Ending::Stopped);
            }
            state.source.advance_scan(scanned);
            // Caught up with the log as seen before the read: what is pending is written now
            // (emits and results must not wait for more events). A run of passed-over events
            // only (a fromAll meeting system streams, its own checkpoints among them) moves
            // the cursor in memory only: checkpointing it would write the next such event.
            if complete && state.has_pending() {
                state.flush(recovering)?;
                recovering = false;
            }
            self.report(&state, processed);
        }
    }

    fn report(&self, state: &RunState, processed: u64) {
        let mut progress = self.progress.lock();
        progress.events_processed += processed;
        progress.cursors = state.source.cursors();
        progress.position = state.last_position;
        progress.partitions_cached = state.loaded.len();
    }
}

/// The checkpoint: the cursors, the position of the last processed event, the root state
/// (unpartitioned queries) and the shared state (bi-state queries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Checkpoint {
    cursors: BTreeMap<String, u64>,
    position: Option<u64>,
    state: Option<String>,
    shared: Option<String>,
    /// A one-time projection processed everything (`$completed`).
    completed: bool,
}

impl Checkpoint {
    /// The checkpoint in `event` when it belongs to `writer`'s epoch.
    fn read(event: &RecordedEvent, writer: &Writer) -> Option<Checkpoint> {
        let metadata: Value = serde_json::from_slice(&event.metadata).ok()?;
        writer.marker_of(&event.metadata)?;
        let cursors = serde_json::from_value(metadata.get("$s")?.clone()).ok()?;
        let position = metadata.get("$lastPosition").and_then(Value::as_u64);
        let completed = metadata.get("$completed").and_then(Value::as_bool) == Some(true);
        let data: Value = serde_json::from_slice(&event.data).ok()?;
        let text = |value: Option<&Value>| match value {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.to_string()),
        };
        Some(Checkpoint {
            cursors,
            position,
            state: text(data.get("state")),
            shared: text(data.get("shared")),
            completed,
        })
    }

    fn to_output(&self, names: &ProjectionNames, marker: Marker) -> Output {
        let raw = |json: &Option<String>| {
            json.as_deref()
                .and_then(|json| serde_json::from_str::<Value>(json).ok())
                .unwrap_or(Value::Null)
        };
        let mut data = Map::new();
        data.insert("state".into(), raw(&self.state));
        data.insert("shared".into(), raw(&self.shared));
        let mut metadata = Map::new();
        metadata.insert(
            "$s".into(),
            serde_json::to_value(&self.cursors).unwrap_or(Value::Null),
        );
        metadata.insert(
            "$lastPosition".into(),
            self.position.map_or(Value::Null, Value::from),
        );
        if self.completed {
            metadata.insert("$completed".into(), Value::Bool(true));
        }
        Output {
            stream: names.checkpoint(),
            event_type: CHECKPOINT_EVENT_TYPE.into(),
            data: Value::Object(data).to_string(),
            is_json: true,
            metadata,
            marker,
        }
    }
}

/// The run's working set: the engine, the cursors, and what the current batch produced.
struct RunState {
    store: Arc<dyn EventStore>,
    handle: Handle,
    engine: Box<dyn ProjectionEngine>,
    definition: QueryDefinition,
    source: Source,
    names: ProjectionNames,
    writer: Writer,
    emit_enabled: bool,
    track_emitted_streams: bool,
    /// Partitions whose state the engine holds.
    loaded: HashSet<String>,
    /// Streams already in `-emittedstreams`.
    tracked: BTreeSet<String>,
    /// Marker index of the current event's next `-emittedstreams` entry.
    tracked_index: u32,
    /// Partitions changed since the last checkpoint.
    dirty: BTreeSet<String>,
    outputs: Vec<Output>,
    last_position: Option<u64>,
    /// Position of the last checkpoint (at start, the one this run started from): partition
    /// states written after it (by a run that crashed before its checkpoint) do not count.
    checkpointed_position: Option<u64>,
    partitions_cached_max: usize,
    /// When each loaded partition was last used (a counter), for eviction.
    used: BTreeMap<String, u64>,
    uses: u64,
    /// `fromStreamsMatching`: the filter's answers by stream.
    matching: std::collections::HashMap<String, bool>,
    /// The view handed to the engine, reused from event to event.
    view: EventView,
    /// The time whose text `view.created` holds.
    created_time: Option<strata_core::Timestamp>,
    /// Source events handled since the last checkpoint.
    unsaved: u64,
}

impl RunState {
    fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    fn read_events(
        &self,
        stream: &str,
        options: ReadStreamOptions,
    ) -> Result<Vec<RecordedEvent>, Fault> {
        let stream = names::stream(stream)?;
        match self.block(self.store.read_stream(&stream, options)) {
            Ok(slice) => Ok(slice.into_events()),
            Err(strata_core::Error::StreamDeleted { .. }) => Ok(Vec::new()),
            Err(error) => Err(error.into()),
        }
    }

    /// Restores cursors and states from the last checkpoint of this epoch; true when that
    /// checkpoint says the (one-time) projection completed.
    fn restore(&mut self) -> Result<bool, Fault> {
        let checkpoint = self
            .read_events(
                &self.names.checkpoint(),
                ReadStreamOptions::backwards().max_count(1),
            )?
            .first()
            .and_then(|event| Checkpoint::read(event, &self.writer))
            .unwrap_or_default();
        self.source.restore(&checkpoint.cursors);
        self.last_position = checkpoint.position;
        self.checkpointed_position = checkpoint.position;
        if self.definition.bi_state {
            self.engine.load_shared(checkpoint.shared.as_deref())?;
        }
        if !self.definition.is_partitioned() {
            self.engine.load_state("", checkpoint.state.as_deref())?;
            self.loaded.insert(String::new());
        }
        if self.track_emitted_streams {
            self.tracked = self
                .read_events(&self.names.emitted_streams(), ReadStreamOptions::forwards())?
                .iter()
                .map(|event| String::from_utf8_lossy(&event.data).into_owned())
                .collect();
        }
        Ok(checkpoint.completed)
    }

    fn read_batch(&self, max: usize) -> Result<Batch, Fault> {
        let horizon: Option<Position> = self.block(self.store.last_position())?;
        self.block(self.source.read_batch(&*self.store, horizon, max))
    }

    fn handle_event(&mut self, source: &SourceEvent) -> Result<(), Fault> {
        let event = &source.event;
        // Events come in log order; one at or before the last processed position was
        // processed already (an input added to a query restored from an older checkpoint
        // reads from its start).
        if self
            .last_position
            .is_some_and(|last| event.position.0 <= last)
        {
            return Ok(());
        }
        self.last_position = Some(event.position.0);
        self.tracked_index = TRACKED_INDEX_FIRST;
        if self.definition.by_stream
            && self.definition.handles_deleted_notifications
            && let Some((stream, soft)) = deletion_of(event)
            && self.covers(&stream)
        {
            return self.stream_deleted(&stream, soft, event);
        }
        let handled = source.handled();
        if source.skip || !self.definition.handles(&handled.event_type) {
            return Ok(());
        }
        if self.definition.streams_matching && !self.stream_matches(event.stream.as_str())? {
            return Ok(());
        }
        let mut view = std::mem::take(&mut self.view);
        fill_view(source, &mut view, &mut self.created_time);
        let handled = self.handle_view(source, &view);
        self.view = view;
        handled
    }

    /// [`RunState::handle_event`] once the event is in `view`.
    fn handle_view(&mut self, source: &SourceEvent, view: &EventView) -> Result<(), Fault> {
        let event = &source.event;
        let handled = source.handled();
        // The reference server passes JSON events with no body over.
        if view.is_json && view.body_raw.trim().is_empty() {
            return Ok(());
        }
        let partition = if self.definition.by_stream {
            view.stream_id.clone()
        } else if self.definition.by_custom_partitions {
            match self.engine.partition_of(view)? {
                Some(partition) => partition,
                None => return Ok(()),
            }
        } else {
            String::new()
        };
        let mut index = 0_u32;
        if !self.loaded.contains(&partition) {
            self.load_partition(&partition, event, view, &mut index)?;
        }
        self.touch(&partition);
        let emitted = self.engine.process(&partition, view)?;
        self.collect_emits(emitted, event, &view.event_id, &mut index)?;
        if self.definition.output_state
            && let Some(result) = self.engine.result(&partition)?
        {
            let mut metadata = Map::new();
            metadata.insert("$causedBy".into(), handled.id.to_string().into());
            self.outputs.push(Output {
                stream: self.names.result(&partition),
                event_type: RESULT_EVENT_TYPE.into(),
                data: result,
                is_json: true,
                metadata,
                marker: next_marker(event, &mut index),
            });
        }
        if self.definition.is_partitioned() {
            self.dirty.insert(partition);
        }
        Ok(())
    }

    /// Whether a deleted `stream` is one of the source's: any with `fromAll`, a stream of
    /// the category with `fromCategory`.
    fn covers(&self, stream: &str) -> bool {
        self.definition.all
            || strata_core::system_streams::category_of(stream)
                .is_some_and(|category| self.definition.categories.iter().any(|c| c == category))
    }

    /// A `foreachStream` partition whose stream was deleted: its `$deleted` handler runs (a
    /// stream the projection never saw is passed over).
    fn stream_deleted(
        &mut self,
        partition: &str,
        soft: bool,
        event: &RecordedEvent,
    ) -> Result<(), Fault> {
        if !self.loaded.contains(partition) {
            let Some(stored) = self.stored_partition_state(partition)? else {
                return Ok(());
            };
            self.engine.load_state(partition, stored.as_deref())?;
            self.loaded.insert(partition.to_owned());
        }
        let mut index = 0_u32;
        let emitted = self.engine.deleted(partition, soft)?;
        self.collect_emits(emitted, event, &event.id.to_string(), &mut index)?;
        if self.definition.output_state
            && let Some(result) = self.engine.result(partition)?
        {
            let mut metadata = Map::new();
            metadata.insert("$causedBy".into(), event.id.to_string().into());
            self.outputs.push(Output {
                stream: self.names.result(partition),
                event_type: RESULT_EVENT_TYPE.into(),
                data: result,
                is_json: true,
                metadata,
                marker: next_marker(event, &mut index),
            });
        }
        self.dirty.insert(partition.to_owned());
        Ok(())
    }

    /// Loads a partition's state from its checkpoint stream, or starts it: `$init`, an entry
    /// in the partition catalog, the `$created` handlers.
    fn load_partition(
        &mut self,
        partition: &str,
        event: &RecordedEvent,
        view: &EventView,
        index: &mut u32,
    ) -> Result<(), Fault> {
        let stored = if partition.is_empty() {
            None
        } else {
            self.stored_partition_state(partition)?
        };
        self.engine.load_state(
            partition,
            stored.as_ref().and_then(|state| state.as_deref()),
        )?;
        self.loaded.insert(partition.to_owned());
        if stored.is_none() && !partition.is_empty() {
            self.outputs.push(Output {
                stream: self.names.partitions(),
                event_type: PARTITION_EVENT_TYPE.into(),
                data: partition.to_owned(),
                is_json: false,
                metadata: Map::new(),
                marker: next_marker(event, index),
            });
            let emitted = self.engine.created(partition, view)?;
            self.collect_emits(emitted, event, &view.event_id, index)?;
        }
        Ok(())
    }

    /// A partition's state as of the checkpoint this run started from: `Some(None)` for a
    /// null state, `None` for a partition that had none then.
    fn stored_partition_state(&self, partition: &str) -> Result<Option<Option<String>>, Fault> {
        let Some(restored) = self.checkpointed_position else {
            return Ok(None);
        };
        let events = self.read_events(
            &self.names.partition_checkpoint(partition),
            ReadStreamOptions::backwards().max_count(64),
        )?;
        for event in events {
            if let Some(marker) = self.writer.marker_of(&event.metadata)
                && marker.position <= restored
            {
                let json = String::from_utf8_lossy(&event.data).into_owned();
                return Ok(Some((json != "null").then_some(json)));
            }
        }
        Ok(None)
    }

    /// Queues what a handler emitted; `cause` (the event read) marks them, `caused_by` is
    /// the id of the event the handler saw (a resolved link's target).
    fn collect_emits(
        &mut self,
        emitted: Vec<crate::engine::EmittedEvent>,
        cause: &RecordedEvent,
        caused_by: &str,
        index: &mut u32,
    ) -> Result<(), Fault> {
        if !emitted.is_empty() && !self.emit_enabled {
            return Err(Fault::InvalidQuery {
                reason: "'emit' is not allowed: the projection runs with emit disabled".into(),
            });
        }
        for emit in emitted {
            let mut metadata = match emit.metadata.as_deref().map(serde_json::from_str::<Value>) {
                Some(Ok(Value::Object(fields))) => fields,
                _ => Map::new(),
            };
            metadata.insert("$causedBy".into(), caused_by.into());
            if self.track_emitted_streams && !self.tracked.contains(&emit.stream) {
                self.tracked.insert(emit.stream.clone());
                self.outputs.push(Output {
                    stream: self.names.emitted_streams(),
                    event_type: STREAM_TRACKED_EVENT_TYPE.into(),
                    data: emit.stream.clone(),
                    is_json: false,
                    metadata: Map::new(),
                    // Numbered apart: whether a stream is tracked yet must not move the
                    // markers (and ids) of the other outputs.
                    marker: next_marker(cause, &mut self.tracked_index),
                });
            }
            self.outputs.push(Output {
                stream: emit.stream,
                event_type: emit.event_type,
                data: emit.data,
                is_json: emit.is_json,
                metadata,
                marker: next_marker(cause, index),
            });
        }
        Ok(())
    }

    /// True when something since the last checkpoint is to be written.
    fn has_pending(&self) -> bool {
        self.unsaved > 0 || !self.outputs.is_empty() || !self.dirty.is_empty()
    }

    /// Writes the outputs since the last checkpoint, then the changed partitions' states,
    /// then the checkpoint.
    fn flush(&mut self, recovering: bool) -> Result<(), Fault> {
        self.unsaved = 0;
        let position = self.last_position.unwrap_or(0);
        let mut outputs = std::mem::take(&mut self.outputs);
        for partition in std::mem::take(&mut self.dirty) {
            let json = self.engine.state(&partition)?;
            outputs.push(Output {
                stream: self.names.partition_checkpoint(&partition),
                event_type: PARTITION_CHECKPOINT_EVENT_TYPE.into(),
                data: json.unwrap_or_else(|| "null".into()),
                is_json: true,
                metadata: Map::new(),
                marker: Marker { position, index: 0 },
            });
        }
        let checkpoint = Checkpoint {
            cursors: self.source.cursors(),
            position: self.last_position,
            state: if self.definition.is_partitioned() {
                None
            } else {
                self.engine.state("")?
            },
            shared: if self.definition.bi_state {
                self.engine.shared_state()?
            } else {
                None
            },
            completed: false,
        };
        for line in self.engine.take_logs() {
            tracing::info!(projection = %self.writer.projection, "{line}");
        }
        self.block(self.writer.write(&*self.store, outputs, recovering))?;
        let marker = Marker {
            position,
            index: CHECKPOINT_INDEX,
        };
        let checkpoint = checkpoint.to_output(&self.names, marker);
        self.block(self.writer.write(&*self.store, vec![checkpoint], false))?;
        self.checkpointed_position = self.last_position;
        self.evict()
    }

    /// The `fromStreamsMatching` filter's answer for `stream`, asked once per stream (the
    /// answers kept are bounded).
    fn stream_matches(&mut self, stream: &str) -> Result<bool, Fault> {
        if let Some(matches) = self.matching.get(stream) {
            return Ok(*matches);
        }
        let matches = self.engine.stream_matches(stream)?;
        if self.matching.len() >= MATCHING_CACHED_MAX {
            self.matching.clear();
        }
        self.matching.insert(stream.to_owned(), matches);
        Ok(matches)
    }

    fn touch(&mut self, partition: &str) {
        if self.definition.is_partitioned() {
            self.uses += 1;
            self.used.insert(partition.to_owned(), self.uses);
        }
    }

    /// Bounds the partition states in memory: once everything is checkpointed, the least
    /// recently used partitions beyond the limit are dropped from the engine. Their states
    /// are in their checkpoint streams, read again on their next event.
    fn evict(&mut self) -> Result<(), Fault> {
        if !self.definition.is_partitioned() || self.used.len() <= self.partitions_cached_max {
            return Ok(());
        }
        let mut by_use: Vec<(u64, String)> = self
            .used
            .iter()
            .map(|(partition, used)| (*used, partition.clone()))
            .collect();
        by_use.sort_unstable();
        let excess = self.used.len() - self.partitions_cached_max;
        for (_, partition) in by_use.into_iter().take(excess) {
            self.engine.unload_state(&partition)?;
            self.loaded.remove(&partition);
            self.used.remove(&partition);
        }
        Ok(())
    }

    /// Writes the checkpoint that marks a one-time projection completed, so that a restart
    /// leaves it completed instead of running it again. Everything before it is flushed.
    fn flush_completed(&mut self) -> Result<(), Fault> {
        let checkpoint = Checkpoint {
            cursors: self.source.cursors(),
            position: self.last_position,
            state: if self.definition.is_partitioned() {
                None
            } else {
                self.engine.state("")?
            },
            shared: if self.definition.bi_state {
                self.engine.shared_state()?
            } else {
                None
            },
            completed: true,
        };
        let marker = Marker {
            position: self.last_position.unwrap_or(0),
            index: COMPLETED_INDEX,
        };
        let checkpoint = checkpoint.to_output(&self.names, marker);
        self.block(self.writer.write(&*self.store, vec![checkpoint], false))
    }
}

/// The stream `event` deletes, and whether softly: a `$metadata` event setting the soft
/// delete's truncate-before, or a tombstone.
fn deletion_of(event: &RecordedEvent) -> Option<(String, bool)> {
    use strata_core::{METADATA_EVENT_TYPE, StreamMetadata, TOMBSTONE_EVENT_TYPE};
    if event.stream.is_metadata_stream() && event.event_type == METADATA_EVENT_TYPE {
        let described = event.stream.described_stream()?;
        let metadata = StreamMetadata::from_json_or_default(&described, &event.data);
        return metadata
            .is_soft_deleted()
            .then(|| (described.as_str().to_owned(), true));
    }
    (event.event_type == TOMBSTONE_EVENT_TYPE && !event.stream.is_system())
        .then(|| (event.stream.as_str().to_owned(), false))
}

/// The marker of the next output caused by `event`.
fn next_marker(event: &RecordedEvent, index: &mut u32) -> Marker {
    let marker = Marker {
        position: event.position.0,
        index: *index,
    };
    *index += 1;
    marker
}

/// Fills `view` with the event as the handlers see it: a resolved link's target, with the
/// link's metadata and, as the reference gives it, the link's time. The view's strings are
/// reused from event to event (no allocation once they are long enough).
///
/// `created_time` is the time whose text `view.created` holds: events appended together
/// share their time, and formatting it was a measurable part of the per-event cost.
fn fill_view(
    source: &SourceEvent,
    view: &mut EventView,
    created_time: &mut Option<strata_core::Timestamp>,
) {
    fn set(target: &mut String, text: &str) {
        target.clear();
        target.push_str(text);
    }
    fn set_bytes(target: &mut String, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => set(target, text),
            Err(_) => set(target, &String::from_utf8_lossy(bytes)),
        }
    }
    let event = source.handled();
    let created = source.event.created;
    if *created_time != Some(created) {
        *created_time = Some(created);
        view.created = created.to_rfc3339(3);
    }
    set_bytes(&mut view.body_raw, &event.data);
    view.is_json = event.content_type == strata_core::ContentType::Json;
    set_bytes(&mut view.metadata_raw, &event.metadata);
    set(&mut view.link_metadata_raw, &source.link_metadata);
    set(&mut view.stream_id, event.stream.as_str());
    set(&mut view.event_type, &event.event_type);
    view.sequence_number = event.revision.0;
    // The id's text as `Display` writes it, without the formatter.
    let mut id_text = uuid::Uuid::encode_buffer();
    set(
        &mut view.event_id,
        event.id.0.hyphenated().encode_lower(&mut id_text),
    );
    set(
        &mut view.category,
        strata_core::system_streams::category_of(event.stream.as_str()).unwrap_or_default(),
    );
}

/// Reads the state a projection last checkpointed, for `State` requests: the root state,
/// or a partition's.
///
/// # Errors
/// Storage errors.
pub async fn stored_state(
    store: &dyn EventStore,
    name: &str,
    epoch: u64,
    definition: &QueryDefinition,
    partition: &str,
) -> Result<Option<String>, Fault> {
    let names = ProjectionNames::new(name, definition);
    let writer = Writer {
        projection: name.to_owned(),
        epoch,
    };
    let options = ReadStreamOptions::backwards().max_count(1);
    let last = |events: Vec<RecordedEvent>| events.into_iter().next();
    if partition.is_empty() || !definition.is_partitioned() {
        let stream = names::stream(&names.checkpoint())?;
        let events = read_or_empty(store, &stream, options).await?;
        Ok(last(events)
            .and_then(|event| Checkpoint::read(&event, &writer))
            .and_then(|checkpoint| checkpoint.state))
    } else {
        let stream = names::stream(&names.partition_checkpoint(partition))?;
        let events = read_or_empty(store, &stream, options).await?;
        Ok(last(events)
            .filter(|event| writer.marker_of(&event.metadata).is_some())
            .map(|event| String::from_utf8_lossy(&event.data).into_owned())
            .filter(|json| json != "null"))
    }
}

/// The last result a projection wrote for `partition` (the root partition is `""`).
///
/// # Errors
/// Storage errors.
pub async fn stored_result(
    store: &dyn EventStore,
    name: &str,
    epoch: u64,
    definition: &QueryDefinition,
    partition: &str,
) -> Result<Option<String>, Fault> {
    let names = ProjectionNames::new(name, definition);
    let writer = Writer {
        projection: name.to_owned(),
        epoch,
    };
    let stream = names::stream(&names.result(partition))?;
    let events = read_or_empty(store, &stream, ReadStreamOptions::backwards().max_count(1)).await?;
    Ok(events
        .into_iter()
        .next()
        .filter(|event| writer.marker_of(&event.metadata).is_some())
        .map(|event| String::from_utf8_lossy(&event.data).into_owned()))
}

async fn read_or_empty(
    store: &dyn EventStore,
    stream: &strata_core::StreamName,
    options: ReadStreamOptions,
) -> Result<Vec<RecordedEvent>, Fault> {
    match store.read_stream(stream, options).await {
        Ok(slice) => Ok(slice.into_events()),
        Err(strata_core::Error::StreamDeleted { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}
