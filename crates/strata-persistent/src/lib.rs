//! Persistent subscriptions over any [`strata_core::EventStore`]: consumer groups whose
//! members compete for the events of a stream or of `$all`, with acks, retries, parking of
//! poison events and checkpoints kept in the store, so a restart resumes where the group was
//! without skipping anything unacknowledged.
//!
//! [`PersistentSubscriptions`] is the whole API: create, update, delete, list and inspect
//! groups, replay parked events, and [`connect`](PersistentSubscriptions::connect) a
//! [`Consumer`]. The KurrentDB-compatible gRPC service of `strata-grpc` is a translation onto
//! it. The design is in `docs/PERSISTENT_SUBSCRIPTIONS.md`.
//!
//! Dependencies: `serde`/`serde_json` for the stored configuration and checkpoints,
//! `futures` to take a batch of ready source items per turn, `tokio` for the group tasks.
//!
//! ```
//! use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
//! use strata_persistent::{
//!     ConsumerOptions, GroupSettings, PersistentSubscriptions, StartFrom, SubscriptionSource,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
//! let orders = StreamName::new("order-1")?;
//! store
//!     .append(&orders, ExpectedRevision::Any, vec![ProposedEvent::json("Placed", "{}")])
//!     .await?;
//!
//! let subscriptions = PersistentSubscriptions::new(store);
//! let source = SubscriptionSource::Stream(orders);
//! let settings = GroupSettings { start_from: StartFrom::Start, ..GroupSettings::default() };
//! subscriptions.create(&source, "billing", settings, None).await?;
//!
//! let mut consumer = subscriptions
//!     .connect(&source, "billing", ConsumerOptions::default())
//!     .await?;
//! let delivery = consumer.next().await?;
//! assert_eq!(delivery.event_or_link().event_type, "Placed");
//! consumer.ack(vec![delivery.ack_id()]).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod ack_index;
mod checkpoint;
mod config;
mod consumer;
mod delivery;
mod error;
mod group;
mod info;
mod limits;
mod manager;
mod parked;
mod settings;
mod source;
mod window;

pub use checkpoint::stored_progress;
pub use consumer::{CONSUMER_BUFFER_MAX, Consumer, ConsumerOptions, NackAction, PersistentEvent};
pub use error::{DropReason, Error, Result};
pub use info::{ConnectionInfo, GroupInfo};
pub use limits::{GROUPS_MAX_DEFAULT, PersistentLimits, WINDOW_BYTES_MAX_DEFAULT};
pub use manager::{PersistentSubscriptions, SUPERVISE_INTERVAL};
pub use settings::{
    ConsumerStrategy, GroupSettings, SOURCE_BUFFER_EVENTS_MAX, StartFrom, WINDOW_EVENTS_MAX,
    WINDOW_EVENTS_MIN,
};
pub use source::{
    ALL_STREAM, FilterSpec, GROUP_NAME_BYTES_MAX, SubscriptionSource, is_group_state_stream,
};
pub use strata_core::system_streams::LINK_EVENT_TYPE;
