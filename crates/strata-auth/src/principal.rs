//! Who is calling: a user with its roles, or nobody.

use std::sync::{Arc, LazyLock};

/// The role of administrators: they pass every ACL and manage users.
pub const ADMINS_ROLE: &str = "$admins";
/// The role of operators: operations and persistent subscriptions, not users.
pub const OPS_ROLE: &str = "$ops";
/// The pseudo-role every caller has in an ACL.
pub const EVERYONE_ROLE: &str = "$all";

/// An authenticated user (its roles are its login and its groups), or the anonymous caller.
///
/// Shared, so a clone costs no allocation: every call with security off is the system
/// principal, made once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(Arc<Identity>);

#[derive(Debug, PartialEq, Eq)]
struct Identity {
    login: Option<String>,
    roles: Vec<String>,
}

static SYSTEM: LazyLock<Principal> = LazyLock::new(|| {
    Principal::new(
        Some("$system".to_owned()),
        vec!["$system".to_owned(), ADMINS_ROLE.to_owned()],
    )
});

static ANONYMOUS: LazyLock<Principal> = LazyLock::new(|| Principal::new(None, Vec::new()));

impl Principal {
    fn new(login: Option<String>, roles: Vec<String>) -> Self {
        Self(Arc::new(Identity { login, roles }))
    }

    /// A caller without credentials.
    pub fn anonymous() -> Self {
        ANONYMOUS.clone()
    }

    /// A user with `login` in `groups`; its roles are the login plus the groups.
    pub fn user(login: impl Into<String>, groups: &[String]) -> Self {
        let login = login.into();
        let mut roles = vec![login.clone()];
        roles.extend(groups.iter().filter(|group| **group != login).cloned());
        Self::new(Some(login), roles)
    }

    /// The server itself, and every caller when security is off: allowed everything.
    pub fn system() -> Self {
        SYSTEM.clone()
    }

    pub fn login(&self) -> Option<&str> {
        self.0.login.as_deref()
    }

    pub fn roles(&self) -> &[String] {
        &self.0.roles
    }

    pub fn is_anonymous(&self) -> bool {
        self.0.login.is_none()
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(ADMINS_ROLE)
    }

    /// Admins or operators.
    pub fn is_operator(&self) -> bool {
        self.is_admin() || self.has_role(OPS_ROLE)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.iter().any(|held| held == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_and_anonymous_principals_are_made_once() {
        assert!(Arc::ptr_eq(&Principal::system().0, &Principal::system().0));
        assert!(Arc::ptr_eq(
            &Principal::anonymous().0,
            &Principal::anonymous().0
        ));
        assert_eq!(Principal::system().login(), Some("$system"));
        assert!(Principal::system().is_admin());
        assert!(Principal::anonymous().is_anonymous());
        assert!(Principal::anonymous().roles().is_empty());
    }

    #[test]
    fn a_user_holds_its_login_and_its_groups_once() {
        let user = Principal::user("ada", &["ops".to_owned(), "ada".to_owned()]);
        assert_eq!(user.roles(), ["ada".to_owned(), "ops".to_owned()]);
        assert_eq!(user, Principal::user("ada", &["ops".to_owned()]));
    }
}
