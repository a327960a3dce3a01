//! How to reach the database and how the store uses it.

use std::time::Duration;

use strata_core::Clock;

use crate::error::PostgresError;

/// Longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const SCHEMA_NAME_BYTES_MAX: usize = 63;

/// Where the store lives and how it talks to PostgreSQL.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (libpq URL syntax).
    pub url: String,
    /// The schema holding Strata's tables; created on open when absent.
    pub schema: String,
    /// Connections shared by readers (each pipelines concurrent queries).
    pub reader_connections: usize,
    /// Most events one group commit carries; a larger single append goes alone.
    pub group_events_max: usize,
    /// Most payload bytes one group commit carries; a larger single append goes alone.
    pub group_bytes_max: usize,
    /// Appends waiting for the writer, at most; appenders wait beyond that.
    pub queued_appends_max: usize,
    /// How often the end of the log is polled, in case a notification was missed.
    pub poll_interval: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Where the store takes the time from: events' `created` stamps and the "now" of
    /// `$maxAge` (the system clock unless tests move a `ManualClock`).
    pub clock: Clock,
}

impl PostgresConfig {
    /// Defaults for `url`, in schema `public`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "public".to_owned(),
            reader_connections: 4,
            group_events_max: 20_000,
            group_bytes_max: 32 * 1024 * 1024,
            queued_appends_max: 4_096,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            clock: Clock::system(),
        }
    }

    /// The same, in `schema`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Checks the URL and the schema name.
    ///
    /// # Errors
    /// [`PostgresError::InvalidUrl`] or [`PostgresError::InvalidSchema`].
    pub fn validate(&self) -> Result<tokio_postgres::Config, PostgresError> {
        let invalid_schema = |reason: &str| PostgresError::InvalidSchema {
            schema: self.schema.clone(),
            reason: reason.to_owned(),
        };
        if self.schema.is_empty() {
            return Err(invalid_schema("it is empty"));
        }
        if self.schema.len() > SCHEMA_NAME_BYTES_MAX {
            return Err(invalid_schema("it is longer than 63 bytes"));
        }
        if self.schema.contains('\0') {
            return Err(invalid_schema("it contains a NUL character"));
        }
        let mut parsed: tokio_postgres::Config =
            self.url
                .parse()
                .map_err(|error: tokio_postgres::Error| PostgresError::InvalidUrl {
                    reason: error.to_string(),
                })?;
        if parsed.get_hosts().is_empty() {
            return Err(PostgresError::InvalidUrl {
                reason: "it names no host".to_owned(),
            });
        }
        parsed.connect_timeout(self.connect_timeout);
        parsed.application_name("strata");
        Ok(parsed)
    }

    /// `schema` as a quoted SQL identifier.
    pub(crate) fn quoted_schema(&self) -> String {
        format!("\"{}\"", self.schema.replace('"', "\"\""))
    }

    /// The notification channel of this schema's log end, within PostgreSQL's 63 bytes
    /// (two long schemas sharing a channel only wake each other's listeners needlessly).
    pub(crate) fn channel(&self) -> String {
        let mut channel = format!("strata:{}", self.schema);
        while channel.len() > SCHEMA_NAME_BYTES_MAX {
            channel.pop();
        }
        channel
    }
}

/// Host, port and database of a connection, for messages (never the password).
pub(crate) fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "?".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("(default database)");
    format!("{host}:{port}/{database}")
}
