//! What the workload's clients did and saw, operation by operation, with the times each call
//! was made and answered (microseconds on one monotonic clock).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Microseconds since the workload's clock started.
pub type Micros = u64;

/// An event as a read or a subscription returned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub id: Uuid,
    pub stream: String,
    pub revision: u64,
    pub position: u64,
}

/// The expected revision an append was sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

/// How an append was answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// Acknowledged: the stream's last revision and the `$all` position of the batch's last
    /// event.
    Acknowledged { last_revision: u64, position: u64 },
    /// Refused for a wrong expected revision; `current` is the revision the server reported
    /// (`None`: no stream).
    WrongExpected { current: Option<u64> },
    /// No answer (connection lost, timeout, another error): it may or may not have happened.
    Unknown { error: String },
}

/// Where a stream read started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamReadFrom {
    /// Forwards from this revision.
    Revision(u64),
    /// Backwards from the stream's last event.
    EndBackwards,
}

/// What a read returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadResult {
    /// The events (of the workload's streams only, for `$all`); `reached_end` when the read
    /// returned fewer than it asked for, so nothing followed at that moment.
    Events {
        events: Vec<Seen>,
        reached_end: bool,
    },
    /// The stream does not exist.
    NotFound,
    /// The read failed; it says nothing.
    Failed { error: String },
}

/// One call of a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Append {
        stream: String,
        expected: Expected,
        event_ids: Vec<Uuid>,
        outcome: AppendOutcome,
    },
    ReadStream {
        stream: String,
        from: StreamReadFrom,
        max_count: u64,
        result: ReadResult,
    },
    /// A forwards read of `$all` from an event's position (inclusive), or from the start.
    ReadAll {
        from_position: Option<u64>,
        max_count: u64,
        result: ReadResult,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: u32,
    pub invoked_at: Micros,
    pub completed_at: Micros,
    pub action: Action,
}

/// How a subscription session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEnd {
    /// Dropped (the server went away, an error): it saw a prefix of what followed.
    Dropped { error: String },
    /// Stopped after it had caught up with the final read of `$all`: it must have seen
    /// everything after its start.
    CaughtUp,
}

/// One catch-up subscription to `$all` (filtered to the workload's streams), from its start
/// until it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSession {
    pub subscriber: u32,
    /// Subscribed after this position (exclusive), or from the start.
    pub after_position: Option<u64>,
    pub started_at: Micros,
    /// Each delivered event with the time it arrived.
    pub deliveries: Vec<(Micros, Seen)>,
    pub end: SessionEnd,
}

/// An event a consumer of the persistent subscription group got (and then acked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDelivery {
    pub consumer: u32,
    pub at: Micros,
    pub event: Seen,
}

/// Everything a workload recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub operations: Vec<Operation>,
    pub sessions: Vec<SubscriptionSession>,
    /// Deliveries to the consumers of the persistent subscription group on `$all`
    /// (filtered to the workload's streams, from the start).
    #[serde(default)]
    pub group_deliveries: Vec<GroupDelivery>,
    /// The group's consumers ran after the final read until the group had delivered every
    /// event of the final order (or gave up): every one of them must have been delivered.
    #[serde(default)]
    pub group_caught_up: bool,
}
