//! Verified credentials, so a hot connection does not pay an argon2id hash per call.
//!
//! An entry holds a SHA-256 of the login and password (never the password), the principal,
//! and the states of the user's stream and of `$users-password-notifications` when it was
//! verified; it is used only while both streams are unchanged, so any change to the user
//! (password, groups, disable, delete) invalidates it on the next call.

use std::collections::HashMap;

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use strata_core::StreamState;
use subtle::ConstantTimeEq as _;

use crate::credentials::Credentials;
use crate::principal::Principal;

/// Entries kept at most; the cache starts over when full.
pub(crate) const CACHED_CREDENTIALS_MAX: usize = 10_000;

/// The streams whose states an entry depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UserVersion {
    pub(crate) user_stream: StreamState,
    pub(crate) notifications: StreamState,
}

struct Entry {
    key: [u8; 32],
    principal: Principal,
    version: UserVersion,
}

#[derive(Default)]
pub(crate) struct CredentialCache {
    entries: Mutex<HashMap<String, Entry>>,
}

fn key(credentials: &Credentials) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(credentials.login.as_bytes());
    hasher.update([0]);
    hasher.update(credentials.password.as_bytes());
    hasher.finalize().into()
}

impl CredentialCache {
    /// The principal verified for these credentials when the user was at `version`.
    pub(crate) fn get(&self, credentials: &Credentials, version: UserVersion) -> Option<Principal> {
        let wanted = key(credentials);
        let entries = self.entries.lock();
        let entry = entries.get(&credentials.login)?;
        let same_key: bool = entry.key.ct_eq(&wanted).into();
        (same_key && entry.version == version).then(|| entry.principal.clone())
    }

    pub(crate) fn insert(
        &self,
        credentials: &Credentials,
        principal: Principal,
        version: UserVersion,
    ) {
        let mut entries = self.entries.lock();
        if entries.len() >= CACHED_CREDENTIALS_MAX && !entries.contains_key(&credentials.login) {
            entries.clear();
        }
        entries.insert(
            credentials.login.clone(),
            Entry {
                key: key(credentials),
                principal,
                version,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use strata_core::Revision;

    use super::*;

    #[test]
    fn an_entry_is_used_only_for_the_same_password_and_version() {
        let cache = CredentialCache::default();
        let version = UserVersion {
            user_stream: StreamState::At(Revision(0)),
            notifications: StreamState::NoStream,
        };
        let right = Credentials::new("ada", "pw");
        cache.insert(&right, Principal::user("ada", &[]), version);
        assert!(cache.get(&right, version).is_some());
        assert!(cache.get(&Credentials::new("ada", "pW"), version).is_none());
        let changed = UserVersion {
            notifications: StreamState::At(Revision(0)),
            ..version
        };
        assert!(cache.get(&right, changed).is_none());
    }
}
