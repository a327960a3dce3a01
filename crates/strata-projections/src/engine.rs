//! The seam between projections and a JavaScript engine: what the runner asks of a compiled
//! query, whatever engine runs it. [`crate::QuickJsEngine`] is the implementation.

use std::time::Duration;

use serde::Deserialize;

use crate::error::Fault;

/// Time a query may take to compile and run its definition (`fromAll().when(...)`).
pub const COMPILE_DEADLINE: Duration = Duration::from_millis(500);
/// Time one handler call (an event, `$init`, a partition function, a transform) may take.
pub const HANDLER_DEADLINE: Duration = Duration::from_millis(250);
/// Largest state (and shared state, and result) a partition may have, as JSON.
pub const STATE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Memory a projection's engine may allocate.
pub const MEMORY_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Stack the engine's JavaScript may use (deep recursion faults past it).
pub const STACK_BYTES_MAX: usize = 1024 * 1024;

/// The limits a projection runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    pub compile_deadline: Duration,
    pub handler_deadline: Duration,
    pub state_bytes_max: usize,
    pub memory_bytes_max: usize,
    pub stack_bytes_max: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            compile_deadline: COMPILE_DEADLINE,
            handler_deadline: HANDLER_DEADLINE,
            state_bytes_max: STATE_BYTES_MAX,
            memory_bytes_max: MEMORY_BYTES_MAX,
            stack_bytes_max: STACK_BYTES_MAX,
        }
    }
}

/// What a query declared: its sources, options and the shape of its handlers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryDefinition {
    /// `fromAll()`.
    pub all: bool,
    /// `fromStream` / `fromStreams`.
    pub streams: Vec<String>,
    /// `fromCategory` / `fromCategories`.
    pub categories: Vec<String>,
    /// Event types with their own handler.
    pub events: Vec<String>,
    /// A `$any` handler is defined.
    pub any: bool,
    /// `foreachStream()`: one state per source stream.
    pub by_stream: bool,
    /// `partitionBy(fn)`.
    pub by_custom_partitions: bool,
    /// Results are written (`outputState`, `transformBy`, `filterBy`).
    pub output_state: bool,
    pub defines_state_transform: bool,
    /// `when(...)` was called.
    pub defines_fold: bool,
    /// A shared state beside each partition's (`$initShared` or `options({biState})`).
    pub bi_state: bool,
    pub handles_deleted_notifications: bool,
    /// `options({$includeLinks})`: link events of the source are delivered as they are.
    pub include_links: bool,
    pub processing_lag: Option<i64>,
    /// `fromStreamsMatching(filter)`: `$all`, only streams the filter accepts, by stream.
    pub streams_matching: bool,
    /// `options({resultStreamName})` or `outputTo(stream)`.
    pub result_stream_name: Option<String>,
    /// `outputTo(stream, pattern)`: `{0}` stands for the partition.
    pub partition_result_stream_name_pattern: Option<String>,
}

impl QueryDefinition {
    /// True when the state is kept per partition rather than in the root partition only.
    pub fn is_partitioned(&self) -> bool {
        self.by_stream || self.by_custom_partitions
    }

    /// False when the query reads no source (an empty query): its run faults, as the
    /// reference's does.
    pub fn has_source(&self) -> bool {
        self.all || !self.streams.is_empty() || !self.categories.is_empty()
    }

    /// True when events of `event_type` reach a handler (or become the state).
    pub fn handles(&self, event_type: &str) -> bool {
        self.any || self.events.is_empty() || self.events.iter().any(|name| name == event_type)
    }
}

/// A source event as handlers see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventView {
    pub body_raw: String,
    pub is_json: bool,
    pub metadata_raw: String,
    /// Metadata of the link the event was reached through (`fromCategory`), or empty.
    pub link_metadata_raw: String,
    pub stream_id: String,
    pub event_type: String,
    pub sequence_number: u64,
    pub event_id: String,
    pub category: String,
    /// RFC 3339 time the event was recorded.
    pub created: String,
}

/// An event a handler asked to write (`emit`, `linkTo`, `linkStreamTo`, `copyTo`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmittedEvent {
    pub stream: String,
    pub event_type: String,
    pub data: String,
    pub is_json: bool,
    /// The JSON object the handler gave as metadata.
    pub metadata: Option<String>,
}

/// A compiled query with its states, running inside one sandbox. Not `Send`: a projection's
/// engine lives on the projection's own thread.
///
/// Every call may fault the projection: a thrown exception, a deadline, the memory or stack
/// limit, an oversized state. After a fault the engine must not be called again.
pub trait ProjectionEngine {
    /// What the query declared.
    fn definition(&self) -> &QueryDefinition;

    /// Sets a partition's state from its stored JSON, or from `$init` when `None`.
    ///
    /// # Errors
    /// A [`Fault`] when `$init` fails or the JSON does not parse.
    fn load_state(&mut self, partition: &str, state: Option<&str>) -> Result<(), Fault>;

    /// Whether the `fromStreamsMatching` filter accepts `stream`.
    ///
    /// # Errors
    /// A [`Fault`] when the filter fails.
    fn stream_matches(&mut self, stream: &str) -> Result<bool, Fault>;

    /// Drops a partition's state from memory (it was checkpointed; it is loaded again when
    /// the partition's next event comes).
    ///
    /// # Errors
    /// A [`Fault`] when the engine fails.
    fn unload_state(&mut self, partition: &str) -> Result<(), Fault>;

    /// Sets the shared state (bi-state queries) from JSON, or from `$initShared`.
    ///
    /// # Errors
    /// As [`ProjectionEngine::load_state`].
    fn load_shared(&mut self, state: Option<&str>) -> Result<(), Fault>;

    /// The partition `partitionBy` puts `event` in; `None` skips the event.
    ///
    /// # Errors
    /// A [`Fault`] when the partition function fails.
    fn partition_of(&mut self, event: &EventView) -> Result<Option<String>, Fault>;

    /// Runs the handler of `event` on `partition`'s state; returns what it emitted.
    ///
    /// # Errors
    /// A [`Fault`] when the handler fails or breaks a limit.
    fn process(&mut self, partition: &str, event: &EventView) -> Result<Vec<EmittedEvent>, Fault>;

    /// Runs the `$created` handlers for a new partition.
    ///
    /// # Errors
    /// As [`ProjectionEngine::process`].
    fn created(&mut self, partition: &str, event: &EventView) -> Result<Vec<EmittedEvent>, Fault>;

    /// Runs the `$deleted` handler for a partition whose stream was deleted (`soft`: a soft
    /// delete, else a tombstone).
    ///
    /// # Errors
    /// As [`ProjectionEngine::process`].
    fn deleted(&mut self, partition: &str, soft: bool) -> Result<Vec<EmittedEvent>, Fault>;

    /// A partition's state as JSON (`None` when null or undefined).
    ///
    /// # Errors
    /// A [`Fault`] when the state does not serialize or exceeds the state limit.
    fn state(&mut self, partition: &str) -> Result<Option<String>, Fault>;

    /// The shared state as JSON.
    ///
    /// # Errors
    /// As [`ProjectionEngine::state`].
    fn shared_state(&mut self) -> Result<Option<String>, Fault>;

    /// The result of a partition (its state through `transformBy` / `filterBy`).
    ///
    /// # Errors
    /// As [`ProjectionEngine::state`].
    fn result(&mut self, partition: &str) -> Result<Option<String>, Fault>;

    /// Lines the query logged since the last call.
    fn take_logs(&mut self) -> Vec<String>;
}

/// Compiles queries into engines: the choice of JavaScript engine.
pub trait EngineFactory: Send + Sync + 'static {
    /// Compiles `query` and runs its definition stage under `limits`.
    ///
    /// # Errors
    /// A [`Fault`] for a syntax error, an exception, or a broken limit while defining.
    fn compile(
        &self,
        query: &str,
        limits: SandboxLimits,
    ) -> Result<Box<dyn ProjectionEngine>, Fault>;
}
