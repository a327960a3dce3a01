//! The `authorization` header: `Basic base64(login:password)`.

use base64::Engine as _;

use crate::error::AuthError;

/// Bytes of an `authorization` header we look at, at most; a longer one is refused unread.
pub const AUTHORIZATION_HEADER_BYTES_MAX: usize = 8 * 1024;

/// A login and a password as a caller presented them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub login: String,
    pub password: String,
}

impl Credentials {
    pub fn new(login: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            login: login.into(),
            password: password.into(),
        }
    }

    /// Parses the value of an `authorization` header.
    ///
    /// # Errors
    /// [`AuthError::BadHeader`] when the header is too long, its scheme is not `Basic`, or
    /// its payload is not base64 of UTF-8 `login:password` with a non-empty login.
    pub fn from_header(value: &str) -> Result<Self, AuthError> {
        if value.len() > AUTHORIZATION_HEADER_BYTES_MAX {
            return Err(AuthError::BadHeader {
                reason: format!(
                    "the authorization header is over {AUTHORIZATION_HEADER_BYTES_MAX} bytes"
                ),
            });
        }
        let (scheme, payload) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::BadHeader {
                reason: "unsupported authorization scheme (only Basic is accepted)".to_owned(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|_| AuthError::BadHeader {
                reason: "the Basic credentials are not valid base64".to_owned(),
            })?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::BadHeader {
            reason: "the Basic credentials are not UTF-8".to_owned(),
        })?;
        let Some((login, password)) = text.split_once(':') else {
            return Err(AuthError::BadHeader {
                reason: "the Basic credentials have no ':' between login and password".to_owned(),
            });
        };
        if login.is_empty() {
            return Err(AuthError::BadHeader {
                reason: "the Basic credentials have an empty login".to_owned(),
            });
        }
        Ok(Self::new(login, password))
    }

    /// The header value a client sends for these credentials.
    pub fn to_header(&self) -> String {
        let payload = format!("{}:{}", self.login, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(payload)
        )
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"<hidden>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_header_round_trips() {
        let credentials = Credentials::new("ada", "p:ss wörd");
        let parsed = Credentials::from_header(&credentials.to_header()).expect("parses");
        assert_eq!(parsed, credentials);
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        for header in [
            "Bearer abc",
            "Basic !!!",
            "Basic YWRh",     // "ada": no colon
            "Basic OnBhc3M=", // ":pass": empty login
            "Basic",
            "",
        ] {
            let error = Credentials::from_header(header).expect_err(header);
            assert!(matches!(error, AuthError::BadHeader { .. }), "{header}");
        }
        let huge = format!("Basic {}", "A".repeat(AUTHORIZATION_HEADER_BYTES_MAX));
        assert!(matches!(
            Credentials::from_header(&huge),
            Err(AuthError::BadHeader { .. })
        ));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("ada", "secret"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
