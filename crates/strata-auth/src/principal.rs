//! Who is calling: a user with its roles, or nobody.

/// The role of administrators: they pass every ACL and manage users.
pub const ADMINS_ROLE: &str = "$admins";
/// The role of operators: operations and persistent subscriptions, not users.
pub const OPS_ROLE: &str = "$ops";
/// The pseudo-role every caller has in an ACL.
pub const EVERYONE_ROLE: &str = "$all";

/// An authenticated user (its roles are its login and its groups), or the anonymous caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    login: Option<String>,
    roles: Vec<String>,
}

impl Principal {
    /// A caller without credentials.
    pub fn anonymous() -> Self {
        Self {
            login: None,
            roles: Vec::new(),
        }
    }

    /// A user with `login` in `groups`; its roles are the login plus the groups.
    pub fn user(login: impl Into<String>, groups: &[String]) -> Self {
        let login = login.into();
        let mut roles = vec![login.clone()];
        roles.extend(groups.iter().filter(|group| **group != login).cloned());
        Self {
            login: Some(login),
            roles,
        }
    }

    /// The server itself, and every caller when security is off: allowed everything.
    pub fn system() -> Self {
        Self {
            login: Some("$system".to_owned()),
            roles: vec!["$system".to_owned(), ADMINS_ROLE.to_owned()],
        }
    }

    pub fn login(&self) -> Option<&str> {
        self.login.as_deref()
    }

    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn is_anonymous(&self) -> bool {
        self.login.is_none()
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(ADMINS_ROLE)
    }

    /// Admins or operators.
    pub fn is_operator(&self) -> bool {
        self.is_admin() || self.has_role(OPS_ROLE)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}
