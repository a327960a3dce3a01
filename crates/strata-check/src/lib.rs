//! Strata's reliability harness.
//!
//! - [`Workload`]: concurrent clients (the official `kurrentdb` client) appending with every
//!   expected-revision kind, reading streams and `$all`, and catch-up subscribers, all
//!   recorded into a [`History`] with the time of each call and answer.
//! - [`check`]: verifies a history against the final `$all` order (one winner per revision,
//!   nothing acknowledged lost or moved, real refusals, monotonic reads, gapless and
//!   duplicate-free subscriptions); `checker.rs` lists every rule. [`check_since`] checks
//!   only what a growing history gained since the previous check.
//! - [`soak`]: `strata serve` under that workload, SIGKILLed at random moments and restarted
//!   on the same store, `strata verify` after each kill, the history checked after each
//!   restart.
//!   With a continuous projection and a connector to NATS JetStream, what they derived is
//!   checked too (exactly once and at least once, in order).
//! - [`cluster_soak`]: several nodes on one PostgreSQL schema under that workload, with the
//!   nodes' PostgreSQL sessions terminated and PostgreSQL itself restarted mid-run
//!   ([`PrivatePostgres`]), the history checked after each fault.
//!
//! ```
//! use strata_check::{History, check};
//!
//! // An empty run: nothing was done, nothing is there.
//! let report = check(&History::default(), &[]);
//! assert!(report.is_clean());
//! ```

mod checker;
mod cluster;
mod derived;
mod history;
mod private_postgres;
mod soak;
mod workload;

pub use checker::{Checked, Figures, Report, Rule, Violation, check, check_since};
pub use cluster::{
    ClusterConfig, ClusterOutcome, Fault, cluster_soak, error_counts, terminate_node_sessions,
};
pub use derived::{DerivedError, DerivedFigures};
pub use history::{
    Action, AppendOutcome, Expected, GroupDelivery, History, Micros, Operation, ReadResult, Seen,
    SessionEnd, StreamReadFrom, SubscriptionSession,
};
pub use private_postgres::{PrivatePostgres, PrivatePostgresError};
pub use soak::{
    CycleTimes, ServerProcess, SoakConfig, SoakError, SoakOutcome, Store, check_run, soak,
};
pub use workload::{Phase, Workload, WorkloadConfig, WorkloadError, connect};
