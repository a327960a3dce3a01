//! Stream ACLs (`$acl` in stream metadata) and their defaults (`$settings`).

use serde_json::{Map, Value, json};
use strata_core::StreamName;

use crate::principal::{ADMINS_ROLE, EVERYONE_ROLE, Principal};

/// The stream holding the default ACLs.
pub const SETTINGS_STREAM: &str = "$settings";
/// The event type of `$settings` events.
pub const SETTINGS_EVENT_TYPE: &str = "$settings";

/// What a caller wants to do to a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOperation {
    Read,
    Write,
    Delete,
    MetadataRead,
    MetadataWrite,
}

impl StreamOperation {
    fn key(self) -> &'static str {
        match self {
            StreamOperation::Read => "$r",
            StreamOperation::Write => "$w",
            StreamOperation::Delete => "$d",
            StreamOperation::MetadataRead => "$mr",
            StreamOperation::MetadataWrite => "$mw",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StreamOperation::Read => "read",
            StreamOperation::Write => "write",
            StreamOperation::Delete => "delete",
            StreamOperation::MetadataRead => "metadata read",
            StreamOperation::MetadataWrite => "metadata write",
        }
    }

    /// The operation and stream a check is really about: reading or writing `$$s` is
    /// reading or writing the metadata of `s`.
    pub fn resolve(self, stream: &StreamName) -> (StreamOperation, StreamName) {
        match stream.described_stream() {
            Some(described) => {
                let operation = match self {
                    StreamOperation::Read | StreamOperation::MetadataRead => {
                        StreamOperation::MetadataRead
                    }
                    _ => StreamOperation::MetadataWrite,
                };
                (operation, described)
            }
            None => (self, stream.clone()),
        }
    }
}

/// The roles allowed each operation; `None` means "not said here, ask the next level".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamAcl {
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
    delete: Option<Vec<String>>,
    metadata_read: Option<Vec<String>>,
    metadata_write: Option<Vec<String>>,
}

impl StreamAcl {
    /// Every operation allowed to exactly `roles`.
    pub fn all_to(roles: &[&str]) -> Self {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        Self {
            read: Some(roles.clone()),
            write: Some(roles.clone()),
            delete: Some(roles.clone()),
            metadata_read: Some(roles.clone()),
            metadata_write: Some(roles),
        }
    }

    /// Reads an `$acl` value: each key a role or an array of roles. Other shapes say nothing.
    pub fn from_json(value: &Value) -> Self {
        let roles = |key: &str| -> Option<Vec<String>> {
            match value.get(key)? {
                Value::String(role) => Some(vec![role.clone()]),
                Value::Array(items) => Some(
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            }
        };
        Self {
            read: roles("$r"),
            write: roles("$w"),
            delete: roles("$d"),
            metadata_read: roles("$mr"),
            metadata_write: roles("$mw"),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for operation in [
            StreamOperation::Read,
            StreamOperation::Write,
            StreamOperation::Delete,
            StreamOperation::MetadataRead,
            StreamOperation::MetadataWrite,
        ] {
            if let Some(roles) = self.roles(operation) {
                object.insert(operation.key().to_owned(), json!(roles));
            }
        }
        Value::Object(object)
    }

    pub fn roles(&self, operation: StreamOperation) -> Option<&[String]> {
        match operation {
            StreamOperation::Read => self.read.as_deref(),
            StreamOperation::Write => self.write.as_deref(),
            StreamOperation::Delete => self.delete.as_deref(),
            StreamOperation::MetadataRead => self.metadata_read.as_deref(),
            StreamOperation::MetadataWrite => self.metadata_write.as_deref(),
        }
    }
}

/// The default ACLs of `$settings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultAcls {
    pub user_streams: StreamAcl,
    pub system_streams: StreamAcl,
}

impl Default for DefaultAcls {
    /// User streams open to everyone, system streams to admins (the reference defaults).
    fn default() -> Self {
        Self {
            user_streams: StreamAcl::all_to(&[EVERYONE_ROLE]),
            system_streams: StreamAcl::all_to(&[ADMINS_ROLE]),
        }
    }
}

impl DefaultAcls {
    /// Reads a `$settings` event's data; missing parts say nothing (the built-in defaults
    /// apply), a document that is not JSON says nothing at all.
    pub fn from_settings_json(data: &[u8]) -> (Option<StreamAcl>, Option<StreamAcl>) {
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            return (None, None);
        };
        (
            value.get("$userStreamAcl").map(StreamAcl::from_json),
            value.get("$systemStreamAcl").map(StreamAcl::from_json),
        )
    }

    pub fn to_settings_json(&self) -> Value {
        json!({
            "$userStreamAcl": self.user_streams.to_json(),
            "$systemStreamAcl": self.system_streams.to_json(),
        })
    }
}

/// The roles allowed `operation` on `stream`: the stream's own ACL first, then the
/// `$settings` default for its kind, then the built-in default (per operation, as the
/// reference server falls back).
pub(crate) fn allowed_roles<'a>(
    operation: StreamOperation,
    stream: &StreamName,
    own: Option<&'a StreamAcl>,
    settings: (&'a Option<StreamAcl>, &'a Option<StreamAcl>),
    built_in: &'a DefaultAcls,
) -> &'a [String] {
    let (settings_acl, built_in_acl) = if stream.is_system() {
        (settings.1, &built_in.system_streams)
    } else {
        (settings.0, &built_in.user_streams)
    };
    own.and_then(|acl| acl.roles(operation))
        .or_else(|| settings_acl.as_ref().and_then(|acl| acl.roles(operation)))
        .or_else(|| built_in_acl.roles(operation))
        .unwrap_or(&[])
}

/// True when `principal` holds one of `roles` (`$all` is everyone's).
pub(crate) fn holds_any(principal: &Principal, roles: &[String]) -> bool {
    roles
        .iter()
        .any(|role| role == EVERYONE_ROLE || principal.has_role(role))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).expect("valid")
    }

    #[test]
    fn a_role_may_be_a_string_or_an_array_and_empty_means_nobody() {
        let acl = StreamAcl::from_json(&json!({"$r": "ada", "$w": ["ada", "ops"], "$d": []}));
        assert_eq!(
            acl.roles(StreamOperation::Read),
            Some(&["ada".to_owned()][..])
        );
        assert_eq!(
            acl.roles(StreamOperation::Write).map(<[String]>::len),
            Some(2)
        );
        assert_eq!(acl.roles(StreamOperation::Delete), Some(&[][..]));
        assert_eq!(acl.roles(StreamOperation::MetadataRead), None);
    }

    #[test]
    fn fallback_is_per_operation() {
        let built_in = DefaultAcls::default();
        let own = StreamAcl::from_json(&json!({"$w": "ada"}));
        let settings = (Some(StreamAcl::from_json(&json!({"$r": "readers"}))), None);
        let settings = (&settings.0, &settings.1);
        let orders = stream("orders");
        assert_eq!(
            allowed_roles(
                StreamOperation::Write,
                &orders,
                Some(&own),
                settings,
                &built_in
            ),
            ["ada"]
        );
        assert_eq!(
            allowed_roles(
                StreamOperation::Read,
                &orders,
                Some(&own),
                settings,
                &built_in
            ),
            ["readers"]
        );
        assert_eq!(
            allowed_roles(
                StreamOperation::Delete,
                &orders,
                Some(&own),
                settings,
                &built_in
            ),
            ["$all"]
        );
        assert_eq!(
            allowed_roles(
                StreamOperation::Read,
                &stream("$secret"),
                None,
                settings,
                &built_in
            ),
            ["$admins"]
        );
    }

    #[test]
    fn metadata_streams_are_checked_as_their_streams_metadata() {
        let (operation, described) = StreamOperation::Write.resolve(&stream("$$orders"));
        assert_eq!(operation, StreamOperation::MetadataWrite);
        assert_eq!(described, stream("orders"));
        let (operation, _) = StreamOperation::Read.resolve(&stream("$$orders"));
        assert_eq!(operation, StreamOperation::MetadataRead);
    }
}
