//! The stored configuration of every group: one event per change in
//! `$persistentSubscriptionConfig`, holding the whole list.

use serde::{Deserialize, Serialize};
use strata_core::{
    Bytes, ContentType, EventId, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions,
};

use crate::error::{Error, Result};
use crate::settings::GroupSettings;
use crate::source::{FilterSpec, SubscriptionSource, config_stream};

/// Event type of configuration events.
const CONFIG_EVENT_TYPE: &str = "$PersistentConfig";

/// Version of the JSON layout written here.
const CONFIG_VERSION: u32 = 1;

/// One group as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupDefinition {
    pub(crate) source: SubscriptionSource,
    pub(crate) group: String,
    pub(crate) settings: GroupSettings,
    pub(crate) filter: Option<FilterSpec>,
}

#[derive(Serialize, Deserialize)]
struct StoredGroup {
    source: String,
    group: String,
    #[serde(default)]
    filter: Option<FilterSpec>,
    settings: GroupSettings,
}

#[derive(Serialize, Deserialize)]
struct StoredConfig {
    version: u32,
    groups: Vec<StoredGroup>,
}

/// The stored groups, and the revision of the event they came from.
pub(crate) async fn load(store: &dyn EventStore) -> Result<(Vec<GroupDefinition>, Option<u64>)> {
    let stream = config_stream();
    let last = store
        .read_stream(&stream, ReadStreamOptions::backwards().max_count(1))
        .await?
        .into_events();
    let Some(event) = last.first() else {
        return Ok((Vec::new(), None));
    };
    let corrupt = |detail: String| Error::CorruptState {
        stream: stream.to_string(),
        detail,
    };
    let stored: StoredConfig = serde_json::from_slice(&event.data).map_err(|error| {
        corrupt(format!(
            "configuration at revision {} does not parse: {error}",
            event.revision
        ))
    })?;
    let mut groups = Vec::with_capacity(stored.groups.len());
    for group in stored.groups {
        groups.push(GroupDefinition {
            source: SubscriptionSource::from_name(&group.source)
                .map_err(|error| corrupt(error.to_string()))?,
            group: group.group,
            // Stored before a start of 2^64−1 was read as the end.
            settings: GroupSettings {
                start_from: group.settings.start_from.normalized(),
                ..group.settings
            },
            filter: group.filter,
        });
    }
    Ok((groups, Some(event.revision.0)))
}

/// Writes the whole list if the stored one is still at `revision`; returns the new revision.
pub(crate) async fn save<'a>(
    store: &dyn EventStore,
    groups: impl Iterator<Item = &'a GroupDefinition>,
    revision: Option<u64>,
) -> Result<u64> {
    let stored = StoredConfig {
        version: CONFIG_VERSION,
        groups: groups
            .map(|definition| StoredGroup {
                source: definition.source.name().to_owned(),
                group: definition.group.clone(),
                filter: definition.filter.clone(),
                settings: definition.settings.clone(),
            })
            .collect(),
    };
    let data = serde_json::to_vec(&stored).map_err(|error| Error::CorruptState {
        stream: config_stream().to_string(),
        detail: format!("configuration does not serialize: {error}"),
    })?;
    let event = ProposedEvent {
        id: EventId::new_random(),
        event_type: CONFIG_EVENT_TYPE.into(),
        content_type: ContentType::Json,
        data: Bytes::from(data),
        metadata: Bytes::new(),
    };
    let expected = match revision {
        Some(revision) => ExpectedRevision::Exact(revision),
        None => ExpectedRevision::NoStream,
    };
    let result = store
        .append(&config_stream(), expected, vec![event])
        .await?;
    Ok(result.current_revision.0)
}
