//! Users, authentication and stream ACLs: the one module every Strata front end calls.
//!
//! The model is KurrentDB's. Users are events in system streams (`$user-<login>`, `$users`),
//! so they live, replicate and export with the store; passwords are argon2id hashes. A
//! caller is a [`Principal`]: a user whose roles are its login and its groups, or anonymous.
//! Stream ACLs are `$acl` in stream metadata (`$r $w $d $mr $mw`, each a role or a list of
//! roles, `$all` for everyone, `[]` for nobody), with defaults in `$settings`; `$admins`
//! pass every check, `$ops` manage persistent subscriptions and operations.
//!
//! A front end, per request:
//! 1. [`Security::authenticate`] the `authorization` header into a [`Principal`];
//! 2. then either [`Security::authorize`] each stream operation itself, or work through
//!    [`Security::store_for`], an `EventStore` that authorises every call and leaves out
//!    of `$all` reads the events the caller may not read ([`Security::readable_events`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! use std::sync::Arc;
//! use strata_auth::{Credentials, Security, SecurityOptions, StreamOperation};
//! use strata_core::{EventStore, StreamName};
//!
//! let store: Arc<dyn EventStore> =
//!     strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
//! let security = Security::enabled(store, SecurityOptions::default()).await?;
//! let header = Credentials::new("admin", "changeit").to_header();
//! let admin = security.authenticate(Some(&header), None).await?;
//! let secret = StreamName::new("$secret")?;
//! security.authorize(&admin, StreamOperation::Read, &secret).await?;
//! let anonymous = security.authenticate(None, None).await?;
//! assert!(security.authorize(&anonymous, StreamOperation::Read, &secret).await.is_err());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod acl;
mod cache;
mod credentials;
mod error;
mod login_watch;
mod password;
mod principal;
mod secured_store;
mod security;
mod throttle;
mod users;

pub use acl::{DefaultAcls, SETTINGS_EVENT_TYPE, SETTINGS_STREAM, StreamAcl, StreamOperation};
pub use credentials::{AUTHORIZATION_HEADER_BYTES_MAX, Credentials};
pub use error::AuthError;
pub use login_watch::{LOGIN_RECHECK_INTERVAL, LoginWatch};
pub use principal::{ADMINS_ROLE, EVERYONE_ROLE, OPS_ROLE, Principal};
pub use security::{ALL_STREAM, Action, DEFAULT_PASSWORD, Security, SecurityOptions};
pub use users::{
    PASSWORD_CHANGED_EVENT_TYPE, PASSWORD_NOTIFICATIONS_STREAM, USER_CREATED_EVENT_TYPE,
    USER_EVENT_TYPE, USER_UPDATED_EVENT_TYPE, USERS_STREAM, UserDetails, is_security_stream,
};

/// The address a request came from, put into request extensions by the server so failed
/// logins can be slowed down per address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceAddress(pub std::net::IpAddr);

/// Verifies `password` against an argon2id hash made for it, for benchmarks: what one
/// uncached login costs.
#[doc(hidden)]
pub fn bench_argon2id_verify(password: &str, phc: &str) -> bool {
    password::verify(password, phc)
}

/// An argon2id hash of `password`, for benchmarks.
#[doc(hidden)]
pub fn bench_argon2id_hash(password: &str) -> String {
    password::hash(password)
}
