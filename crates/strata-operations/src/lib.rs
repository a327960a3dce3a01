//! Node operations over any Strata store: the scavenge job manager that the gRPC
//! `Operations` service, the HTTP admin routes and automatic scavenging share (one run
//! at a time, progress, stop, a history, and the `$scavenges` streams KurrentDB writes),
//! and the schedule of automatic runs. The store scavenges through
//! [`strata_core::Maintenance`]; a store without it answers a clear error.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! use std::sync::Arc;
//! use strata_operations::{ScavengeJobs, ScavengeRequest, StartOutcome};
//!
//! let store = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
//! let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), "127.0.0.1:2113");
//! let StartOutcome::Started(id) = jobs.start(ScavengeRequest::default())? else {
//!     unreachable!("nothing else runs");
//! };
//! let finished = jobs.wait(&id).await?;
//! assert!(finished.report.is_some());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod history;
mod jobs;
mod node;
mod schedule;

pub use error::OperationsError;
pub use history::{
    SCAVENGE_CHUNKS_COMPLETED, SCAVENGE_COMPLETED, SCAVENGE_HISTORY_MAX_AGE, SCAVENGE_STARTED,
    SCAVENGES_STREAM, scavenge_stream,
};
pub use jobs::{
    HISTORY_RUNS_MAX, JobProgress, JobState, JobStatus, ScavengeJobs, ScavengeRequest,
    StartOutcome, Trigger,
};
pub use node::NodeOperations;
pub use schedule::{AutoScavenge, AutoStatus, SCHEDULE_INTERVAL_MIN, Schedule};
