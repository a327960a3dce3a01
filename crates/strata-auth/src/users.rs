//! Users as events, as the reference server stores them: `$UserCreated` / `$UserUpdated`
//! in `$user-<login>` (the last one is the user), a `$User` event per user in `$users`,
//! and a `$PasswordChanged` event in `$users-password-notifications` after every change,
//! which is what invalidates verified credentials.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use strata_core::{
    Bytes, ContentType, EventId, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions,
    StreamName, StreamSlice, StreamState, Timestamp,
};

use crate::acl::StreamAcl;
use crate::error::AuthError;
use crate::password;
use crate::principal::ADMINS_ROLE;

pub const USERS_STREAM: &str = "$users";
pub const PASSWORD_NOTIFICATIONS_STREAM: &str = "$users-password-notifications";
pub const USER_CREATED_EVENT_TYPE: &str = "$UserCreated";
pub const USER_UPDATED_EVENT_TYPE: &str = "$UserUpdated";
pub const USER_EVENT_TYPE: &str = "$User";
pub const PASSWORD_CHANGED_EVENT_TYPE: &str = "$PasswordChanged";

/// Bytes of a login, at most (it becomes part of a stream name).
pub const LOGIN_BYTES_MAX: usize = 256;

/// True for the streams that hold users and default ACLs (and their metadata streams):
/// `$users`, `$user-<login>`, `$users-password-notifications`, `$settings`. Tools that copy
/// stores (import) keep the target's own instead of merging two sets of users.
pub fn is_security_stream(name: &str) -> bool {
    let name = name.strip_prefix("$$").unwrap_or(name);
    name == USERS_STREAM
        || name == PASSWORD_NOTIFICATIONS_STREAM
        || name == crate::acl::SETTINGS_STREAM
        || name.starts_with("$user-")
}

/// The stream of one user.
pub fn user_stream(login: &str) -> Result<StreamName, AuthError> {
    Ok(StreamName::new(format!("$user-{login}"))?)
}

/// A user as stored (the reference server's `UserData`; the hash is argon2id in PHC form,
/// which carries its salt, so `salt` stays empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub login_name: String,
    pub full_name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub hash: String,
    #[serde(default)]
    pub salt: String,
    #[serde(default)]
    pub disabled: bool,
}

/// A user as shown to callers: no hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDetails {
    pub login_name: String,
    pub full_name: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// When the user was last changed.
    pub last_updated: Timestamp,
}

/// A user's last record and the revision of its stream.
#[derive(Clone, Debug)]
pub(crate) struct StoredUser {
    pub(crate) record: UserRecord,
    pub(crate) revision: u64,
    pub(crate) last_updated: Timestamp,
}

impl StoredUser {
    fn details(&self) -> UserDetails {
        UserDetails {
            login_name: self.record.login_name.clone(),
            full_name: self.record.full_name.clone(),
            groups: self.record.groups.clone(),
            disabled: self.record.disabled,
            last_updated: self.last_updated,
        }
    }
}

fn check_login(login: &str) -> Result<(), AuthError> {
    let reason = if login.is_empty() {
        "the login is empty"
    } else if login.len() > LOGIN_BYTES_MAX {
        "the login is too long"
    } else if login.contains(':') || login.chars().any(char::is_control) {
        "the login contains ':' or a control character"
    } else {
        return Ok(());
    };
    Err(AuthError::InvalidUser {
        reason: reason.to_owned(),
    })
}

/// The user's last record, or `None` when there is no such user (never created, deleted).
pub(crate) async fn load(
    store: &dyn EventStore,
    login: &str,
) -> Result<Option<StoredUser>, AuthError> {
    if check_login(login).is_err() {
        return Ok(None);
    }
    let stream = user_stream(login)?;
    let slice = match store
        .read_stream(&stream, ReadStreamOptions::backwards().max_count(1))
        .await
    {
        Ok(slice) => slice,
        Err(strata_core::Error::StreamDeleted { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let StreamSlice::Found { events, .. } = slice else {
        return Ok(None);
    };
    let Some(event) = events.into_iter().next() else {
        return Ok(None);
    };
    if event.event_type != USER_CREATED_EVENT_TYPE && event.event_type != USER_UPDATED_EVENT_TYPE {
        return Ok(None);
    }
    let Ok(record) = serde_json::from_slice::<UserRecord>(&event.data) else {
        return Ok(None);
    };
    Ok(Some(StoredUser {
        record,
        revision: event.revision.0,
        last_updated: event.created,
    }))
}

fn json_event(event_type: &str, data: Vec<u8>) -> ProposedEvent {
    ProposedEvent {
        id: EventId::new_random(),
        event_type: event_type.into(),
        content_type: ContentType::Json,
        data: Bytes::from(data),
        metadata: Bytes::new(),
    }
}

async fn append_record(
    store: &dyn EventStore,
    record: &UserRecord,
    event_type: &str,
    expected: ExpectedRevision,
) -> Result<(), AuthError> {
    let stream = user_stream(&record.login_name)?;
    let data = serde_json::to_vec(record).expect("a user record serialises");
    match store
        .append(&stream, expected, vec![json_event(event_type, data)])
        .await
    {
        Ok(_) => Ok(()),
        Err(strata_core::Error::WrongExpectedRevision { .. }) => Err(AuthError::UserConflict {
            login: record.login_name.clone(),
        }),
        Err(error) => Err(error.into()),
    }
}

/// Tells verified-credential caches that this user changed.
async fn notify_change(store: &dyn EventStore, login: &str) -> Result<(), AuthError> {
    let stream = StreamName::new(PASSWORD_NOTIFICATIONS_STREAM)?;
    let data =
        serde_json::to_vec(&serde_json::json!({ "loginName": login })).expect("JSON serialises");
    store
        .append(
            &stream,
            ExpectedRevision::Any,
            vec![json_event(PASSWORD_CHANGED_EVENT_TYPE, data)],
        )
        .await?;
    Ok(())
}

/// Creates a user: its stream's ACL (admins only), `$UserCreated`, and `$User` in `$users`.
///
/// # Errors
/// [`AuthError::UserConflict`] when the login exists; [`AuthError::InvalidUser`] for a bad
/// login; store errors.
pub(crate) async fn create(
    store: &dyn EventStore,
    login: &str,
    full_name: &str,
    groups: &[String],
    password: &str,
) -> Result<(), AuthError> {
    check_login(login)?;
    if load(store, login).await?.is_some() {
        return Err(AuthError::UserConflict {
            login: login.to_owned(),
        });
    }
    let stream = user_stream(login)?;
    let mut metadata = store.stream_metadata(&stream).await?.metadata;
    let admins_only = StreamAcl::from_json(&serde_json::json!({
        "$w": ADMINS_ROLE, "$d": ADMINS_ROLE, "$mw": ADMINS_ROLE,
    }));
    metadata.acl = Some(admins_only.to_json());
    store
        .set_stream_metadata(&stream, ExpectedRevision::Any, &metadata)
        .await?;
    let expected = match store.stream_state(&stream).await? {
        StreamState::At(revision) => ExpectedRevision::Exact(revision.0),
        StreamState::NoStream => ExpectedRevision::NoStream,
        StreamState::Tombstoned => {
            return Err(AuthError::UserConflict {
                login: login.to_owned(),
            });
        }
    };
    let record = UserRecord {
        login_name: login.to_owned(),
        full_name: full_name.to_owned(),
        groups: groups.to_vec(),
        hash: password::hash(password),
        salt: String::new(),
        disabled: false,
    };
    append_record(store, &record, USER_CREATED_EVENT_TYPE, expected).await?;
    let users = StreamName::new(USERS_STREAM)?;
    let marker = ProposedEvent {
        content_type: ContentType::Binary,
        ..json_event(USER_EVENT_TYPE, login.as_bytes().to_vec())
    };
    store
        .append(&users, ExpectedRevision::Any, vec![marker])
        .await?;
    Ok(())
}

/// Loads a user, changes its record, writes `$UserUpdated` and a change notification.
pub(crate) async fn update(
    store: &dyn EventStore,
    login: &str,
    change: impl FnOnce(&mut UserRecord),
) -> Result<(), AuthError> {
    let stored = load(store, login)
        .await?
        .ok_or_else(|| AuthError::UserNotFound {
            login: login.to_owned(),
        })?;
    let mut record = stored.record;
    change(&mut record);
    append_record(
        store,
        &record,
        USER_UPDATED_EVENT_TYPE,
        ExpectedRevision::Exact(stored.revision),
    )
    .await?;
    notify_change(store, login).await
}

/// Changes a password after checking the current one.
///
/// # Errors
/// [`AuthError::AccessDenied`] when `current` is wrong, as the reference server answers.
pub(crate) async fn change_password(
    store: &dyn EventStore,
    login: &str,
    current: &str,
    new: &str,
) -> Result<(), AuthError> {
    let stored = load(store, login)
        .await?
        .ok_or_else(|| AuthError::UserNotFound {
            login: login.to_owned(),
        })?;
    if !password::verify(current, &stored.record.hash) {
        return Err(AuthError::AccessDenied {
            operation: "change password".to_owned(),
            resource: login.to_owned(),
        });
    }
    let hash = password::hash(new);
    update(store, login, |record| record.hash = hash).await
}

/// Soft-deletes the user's stream; the login may be created again later.
pub(crate) async fn delete(store: &dyn EventStore, login: &str) -> Result<(), AuthError> {
    let stored = load(store, login)
        .await?
        .ok_or_else(|| AuthError::UserNotFound {
            login: login.to_owned(),
        })?;
    let stream = user_stream(login)?;
    match store
        .delete_stream(&stream, ExpectedRevision::Exact(stored.revision))
        .await
    {
        Ok(_) => {}
        Err(strata_core::Error::WrongExpectedRevision { .. }) => {
            return Err(AuthError::UserConflict {
                login: login.to_owned(),
            });
        }
        Err(error) => return Err(error.into()),
    }
    notify_change(store, login).await
}

pub(crate) async fn details(store: &dyn EventStore, login: &str) -> Result<UserDetails, AuthError> {
    load(store, login)
        .await?
        .map(|stored| stored.details())
        .ok_or_else(|| AuthError::UserNotFound {
            login: login.to_owned(),
        })
}

/// Every existing user, by login.
pub(crate) async fn list(store: &dyn EventStore) -> Result<Vec<UserDetails>, AuthError> {
    let users = StreamName::new(USERS_STREAM)?;
    let logins: BTreeSet<String> = store
        .read_stream(&users, ReadStreamOptions::forwards())
        .await?
        .into_events()
        .into_iter()
        .filter(|event| event.event_type == USER_EVENT_TYPE)
        .filter_map(|event| String::from_utf8(event.data.to_vec()).ok())
        .collect();
    let mut details = Vec::with_capacity(logins.len());
    for login in logins {
        if let Some(stored) = load(store, &login).await? {
            details.push(stored.details());
        }
    }
    Ok(details)
}
