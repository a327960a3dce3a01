//! The one place every front end asks: who is calling, and may they do this.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_core::{EventStore, ReadStreamOptions, RecordedEvent, StreamName, StreamState};
use tokio::sync::watch;

use crate::acl::{
    DefaultAcls, SETTINGS_STREAM, StreamAcl, StreamOperation, allowed_roles, holds_any,
};
use crate::cache::{CredentialCache, UserVersion};
use crate::credentials::Credentials;
use crate::error::AuthError;
use crate::login_watch::LoginWatch;
use crate::principal::{ADMINS_ROLE, OPS_ROLE, Principal};
use crate::secured_store::SecuredStore;
use crate::throttle::LoginThrottle;
use crate::users::{self, PASSWORD_NOTIFICATIONS_STREAM, UserDetails};

/// The password of the built-in `admin` and `ops` users unless configured otherwise.
pub const DEFAULT_PASSWORD: &str = "changeit";
/// The name of `$all` in ACL checks (its ACL is the metadata of `$$$all`).
pub const ALL_STREAM: &str = "$all";

/// How a server secures itself.
#[derive(Clone, Debug)]
pub struct SecurityOptions {
    /// Password given to `admin` when it is created at first start.
    pub admin_password: String,
    /// Password given to `ops` when it is created at first start.
    pub ops_password: String,
    /// Whether callers without credentials may do what ACLs grant to `$all`.
    pub allow_anonymous: bool,
    /// Whether credentials are checked and ACLs enforced; without, every caller may do
    /// everything (KurrentDB's insecure mode).
    pub authentication: bool,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        Self {
            admin_password: DEFAULT_PASSWORD.to_owned(),
            ops_password: DEFAULT_PASSWORD.to_owned(),
            allow_anonymous: false,
            authentication: true,
        }
    }
}

/// What a caller wants that is not about one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create, update, delete, enable, disable users, reset passwords, list users.
    ManageUsers,
    /// See one user's details: admins, and the user itself.
    ReadUser(String),
    /// Change a password knowing the current one: only the user itself.
    ChangePassword(String),
    /// Create, update, delete, replay or restart persistent subscriptions: admins and ops.
    ManagePersistentSubscriptions,
    /// Operations on the node (scavenge, shutdown, ...): admins and ops.
    Operations,
    /// Statistics and listings: any authenticated user.
    Statistics,
}

#[derive(Default)]
struct CachedSettings {
    state: Option<StreamState>,
    user_streams: Option<StreamAcl>,
    system_streams: Option<StreamAcl>,
}

/// Users, authentication and authorisation over one store.
pub struct Security {
    store: Arc<dyn EventStore>,
    enabled: bool,
    allow_anonymous: bool,
    credentials: CredentialCache,
    throttle: LoginThrottle,
    settings: Mutex<CachedSettings>,
    built_in: DefaultAcls,
    /// Bumped after every change of a user made through this value, so open calls of that
    /// user check their credentials again at once ([`LoginWatch`]).
    user_changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Security")
            .field("enabled", &self.enabled)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Security off (insecure mode): every caller, with or without credentials, is allowed
    /// everything, as KurrentDB's insecure mode does. User management still works.
    pub fn disabled(store: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self::new(store, false, true))
    }

    /// Security on, whatever `options.authentication` says. Creates the built-in users `admin` ($admins) and `ops` ($ops) when their
    /// streams do not exist yet (a new store), as KurrentDB does: for each, the ACL of its
    /// stream, `$UserCreated`, and `$User` in `$users`. Like KurrentDB, it writes no
    /// `$settings`: without one the built-in default ACLs apply.
    ///
    /// # Errors
    /// Store errors while reading or writing those streams.
    pub async fn enabled(
        store: Arc<dyn EventStore>,
        options: SecurityOptions,
    ) -> Result<Arc<Self>, AuthError> {
        let security = Self::new(store, true, options.allow_anonymous);
        security.bootstrap(&options).await?;
        Ok(Arc::new(security))
    }

    /// Security as `options` say: [`Security::enabled`] with authentication, otherwise
    /// [`Security::disabled`] (insecure mode). Either way a new store gets the built-in users,
    /// as KurrentDB's does in both modes: its `$all` begins with their events, and a store
    /// first served insecurely can later be served with TLS and users.
    ///
    /// # Errors
    /// Store errors while reading or writing the users' streams.
    pub async fn open(
        store: Arc<dyn EventStore>,
        options: SecurityOptions,
    ) -> Result<Arc<Self>, AuthError> {
        if options.authentication {
            return Self::enabled(store, options).await;
        }
        let security = Self::new(store, false, true);
        security.bootstrap(&options).await?;
        Ok(Arc::new(security))
    }

    fn new(store: Arc<dyn EventStore>, enabled: bool, allow_anonymous: bool) -> Self {
        Self {
            store,
            enabled,
            allow_anonymous,
            credentials: CredentialCache::default(),
            throttle: LoginThrottle::default(),
            settings: Mutex::new(CachedSettings::default()),
            built_in: DefaultAcls::default(),
            user_changes: watch::Sender::new(0),
        }
    }

    async fn bootstrap(&self, options: &SecurityOptions) -> Result<(), AuthError> {
        let store = self.store.as_ref();
        let built_ins = [
            (
                "admin",
                "KurrentDB Administrator",
                ADMINS_ROLE,
                &options.admin_password,
            ),
            (
                "ops",
                "KurrentDB Operations",
                OPS_ROLE,
                &options.ops_password,
            ),
        ];
        for (login, full_name, role, password) in built_ins {
            if store.stream_state(&users::user_stream(login)?).await? != StreamState::NoStream {
                continue;
            }
            match users::create(store, login, full_name, &[role.to_owned()], password).await {
                // Another node sharing the store created it first.
                Ok(()) | Err(AuthError::UserConflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Whether authentication and ACLs are enforced.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Who sent a request with this `authorization` header (`None`: no header) from `source`.
    /// Without a header the caller is anonymous; whether anonymous callers may do anything
    /// is decided by [`Security::authorize`].
    ///
    /// # Errors
    /// [`AuthError::BadHeader`] for an unreadable header; [`AuthError::BadCredentials`] for
    /// an unknown login, a wrong password or a disabled user (logged without the password,
    /// and answered after a delay that grows with the failures from `source`).
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(Principal::system());
        }
        let Some(header) = header else {
            return Ok(Principal::anonymous());
        };
        match Credentials::from_header(header) {
            Ok(credentials) => self.authenticate_credentials(&credentials, source).await,
            Err(error) => {
                tracing::warn!(?source, %error, "refused an authorization header");
                tokio::time::sleep(self.throttle.failed(source)).await;
                Err(error)
            }
        }
    }

    /// Like [`Security::authenticate`], with the credentials already read.
    ///
    /// # Errors
    /// As [`Security::authenticate`].
    pub async fn authenticate_credentials(
        &self,
        credentials: &Credentials,
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(Principal::system());
        }
        let version = self.user_version(&credentials.login).await?;
        match self.verify(credentials, version).await? {
            Some(principal) => {
                self.throttle.succeeded(source);
                Ok(principal)
            }
            None => {
                tracing::warn!(login = %credentials.login, ?source, "failed login");
                tokio::time::sleep(self.throttle.failed(source)).await;
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// The principal these credentials log in as while the user is at `version` (`None`:
    /// unknown login, wrong password, disabled user); cached per version.
    pub(crate) async fn verify(
        &self,
        credentials: &Credentials,
        version: UserVersion,
    ) -> Result<Option<Principal>, AuthError> {
        if let Some(principal) = self.credentials.get(credentials, version) {
            return Ok(Some(principal));
        }
        let stored = users::load(self.store.as_ref(), &credentials.login).await?;
        let verified = match stored {
            Some(stored) if !stored.record.disabled => {
                let password = credentials.password.clone();
                let hash = stored.record.hash.clone();
                let matches =
                    tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
                        .await
                        .unwrap_or(false);
                matches.then(|| Principal::user(&stored.record.login_name, &stored.record.groups))
            }
            _ => None,
        };
        if let Some(principal) = &verified {
            self.credentials
                .insert(credentials, principal.clone(), version);
        }
        Ok(verified)
    }

    /// Watches the login of a long call (a subscription) opened by `principal` with the
    /// `authorization` header `header`: [`LoginWatch::revoked`] completes once those
    /// credentials no longer log in as `principal`.
    pub fn watch_login(
        self: &Arc<Self>,
        header: Option<&str>,
        principal: &Principal,
    ) -> LoginWatch {
        LoginWatch::new(self, header, principal, self.user_changes.subscribe())
    }

    /// Tells open calls that a user changed.
    fn user_changed(&self) {
        self.user_changes
            .send_modify(|changes| *changes = changes.wrapping_add(1));
    }

    pub(crate) async fn user_version(&self, login: &str) -> Result<UserVersion, AuthError> {
        let user_stream = match users::user_stream(login) {
            Ok(stream) => self.store.stream_state(&stream).await?,
            Err(_) => StreamState::NoStream,
        };
        let notifications = StreamName::new(PASSWORD_NOTIFICATIONS_STREAM)?;
        Ok(UserVersion {
            user_stream,
            notifications: self.store.stream_state(&notifications).await?,
        })
    }

    /// May `principal` do `operation` on `stream`? `$$s` is checked as the metadata of `s`;
    /// `stream` may be [`ALL_STREAM`] for reads of `$all`.
    ///
    /// # Errors
    /// [`AuthError::AccessDenied`] when not; store errors while reading ACLs.
    pub async fn authorize(
        &self,
        principal: &Principal,
        operation: StreamOperation,
        stream: &StreamName,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let (operation, stream) = operation.resolve(stream);
        let denied = || AuthError::AccessDenied {
            operation: operation.name().to_owned(),
            resource: stream.to_string(),
        };
        if principal.is_anonymous() && !self.allow_anonymous {
            return Err(denied());
        }
        if stream.as_str() == ALL_STREAM
            && matches!(operation, StreamOperation::Write | StreamOperation::Delete)
        {
            return Err(denied());
        }
        if principal.is_admin() {
            return Ok(());
        }
        let own = self.stream_acl(&stream).await?;
        let settings = self.default_acls().await?;
        let roles = allowed_roles(
            operation,
            &stream,
            own.as_ref(),
            (&settings.0, &settings.1),
            &self.built_in,
        );
        if holds_any(principal, roles) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// May `principal` do `action`?
    ///
    /// # Errors
    /// [`AuthError::AccessDenied`] when not.
    pub fn authorize_action(
        &self,
        principal: &Principal,
        action: &Action,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let allowed = match action {
            Action::ManageUsers => principal.is_admin(),
            Action::ReadUser(login) => {
                principal.is_admin() || principal.login() == Some(login.as_str())
            }
            Action::ChangePassword(login) => principal.login() == Some(login.as_str()),
            Action::ManagePersistentSubscriptions | Action::Operations => principal.is_operator(),
            Action::Statistics => !principal.is_anonymous(),
        };
        if allowed {
            Ok(())
        } else {
            Err(AuthError::AccessDenied {
                operation: format!("{action:?}"),
                resource: "the node".to_owned(),
            })
        }
    }

    /// The events of a `$all` page that `principal` may read (the others are left out, so
    /// reading `$all` never shows events of streams the caller may not read).
    ///
    /// # Errors
    /// Store errors while reading ACLs.
    pub async fn readable_events(
        &self,
        principal: &Principal,
        events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>, AuthError> {
        if !self.enabled || principal.is_admin() {
            return Ok(events);
        }
        let mut verdicts: HashMap<StreamName, bool> = HashMap::new();
        let mut readable = Vec::with_capacity(events.len());
        for event in events {
            let allowed = match verdicts.get(&event.stream) {
                Some(allowed) => *allowed,
                None => {
                    let allowed = self.may_read(principal, &event.stream).await?;
                    verdicts.insert(event.stream.clone(), allowed);
                    allowed
                }
            };
            if allowed {
                readable.push(event);
            }
        }
        Ok(readable)
    }

    /// May `principal` read `stream`?
    ///
    /// # Errors
    /// Store errors while reading ACLs.
    pub async fn may_read(
        &self,
        principal: &Principal,
        stream: &StreamName,
    ) -> Result<bool, AuthError> {
        match self
            .authorize(principal, StreamOperation::Read, stream)
            .await
        {
            Ok(()) => Ok(true),
            Err(AuthError::AccessDenied { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `store` as `principal` sees it: every operation checked, `$all` reads filtered.
    pub fn store_for(self: &Arc<Self>, principal: Principal) -> Arc<dyn EventStore> {
        if !self.enabled {
            return Arc::clone(&self.store);
        }
        Arc::new(SecuredStore::new(
            Arc::clone(&self.store),
            Arc::clone(self),
            principal,
        ))
    }

    async fn stream_acl(&self, stream: &StreamName) -> Result<Option<StreamAcl>, AuthError> {
        let metadata_stream = stream.metadata_stream();
        let last = match self
            .store
            .read_stream(
                &metadata_stream,
                ReadStreamOptions::backwards().max_count(1),
            )
            .await
        {
            Ok(slice) => slice.into_events(),
            Err(strata_core::Error::StreamDeleted { .. }) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        Ok(last.first().and_then(|event| {
            let metadata = strata_core::StreamMetadata::from_json_or_default(stream, &event.data);
            metadata.acl.as_ref().map(StreamAcl::from_json)
        }))
    }

    async fn default_acls(&self) -> Result<(Option<StreamAcl>, Option<StreamAcl>), AuthError> {
        let stream = StreamName::new(SETTINGS_STREAM)?;
        let state = self.store.stream_state(&stream).await?;
        {
            let cached = self.settings.lock();
            if cached.state == Some(state) {
                return Ok((cached.user_streams.clone(), cached.system_streams.clone()));
            }
        }
        let last = self
            .store
            .read_stream(&stream, ReadStreamOptions::backwards().max_count(1))
            .await?
            .into_events();
        let (user_streams, system_streams) = last
            .first()
            .map(|event| DefaultAcls::from_settings_json(&event.data))
            .unwrap_or((None, None));
        *self.settings.lock() = CachedSettings {
            state: Some(state),
            user_streams: user_streams.clone(),
            system_streams: system_streams.clone(),
        };
        Ok((user_streams, system_streams))
    }

    /// Creates a user.
    ///
    /// # Errors
    /// [`AuthError::UserConflict`] when the login exists; [`AuthError::InvalidUser`] for a
    /// bad login; store errors.
    pub async fn create_user(
        &self,
        login: &str,
        full_name: &str,
        groups: &[String],
        password: &str,
    ) -> Result<(), AuthError> {
        users::create(self.store.as_ref(), login, full_name, groups, password).await
    }

    /// Replaces a user's full name and groups.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`]; store errors.
    pub async fn update_user(
        &self,
        login: &str,
        full_name: &str,
        groups: &[String],
    ) -> Result<(), AuthError> {
        users::update(self.store.as_ref(), login, |record| {
            record.full_name = full_name.to_owned();
            record.groups = groups.to_vec();
        })
        .await
        .inspect(|()| self.user_changed())
    }

    /// Enables or disables a user; a disabled user cannot log in.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`]; store errors.
    pub async fn set_user_disabled(&self, login: &str, disabled: bool) -> Result<(), AuthError> {
        users::update(self.store.as_ref(), login, |record| {
            record.disabled = disabled;
        })
        .await
        .inspect(|()| self.user_changed())
    }

    /// Sets a new password without knowing the current one (admins).
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`]; store errors.
    pub async fn reset_password(&self, login: &str, new_password: &str) -> Result<(), AuthError> {
        let hash = crate::password::hash(new_password);
        users::update(self.store.as_ref(), login, |record| record.hash = hash)
            .await
            .inspect(|()| self.user_changed())
    }

    /// Changes a password given the current one.
    ///
    /// # Errors
    /// [`AuthError::AccessDenied`] when `current_password` is wrong;
    /// [`AuthError::UserNotFound`]; store errors.
    pub async fn change_password(
        &self,
        login: &str,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), AuthError> {
        users::change_password(self.store.as_ref(), login, current_password, new_password)
            .await
            .inspect(|()| self.user_changed())
    }

    /// Deletes a user; its credentials stop working on the next call.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`]; store errors.
    pub async fn delete_user(&self, login: &str) -> Result<(), AuthError> {
        users::delete(self.store.as_ref(), login)
            .await
            .inspect(|()| self.user_changed())
    }

    /// One user's details.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`]; store errors.
    pub async fn user_details(&self, login: &str) -> Result<UserDetails, AuthError> {
        users::details(self.store.as_ref(), login).await
    }

    /// Every user, by login.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_users(&self) -> Result<Vec<UserDetails>, AuthError> {
        users::list(self.store.as_ref()).await
    }
}
