//! Dynamic consistency boundaries (dcb.events): events carry tags, a query selects events
//! by type and tags, and a conditional append writes only if no event matching a query
//! appeared after a position. Tags live in the event's JSON metadata under [`TAGS_KEY`]
//! (an array of strings), so every backend and wire protocol carries them unchanged, and
//! they are indexed like event types ([`crate::system_streams::IndexKey::Tag`]).

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::system_streams::{IndexKey, index_keys};
use crate::types::{Position, ProposedEvent, RecordedEvent};

/// The metadata key holding an event's tags: a JSON array of strings.
pub const TAGS_KEY: &str = "$tags";

/// Longest tag, in bytes.
pub const TAG_BYTES_MAX: usize = 256;

/// Items a query may hold.
pub const QUERY_ITEMS_MAX: usize = 64;

/// The tags of an event's metadata: the strings of its `$tags` array, without repeats, in
/// first-seen order. Metadata that is not a JSON object with such an array has none.
pub fn tags_of(metadata: &[u8]) -> Vec<String> {
    if !metadata
        .windows(TAGS_KEY.len())
        .any(|window| window == TAGS_KEY.as_bytes())
    {
        return Vec::new();
    }
    let Some(serde_json::Value::Array(values)) =
        crate::metadata_key::metadata_value(metadata, TAGS_KEY)
    else {
        return Vec::new();
    };
    let mut tags: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if let Some(tag) = value.as_str()
            && !tag.is_empty()
            && !tags.iter().any(|seen| seen == tag)
        {
            tags.push(tag.to_owned());
        }
    }
    tags
}

fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > TAG_BYTES_MAX || tag.contains('\0') {
        return Err(Error::InvalidArgument {
            reason: format!(
                "a tag must be 1 to {TAG_BYTES_MAX} bytes without NUL, not {:?}",
                tag.chars().take(64).collect::<String>()
            ),
        });
    }
    Ok(())
}

impl ProposedEvent {
    /// The event with `tags` in its metadata (`$tags`), beside the metadata's other keys.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty, over-long or NUL-holding tag, or metadata
    /// that is not empty and not a JSON object.
    pub fn with_tags<I, T>(mut self, tags: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut object = if self.metadata.is_empty() {
            serde_json::Map::new()
        } else {
            match serde_json::from_slice(&self.metadata) {
                Ok(serde_json::Value::Object(object)) => object,
                _ => {
                    return Err(Error::InvalidArgument {
                        reason: "tags need the event's metadata to be a JSON object".into(),
                    });
                }
            }
        };
        let mut list = Vec::new();
        for tag in tags {
            let tag = tag.into();
            validate_tag(&tag)?;
            if !list.contains(&tag) {
                list.push(tag);
            }
        }
        object.insert(
            TAGS_KEY.to_owned(),
            serde_json::Value::Array(list.into_iter().map(serde_json::Value::String).collect()),
        );
        self.metadata = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        Ok(self)
    }

    /// The event's tags (`$tags` of its metadata).
    pub fn tags(&self) -> Vec<String> {
        tags_of(&self.metadata)
    }
}

impl RecordedEvent {
    /// The event's tags (`$tags` of its metadata).
    pub fn tags(&self) -> Vec<String> {
        tags_of(&self.metadata)
    }
}

/// One item of a [`Query`]: an event matches when its type is one of `types` (any type
/// when empty) and it carries every tag of `tags`. An item names at least one type or tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryItem {
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl QueryItem {
    pub fn new<T: Into<String>, G: Into<String>>(
        types: impl IntoIterator<Item = T>,
        tags: impl IntoIterator<Item = G>,
    ) -> Self {
        Self {
            types: types.into_iter().map(Into::into).collect(),
            tags: tags.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether an event indexed under `keys` matches the item.
    pub fn matches_keys(&self, keys: &[IndexKey]) -> bool {
        let type_ok = self.types.is_empty()
            || keys.iter().any(|key| {
                matches!(key, IndexKey::EventType(event_type) if self.types.contains(event_type))
            });
        type_ok
            && self.tags.iter().all(|tag| {
                keys.iter()
                    .any(|key| matches!(key, IndexKey::Tag(carried) if carried == tag))
            })
    }
}

/// A DCB query: the events that match any of its items. Only events under the secondary
/// indexes count ([`index_keys`]): events of user streams and of their metadata streams,
/// not links or other system streams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub items: Vec<QueryItem>,
}

impl Query {
    pub fn new(items: impl IntoIterator<Item = QueryItem>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// Checks the query: 1 to [`QUERY_ITEMS_MAX`] items, each naming a type or a tag, every
    /// tag valid. Repeated types and tags within an item are removed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] saying what is wrong.
    pub fn validated(mut self) -> Result<Self> {
        if self.items.is_empty() || self.items.len() > QUERY_ITEMS_MAX {
            return Err(Error::InvalidArgument {
                reason: format!("a query holds 1 to {QUERY_ITEMS_MAX} items"),
            });
        }
        for item in &mut self.items {
            if item.types.is_empty() && item.tags.is_empty() {
                return Err(Error::InvalidArgument {
                    reason: "each query item names at least one event type or tag".into(),
                });
            }
            for tag in &item.tags {
                validate_tag(tag)?;
            }
            if item.types.iter().any(String::is_empty) {
                return Err(Error::InvalidArgument {
                    reason: "a query item's event type is empty".into(),
                });
            }
            dedup(&mut item.types);
            dedup(&mut item.tags);
        }
        Ok(self)
    }

    /// Whether a stored record matches (by the keys it is indexed under).
    pub fn matches_record(
        &self,
        stream: &str,
        revision: u64,
        event_type: &str,
        metadata: &[u8],
    ) -> bool {
        let keys = index_keys(stream, revision, event_type, metadata);
        self.items.iter().any(|item| item.matches_keys(&keys))
    }

    /// Whether a recorded event matches.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.matches_record(
            event.stream.as_str(),
            event.revision.0,
            &event.event_type,
            &event.metadata,
        )
    }
}

fn dedup(values: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    values.retain(|value| seen.insert(value.clone()));
}

/// The condition of [`crate::EventStore::append_conditional`]: fail if an event matching
/// `query` exists after `after` (anywhere in the log when `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendCondition {
    pub query: Query,
    pub after: Option<Position>,
}

impl AppendCondition {
    pub fn new(query: Query, after: Option<Position>) -> Self {
        Self { query, after }
    }

    /// Whether an event at `position` is after the condition's position.
    pub fn is_after(&self, position: Position) -> bool {
        self.after.is_none_or(|after| position > after)
    }

    /// The error for a matching event found at `position`.
    pub fn failed(&self, position: Position) -> Error {
        Error::AppendConditionFailed {
            after: self.after,
            found: position,
        }
    }
}

/// What [`crate::EventStore::read_query`] finds: matching events in log order, and the
/// position to pass as `after` to a conditional append decided on them (the last event's,
/// or the `from` of the read when none matched).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySlice {
    pub events: Vec<RecordedEvent>,
    pub last_position: Option<Position>,
    /// True when the read stopped at `max_count` and more events may match.
    pub more: bool,
}
