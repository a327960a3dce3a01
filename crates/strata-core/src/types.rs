//! The nouns of the contract: stream names, event ids, revisions, positions, events.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::limits::{EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};

/// The name of a stream: non-empty UTF-8 of at most [`STREAM_NAME_BYTES_MAX`] bytes.
/// Names starting with `$` are system streams; `$$name` holds the metadata of `name`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(Arc<str>);

impl StreamName {
    /// Checks and wraps a stream name.
    ///
    /// # Errors
    /// [`Error::InvalidStreamName`] when the name is empty, too long, or contains NUL.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > STREAM_NAME_BYTES_MAX {
            Some("it is longer than the limit")
        } else if name.contains('\0') {
            Some("it contains a NUL character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidStreamName {
                name: truncate_for_message(name),
                reason: reason.to_owned(),
            }),
            None => Ok(Self(Arc::from(name))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for system streams (names starting with `$`).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// True for a metadata stream `$$name`.
    pub fn is_metadata_stream(&self) -> bool {
        self.0.starts_with("$$")
    }

    /// The metadata stream `$$name` of this stream. It may be two bytes longer than
    /// [`STREAM_NAME_BYTES_MAX`]: metadata names are derived, never given by a caller.
    pub fn metadata_stream(&self) -> StreamName {
        StreamName(Arc::from(format!("$${}", self.0)))
    }

    /// The stream a metadata stream `$$name` describes.
    pub fn described_stream(&self) -> Option<StreamName> {
        self.0
            .strip_prefix("$$")
            .filter(|rest| !rest.is_empty())
            .map(|rest| StreamName(Arc::from(rest)))
    }

    /// The category: the part before the first `-` (the whole name when there is none).
    pub fn category(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }

    /// Wraps a name read back from storage, where it was validated when written.
    #[doc(hidden)]
    pub fn from_stored(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// Lets maps keyed by stream name be searched with a `&str` (hashing and equality are the
/// string's).
impl std::borrow::Borrow<str> for StreamName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for StreamName {
    type Error = Error;
    fn try_from(name: &str) -> Result<Self> {
        Self::new(name)
    }
}

/// Keeps error messages readable when a caller sends an absurdly long value.
pub(crate) fn truncate_for_message(text: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 64;
    if text.chars().count() <= SHOWN_CHARS_MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(SHOWN_CHARS_MAX).collect();
        format!("{head}…")
    }
}

/// The identity of an event, chosen by the client; re-sending the same ids is idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub uuid::Uuid);

/// The namespace of ids a store derives for the records it writes on its own (UUID v5).
/// Part of the stored format: changing it makes copies of a store differ.
const STORE_RECORD_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x9c4e_17b2_63d0_4a8f_b5e1_0d7a_2c93_f648);

impl EventId {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The id of a record a store writes on its own at `revision` of `stream` (the metadata
    /// event that revives a soft-deleted stream): the same in every store fed the same
    /// appends, so an export of one imports into another as an idempotent re-send.
    pub fn of_store_record(stream: &StreamName, revision: u64) -> Self {
        let mut name = Vec::with_capacity(stream.as_str().len() + 8);
        name.extend_from_slice(&revision.to_le_bytes());
        name.extend_from_slice(stream.as_str().as_bytes());
        Self(uuid::Uuid::new_v5(&STORE_RECORD_NAMESPACE, &name))
    }

    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    pub fn from_u128(value: u128) -> Self {
        Self(uuid::Uuid::from_u128(value))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The 0-based index of an event inside its stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A place in the global log `$all`: strictly increasing in commit order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Position(pub u64);

impl Position {
    pub const START: Position = Position(0);
    pub const END: Position = Position(u64::MAX);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the writer expects the stream's state to be; the append fails when it is not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream has no events (it never existed, or it was soft-deleted).
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has exactly this revision.
    Exact(u64),
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::StreamExists => f.write_str("stream exists"),
            ExpectedRevision::Exact(revision) => write!(f, "revision {revision}"),
        }
    }
}

/// The state of a stream as concurrency checks see it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StreamState {
    /// No event was ever appended. (A soft-deleted stream keeps its last revision: appends
    /// continue from it.)
    NoStream,
    /// The revision of the last event.
    At(Revision),
    /// Tombstoned: the name can never be written again.
    Tombstoned,
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamState::NoStream => f.write_str("no stream"),
            StreamState::At(revision) => write!(f, "revision {revision}"),
            StreamState::Tombstoned => f.write_str("tombstoned"),
        }
    }
}

/// How the event's data is encoded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ContentType {
    Json,
    Binary,
}

impl ContentType {
    pub fn as_mime(&self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Binary => "application/octet-stream",
        }
    }
}

/// The type of a proposed event, shared: events of one append with the same type can hold
/// one copy of it (a clone is a reference count, not an allocation). Compares, hashes,
/// prints and dereferences as the string it holds.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventType(Arc<str>);

impl EventType {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for EventType {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for EventType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl From<&String> for EventType {
    fn from(name: &String) -> Self {
        Self(Arc::from(name.as_str()))
    }
}

impl From<String> for EventType {
    fn from(name: String) -> Self {
        Self(Arc::from(name))
    }
}

impl From<Arc<str>> for EventType {
    fn from(name: Arc<str>) -> Self {
        Self(name)
    }
}

impl From<std::borrow::Cow<'_, str>> for EventType {
    fn from(name: std::borrow::Cow<'_, str>) -> Self {
        Self(Arc::from(name))
    }
}

impl From<EventType> for String {
    fn from(event_type: EventType) -> Self {
        event_type.0.as_ref().to_owned()
    }
}

impl From<&EventType> for String {
    fn from(event_type: &EventType) -> Self {
        event_type.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for EventType {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for EventType {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<EventType> for str {
    fn eq(&self, other: &EventType) -> bool {
        *self == *other.0
    }
}

impl PartialEq<EventType> for &str {
    fn eq(&self, other: &EventType) -> bool {
        **self == *other.0
    }
}

impl PartialEq<EventType> for String {
    fn eq(&self, other: &EventType) -> bool {
        **self == *other.0
    }
}

/// An event a client wants to append.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProposedEvent {
    pub id: EventId,
    pub event_type: EventType,
    pub content_type: ContentType,
    pub data: Bytes,
    pub metadata: Bytes,
}

impl ProposedEvent {
    /// A JSON event with a fresh random id and empty metadata.
    pub fn json(event_type: impl Into<EventType>, data: impl Into<Bytes>) -> Self {
        Self {
            id: EventId::new_random(),
            event_type: event_type.into(),
            content_type: ContentType::Json,
            data: data.into(),
            metadata: Bytes::new(),
        }
    }

    /// A binary event with a fresh random id and empty metadata.
    pub fn binary(event_type: impl Into<EventType>, data: impl Into<Bytes>) -> Self {
        Self {
            content_type: ContentType::Binary,
            ..Self::json(event_type, data)
        }
    }

    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Bytes this event counts against the event and append limits.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.metadata.len() + self.event_type.len()
    }

    /// Checks the event type.
    ///
    /// # Errors
    /// [`Error::InvalidEventType`] when the type is empty, too long, or contains NUL (which
    /// no backend can store as text: PostgreSQL refuses it).
    pub fn validate_type(&self) -> Result<()> {
        let reason = if self.event_type.is_empty() {
            Some("it is empty")
        } else if self.event_type.len() > EVENT_TYPE_BYTES_MAX {
            Some("it is longer than the limit")
        } else if self.event_type.contains('\0') {
            Some("it contains a NUL character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidEventType {
                event_type: truncate_for_message(&self.event_type),
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// Wall-clock time an event was recorded, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        Self(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// .NET ticks (100 ns units) since the Unix epoch, as KurrentDB clients expect.
    pub fn unix_ticks(&self) -> i64 {
        self.0 / 100
    }

    /// RFC 3339 text in UTC with `fraction_digits` digits of the second (at most 9, cut, not
    /// rounded): `2026-12-04T03:14:15.123Z` with 3.
    pub fn to_rfc3339(&self, fraction_digits: usize) -> String {
        let seconds = self.0.div_euclid(1_000_000_000);
        let nanos = format!("{:09}", self.0.rem_euclid(1_000_000_000));
        let fraction = &nanos[..fraction_digits.min(9)];
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let point = if fraction.is_empty() { "" } else { "." };
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{point}{fraction}Z",
            second_of_day / 3_600,
            second_of_day % 3_600 / 60,
            second_of_day % 60
        )
    }
}

/// Year, month and day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An event as stored: the proposed event plus where it landed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RecordedEvent {
    pub stream: StreamName,
    pub revision: Revision,
    pub position: Position,
    pub id: EventId,
    pub event_type: String,
    pub content_type: ContentType,
    pub data: Bytes,
    pub metadata: Bytes,
    pub created: Timestamp,
}

/// What a successful append reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AppendResult {
    /// Revision of the stream's last event after the append.
    pub current_revision: Revision,
    /// Position of the append's last event in `$all`.
    pub position: Position,
}

/// What a successful soft delete or tombstone reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeleteResult {
    /// Position of the record that carried the delete.
    pub position: Position,
}

/// Which way a read goes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    Forwards,
    Backwards,
}

#[cfg(test)]
mod event_type_tests {
    use super::{EventType, ProposedEvent};

    /// An `EventType` reads, compares, hashes and prints as the `String` it replaced, and a
    /// clone is the same copy.
    #[test]
    fn event_types_behave_as_their_strings() {
        use std::collections::HashSet;

        let name = String::from("Order\"Placed");
        let event_type = EventType::from(name.clone());
        assert_eq!(format!("{event_type:?}"), format!("{name:?}"));
        assert_eq!(event_type.to_string(), name);
        assert_eq!(event_type, name);
        assert_eq!(name, event_type);
        assert_eq!(event_type, *name.as_str());
        assert_eq!(event_type, name.as_str());
        assert_eq!(name.as_str(), event_type);
        assert_eq!(String::from(&event_type), name);
        assert_eq!(event_type.len(), name.len());
        assert_eq!(event_type.clone().as_ptr(), event_type.as_ptr());
        let set: HashSet<EventType> = [event_type].into_iter().collect();
        assert!(set.contains(name.as_str()));
        assert_eq!(EventType::default(), "");
        let proposed = ProposedEvent::json(name.as_str(), "{}");
        assert_eq!(
            proposed,
            ProposedEvent::json(name.clone(), "{}").with_id(proposed.id)
        );
    }
}

#[cfg(test)]
mod timestamp_tests {
    use super::Timestamp;

    #[test]
    fn rfc3339_formats_known_instants_to_the_digits_asked() {
        assert_eq!(Timestamp(0).to_rfc3339(3), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T12:34:56.789012345Z, a leap day.
        let leap_day = Timestamp(951_827_696_789_012_345);
        assert_eq!(leap_day.to_rfc3339(9), "2000-02-29T12:34:56.789012345Z");
        assert_eq!(leap_day.to_rfc3339(3), "2000-02-29T12:34:56.789Z");
        assert_eq!(leap_day.to_rfc3339(0), "2000-02-29T12:34:56Z");
        // Before the epoch: 1969-12-31T23:59:59.5Z.
        assert_eq!(
            Timestamp(-500_000_000).to_rfc3339(1),
            "1969-12-31T23:59:59.5Z"
        );
    }
}
