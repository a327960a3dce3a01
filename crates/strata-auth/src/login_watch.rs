//! Ends long calls (subscriptions) of a user who can no longer log in with the credentials
//! the call was opened with: disabled, deleted, password changed, or groups changed.
//!
//! The user's credentials are checked again when this server changes a user (a watch the
//! user-management methods of [`Security`] bump) and every [`LOGIN_RECHECK_INTERVAL`], for
//! changes made by another server sharing the store. A check costs two stream-state lookups
//! while the user is unchanged, one cached or argon2id verification when it changed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cache::UserVersion;
use crate::credentials::Credentials;
use crate::principal::Principal;
use crate::security::Security;

/// How often an open call checks its user again without being told of a change.
pub const LOGIN_RECHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The login behind one long call; see [`Security::watch_login`].
pub struct LoginWatch {
    watched: Option<Watched>,
}

struct Watched {
    security: Arc<Security>,
    credentials: Credentials,
    principal: Principal,
    /// The user's version when its credentials were last found good.
    checked: Option<UserVersion>,
    changes: watch::Receiver<u64>,
}

impl LoginWatch {
    pub(crate) fn new(
        security: &Arc<Security>,
        header: Option<&str>,
        principal: &Principal,
        changes: watch::Receiver<u64>,
    ) -> Self {
        let credentials = header.and_then(|header| Credentials::from_header(header).ok());
        let watched = match credentials {
            Some(credentials) if security.is_enabled() && !principal.is_anonymous() => {
                Some(Watched {
                    security: Arc::clone(security),
                    credentials,
                    principal: principal.clone(),
                    checked: None,
                    changes,
                })
            }
            // Nothing to revoke: security off, or an anonymous caller.
            _ => None,
        };
        Self { watched }
    }

    /// Completes when the call's credentials no longer log in as the same principal (the
    /// user was disabled, deleted, its password or groups changed); never completes when
    /// there is nothing to revoke. Cancel-safe: drop it and call again.
    pub async fn revoked(&mut self) {
        let Some(watched) = self.watched.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            if !watched.still_good().await {
                return;
            }
            tokio::select! {
                changed = watched.changes.changed() => {
                    if changed.is_err() {
                        // The server is going away; its calls end with it.
                        return std::future::pending().await;
                    }
                }
                () = tokio::time::sleep(LOGIN_RECHECK_INTERVAL) => {}
            }
        }
    }
}

impl Watched {
    async fn still_good(&mut self) -> bool {
        let version = match self.security.user_version(&self.credentials.login).await {
            Ok(version) => version,
            // A store that cannot answer now decides nothing; check again later.
            Err(error) => {
                tracing::warn!(%error, "could not check a subscriber's user again");
                return true;
            }
        };
        if self.checked == Some(version) {
            return true;
        }
        match self.security.verify(&self.credentials, version).await {
            Ok(Some(principal)) if principal == self.principal => {
                self.checked = Some(version);
                true
            }
            Ok(_) => {
                tracing::info!(
                    login = %self.credentials.login,
                    "ending a call: its user changed and its credentials no longer log in as it"
                );
                false
            }
            Err(error) => {
                tracing::warn!(%error, "could not check a subscriber's user again");
                true
            }
        }
    }
}
