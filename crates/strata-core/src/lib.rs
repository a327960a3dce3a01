//! Strata's core contract: the types, the [`EventStore`] trait every backend implements,
//! typed errors, stream metadata, filters, catch-up subscriptions, the [`rules`] every
//! backend applies to appends, deletes and stream reads, and (feature `conformance`) the
//! conformance kit that every backend must pass.
//!
//! This crate does no I/O. Backends (`strata-engine`, `strata-postgres`) implement
//! [`EventStore`]; front ends and the toolkit use the trait only.
//!
//! Link events of the system streams are built on every read of them, so two small crates
//! keep that cheap: `itoa` writes their numbers without `fmt`, and `sha1` hashes their ids
//! (UUID v5) with the CPU's SHA instructions where it has them.
//!
//! ```
//! use strata_core::{ExpectedRevision, ProposedEvent, StreamName};
//!
//! # fn main() -> Result<(), strata_core::Error> {
//! let stream = StreamName::new("order-42")?;
//! assert_eq!(stream.category(), "order");
//! assert_eq!(stream.metadata_stream().as_str(), "$$order-42");
//! let event = ProposedEvent::json("OrderPlaced", r#"{"total":10}"#);
//! strata_core::Limits::default().check_append(&[event])?;
//! let _expected = ExpectedRevision::NoStream;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod clock;
mod connection_subscriptions;
mod dcb;
mod error;
mod fenced;
mod filter;
mod leadership;
mod limits;
mod metadata;
mod metadata_key;
mod multi_append;
mod progress;
pub mod rules;
pub mod scavenge;
mod store;
mod subscription;
pub mod system_streams;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use clock::{Clock, ManualClock};
pub use connection_subscriptions::{
    ADDRESS_SUBSCRIPTIONS_MAX_DEFAULT, AddressSubscriptions, CONNECTION_SUBSCRIPTIONS_MAX_DEFAULT,
    ConnectionSubscription, ConnectionSubscriptions, SubscriptionRefused,
};
pub use dcb::{
    AppendCondition, QUERY_ITEMS_MAX, Query, QueryItem, QuerySlice, TAG_BYTES_MAX, TAGS_KEY,
    tags_of,
};
pub use error::{Error, Result};
pub use fenced::FencedStore;
pub use filter::{
    EventFilter, FILTER_REGEX_BACKTRACK_STEPS_MAX, FilterTarget, WindowSlice,
    read_all_window_by_filtering,
};
pub use leadership::{ClusterView, Leadership, Member, NodeAddress, NodeRole};
pub use limits::{
    APPEND_BYTES_MAX, APPEND_EVENTS_MAX, EVENT_BYTES_MAX, EVENT_TYPE_BYTES_MAX, Limits,
    STREAM_NAME_BYTES_MAX,
};
pub use metadata::{
    METADATA_EVENT_TYPE, SOFT_DELETED_TRUNCATE_BEFORE, StreamMetadata, TOMBSTONE_EVENT_TYPE,
    TOMBSTONE_REVISION, VersionedMetadata,
};
pub use multi_append::{AppendPart, MultiAppendResult, events_of_parts};
pub use progress::{DeliveredPosition, ProgressSample, SubscriptionProgress};
pub use scavenge::{
    Maintenance, ProgressCallback, ScavengeOptions, ScavengeProgress, ScavengeReport,
    SegmentFinished,
};
pub use store::{
    AllSlice, EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice,
    read_query_by_index, read_tombstones_by_scanning,
};
pub use subscription::{
    CHECKPOINT_INTERVAL_EVENTS_DEFAULT, PageBudget, SUBSCRIPTION_BUFFER_BYTES_DEFAULT,
    SUBSCRIPTION_BUFFER_DEFAULT, SubscribeFrom, Subscription, SubscriptionItem,
    SubscriptionOptions, event_bytes, subscribe_to_all, subscribe_to_all_with, subscribe_to_stream,
    subscribe_to_stream_with,
};
pub use types::{
    AppendResult, ContentType, DeleteResult, Direction, EventId, EventType, ExpectedRevision,
    Position, ProposedEvent, RecordedEvent, Revision, StreamName, StreamState, Timestamp,
};

pub use bytes::Bytes;
