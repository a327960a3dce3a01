//! What a group reports: its settings and live statistics.

use crate::settings::GroupSettings;
use crate::source::{FilterSpec, SubscriptionSource};

/// One connected consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub name: String,
    pub in_flight: usize,
    pub available_slots: usize,
    pub total_items: u64,
}

/// A group's settings and statistics. Places are revisions for a stream group and log
/// positions for a `$all` group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    pub source: SubscriptionSource,
    pub group: String,
    pub settings: GroupSettings,
    pub filter: Option<FilterSpec>,
    /// `Live`, `CatchingUp`, `ReplayingParkedMessages` or `NotReady`.
    pub status: String,
    pub connections: Vec<ConnectionInfo>,
    /// Deliveries since the group started.
    pub total_items: u64,
    pub items_per_second: u64,
    pub last_checkpointed_place: Option<u64>,
    pub last_known_place: Option<u64>,
    /// Events read and waiting for a first delivery.
    pub ready_count: u64,
    /// Events waiting for a redelivery.
    pub retry_count: u64,
    pub in_flight_count: u64,
    /// Events held between the oldest unfinished one and the newest read.
    pub window_count: u64,
    pub parked_count: u64,
}
