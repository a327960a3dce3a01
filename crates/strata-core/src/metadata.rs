//! Stream metadata: the JSON document stored as `$metadata` events in `$$stream`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::types::{RecordedEvent, Revision, StreamName, Timestamp};

/// The event type of metadata events in `$$stream`.
pub const METADATA_EVENT_TYPE: &str = "$metadata";

/// The event type of the record that tombstones a stream.
pub const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";

/// The revision a store gives the record that tombstones a stream, as KurrentDB does
/// (`long.MaxValue`): what tells that record from an ordinary event of the same type.
pub const TOMBSTONE_REVISION: u64 = i64::MAX as u64;

/// The `$tb` a soft delete writes, as KurrentDB does (`long.MaxValue`): a stream whose
/// metadata says so reads as not found until it is written again.
pub const SOFT_DELETED_TRUNCATE_BEFORE: u64 = i64::MAX as u64;

/// What a stream's metadata says; reads of the stream honour max age, max count and
/// truncate-before. Unknown keys are kept in `custom`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamMetadata {
    /// `$maxAge`: events older than this are not returned.
    pub max_age: Option<Duration>,
    /// `$maxCount`: only the newest this-many events are returned.
    pub max_count: Option<u64>,
    /// `$tb`: events with a lower revision are not returned (soft delete sets it).
    pub truncate_before: Option<u64>,
    /// `$cacheControl`, kept for HTTP front ends.
    pub cache_control: Option<Duration>,
    /// `$acl`, kept as given.
    pub acl: Option<Value>,
    /// Every other key, kept as given.
    pub custom: Map<String, Value>,
}

impl StreamMetadata {
    /// Parses the JSON document of a `$metadata` event.
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`] when the document is not a JSON object or a known key
    /// has the wrong type.
    pub fn from_json(stream: &StreamName, json: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidMetadata {
            stream: stream.clone(),
            reason,
        };
        let value: Value = serde_json::from_slice(json)
            .map_err(|error| invalid(format!("not valid JSON: {error}")))?;
        let Value::Object(mut object) = value else {
            return Err(invalid("the document is not a JSON object".to_owned()));
        };
        let mut take_u64 = |key: &str| -> Result<Option<u64>> {
            match object.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(|| {
                    invalid(format!(
                        "{key} must be a non-negative integer, got {number}"
                    ))
                }),
                Some(other) => Err(invalid(format!(
                    "{key} must be a non-negative integer, got {other}"
                ))),
            }
        };
        let max_age = take_u64("$maxAge")?.map(Duration::from_secs);
        let max_count = take_u64("$maxCount")?;
        let truncate_before = take_u64("$tb")?;
        let cache_control = take_u64("$cacheControl")?.map(Duration::from_secs);
        let acl = object.remove("$acl");
        Ok(Self {
            max_age,
            max_count,
            truncate_before,
            cache_control,
            acl,
            custom: object,
        })
    }

    /// The metadata a `$metadata` event's data holds; a document that does not parse counts
    /// as empty metadata, so a bad write can never make a stream unreadable.
    pub fn from_json_or_default(stream: &StreamName, json: &[u8]) -> Self {
        Self::from_json(stream, json).unwrap_or_default()
    }

    /// True when a soft delete hides the stream (`$tb` is [`SOFT_DELETED_TRUNCATE_BEFORE`]).
    pub fn is_soft_deleted(&self) -> bool {
        self.truncate_before == Some(SOFT_DELETED_TRUNCATE_BEFORE)
    }

    /// True when `$maxAge` hides an event created at `created` from reads at `now`.
    pub fn is_expired(&self, created: Timestamp, now: Timestamp) -> bool {
        self.max_age.is_some_and(|max_age| {
            let age_nanos = now.0.saturating_sub(created.0);
            u128::try_from(age_nanos).unwrap_or(0) > max_age.as_nanos()
        })
    }

    /// The JSON document, with the known keys first.
    pub fn to_json(&self) -> Vec<u8> {
        let mut object = Map::new();
        if let Some(max_age) = self.max_age {
            object.insert("$maxAge".into(), max_age.as_secs().into());
        }
        if let Some(max_count) = self.max_count {
            object.insert("$maxCount".into(), max_count.into());
        }
        if let Some(truncate_before) = self.truncate_before {
            object.insert("$tb".into(), truncate_before.into());
        }
        if let Some(cache_control) = self.cache_control {
            object.insert("$cacheControl".into(), cache_control.as_secs().into());
        }
        if let Some(acl) = &self.acl {
            object.insert("$acl".into(), acl.clone());
        }
        for (key, value) in &self.custom {
            object.insert(key.clone(), value.clone());
        }
        serde_json::to_vec(&Value::Object(object)).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// True when an event at `revision` of a stream whose last revision is `last_revision`
    /// is visible to reads at time `now`.
    pub fn is_visible(
        &self,
        revision: Revision,
        last_revision: Revision,
        created: Timestamp,
        now: Timestamp,
    ) -> bool {
        if self
            .truncate_before
            .is_some_and(|truncate_before| revision.0 < truncate_before)
        {
            return false;
        }
        if self
            .max_count
            .is_some_and(|max_count| last_revision.0.saturating_sub(revision.0) >= max_count)
        {
            return false;
        }
        !self.is_expired(created, now)
    }

    /// The lowest revision that max count and truncate-before leave visible.
    pub fn first_visible_revision(&self, last_revision: Revision) -> u64 {
        let by_count = self.max_count.map_or(0, |max_count| {
            (last_revision.0 + 1).saturating_sub(max_count)
        });
        by_count.max(self.truncate_before.unwrap_or(0))
    }
}

/// The metadata of a stream together with the revision of the `$$stream` event holding it.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedMetadata {
    pub metadata: StreamMetadata,
    /// Revision in `$$stream`; `None` when no metadata was ever written.
    pub revision: Option<Revision>,
}

impl VersionedMetadata {
    /// Metadata from the last event of `$$stream`; a document that does not parse counts
    /// as empty metadata, so a bad write can never make a stream unreadable.
    pub fn from_last_event(stream: &StreamName, last: Option<&RecordedEvent>) -> Self {
        match last {
            None => Self {
                metadata: StreamMetadata::default(),
                revision: None,
            },
            Some(event) => Self {
                metadata: StreamMetadata::from_json_or_default(stream, &event.data),
                revision: Some(event.revision),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/stream_metadata`: a number too large for an integer was parsed to a
    /// float that, written back, parsed to a different float.
    #[test]
    fn a_custom_number_survives_being_written_back() {
        let stream = StreamName::new("order-1").unwrap();
        for json in [
            r#"{"big":229223372036854775807}"#,
            r#"{"small":1.0000000000000002e-300,"third":0.3333333333333333}"#,
        ] {
            let metadata = StreamMetadata::from_json(&stream, json.as_bytes()).unwrap();
            let again = StreamMetadata::from_json(&stream, &metadata.to_json()).unwrap();
            assert_eq!(again, metadata, "{json}");
        }
    }
}
