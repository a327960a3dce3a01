//! KurrentDB-compatible JavaScript projections over any [`strata_core::EventStore`].
//!
//! A query (`fromCategory('order').when({...})`) is compiled by a [`EngineFactory`] —
//! [`QuickJsEngine`], QuickJS-ng in a sandbox — into a [`ProjectionEngine`] that keeps the
//! states. The design, the sandbox and the exactly-once argument are in
//! `docs/PROJECTIONS.md`.
//!
//! Dependencies: `rquickjs` (safe bindings to QuickJS-ng, the JavaScript engine), `serde` /
//! `serde_json` for definitions, states and checkpoints, `uuid` for the derived event ids,
//! `tokio` for the store calls of the runner's thread.
//!
//! ```
//! use strata_projections::{EngineFactory, QuickJsEngine, SandboxLimits};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let query = "fromAll().when({ $init: () => ({ count: 0 }), $any: (s, e) => { s.count++; } })";
//! let engine = QuickJsEngine.compile(query, SandboxLimits::default())?;
//! assert!(engine.definition().all);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod engine;
mod error;
mod manager;
mod names;
mod output;
mod quickjs;
mod runner;
mod source;
mod transform;

pub use engine::{
    COMPILE_DEADLINE, EmittedEvent, EngineFactory, EventView, HANDLER_DEADLINE, MEMORY_BYTES_MAX,
    ProjectionEngine, QueryDefinition, STACK_BYTES_MAX, STATE_BYTES_MAX, SandboxLimits,
};
pub use error::{Fault, ProjectionError};
pub use manager::{
    CreateOptions, DeleteOptions, NAME_BYTES_MAX, ProjectionManager, Statistics, StoredDefinition,
    TRACK_WITHOUT_EMIT, stored_positions,
};
pub use names::{ProjectionNames, REGISTRY_STREAM};
pub use quickjs::QuickJsEngine;
pub use runner::{
    BATCH_EVENTS_DEFAULT, CHECKPOINT_EVENTS_DEFAULT, Mode, PARTITIONS_CACHED_MAX_DEFAULT, Progress,
    RunConfig, RunHandle, RunStatus, stored_result, stored_state,
};
pub use transform::QuickJsTransform;
