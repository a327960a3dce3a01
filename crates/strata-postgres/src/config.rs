//! How to reach the database and how the store uses it.

use std::time::Duration;

use strata_core::Clock;

use crate::error::PostgresError;

/// Longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const SCHEMA_NAME_BYTES_MAX: usize = 63;

/// Longest `application_name` this store accepts: PostgreSQL keeps 63 bytes, and each
/// session appends its role (" listener" is the longest).
const APPLICATION_NAME_BYTES_MAX: usize = 48;

/// Bytes of appends waiting for the writer, at most, by default; appenders wait beyond
/// that (as the embedded engine does). Above the 256 MiB append limit, so any valid
/// append fits.
pub const QUEUED_APPEND_BYTES_DEFAULT: usize = 1024 * 1024 * 1024;

/// Positions one `$all` read looks at, at most, by default, matching the filter or not.
pub const READ_ALL_EXAMINED_EVENTS_DEFAULT: u64 = 16_384;

/// Bytes of event data and metadata one `$all` read returns, at most, by default (an
/// event larger than that still comes alone).
pub const READ_ALL_PAGE_BYTES_DEFAULT: usize = 32 * 1024 * 1024;

/// Where the store lives and how it talks to PostgreSQL.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (libpq URL syntax).
    pub url: String,
    /// The schema holding Strata's tables; created on open when absent.
    pub schema: String,
    /// Names this node's sessions in `pg_stat_activity`: each session's `application_name`
    /// is this followed by its role (`writer`, `reader`, `listener`, `migration`).
    pub application_name: String,
    /// Connections shared by readers (each pipelines concurrent queries).
    pub reader_connections: usize,
    /// Most events one group commit carries; a larger single append goes alone.
    pub group_events_max: usize,
    /// Most payload bytes one group commit carries; a larger single append goes alone.
    pub group_bytes_max: usize,
    /// Appends waiting for the writer, at most; appenders wait beyond that.
    pub queued_appends_max: usize,
    /// Bytes of appends (payload plus a fixed overhead per event) waiting for the writer,
    /// at most; appenders wait beyond that.
    pub queued_append_bytes_max: usize,
    /// How long one group commit or one read may take before the node gives up on its
    /// connection and opens another. PostgreSQL ends statements of Strata's sessions
    /// after twice this (`statement_timeout`), in case the node cannot.
    pub statement_timeout: Duration,
    /// How long a session may sit idle inside a transaction before PostgreSQL ends it
    /// (`idle_in_transaction_session_timeout`): a hung node cannot keep the write lock.
    pub idle_in_transaction_timeout: Duration,
    /// Positions one `$all` read looks at, at most: a filter that matches nothing costs
    /// each call this much, and the caller gets a checkpoint.
    pub read_all_examined_events_max: u64,
    /// Bytes of data and metadata one `$all` read returns, at most.
    pub read_all_page_bytes_max: usize,
    /// Serve `$all` reads with an ordinary filter (event-type prefixes or regex,
    /// stream-name prefixes) from the event-type and stream-head indexes when the filter
    /// selects a small share of the log (docs/INDEXES.md); off, every such read scans
    /// windows of the log.
    pub read_all_filters_from_indexes: bool,
    /// A filter is served from the indexes only when its keys hold at most
    /// 1 / this of the log's events. Tests lower it to serve every filter.
    pub(crate) filter_index_share_divisor: u64,
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
            application_name: "strata".to_owned(),
            reader_connections: 4,
            group_events_max: 20_000,
            group_bytes_max: 32 * 1024 * 1024,
            queued_appends_max: 4_096,
            queued_append_bytes_max: QUEUED_APPEND_BYTES_DEFAULT,
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(10),
            read_all_examined_events_max: READ_ALL_EXAMINED_EVENTS_DEFAULT,
            read_all_page_bytes_max: READ_ALL_PAGE_BYTES_DEFAULT,
            read_all_filters_from_indexes: true,
            filter_index_share_divisor: crate::filtered_reader::SHARE_DIVISOR_DEFAULT,
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

    /// Checks the URL, the schema name, the application name and the limits.
    ///
    /// # Errors
    /// [`PostgresError::InvalidUrl`], [`PostgresError::InvalidSchema`] or
    /// [`PostgresError::InvalidConfig`].
    pub fn validate(&self) -> Result<tokio_postgres::Config, PostgresError> {
        self.validate_schema()?;
        self.validate_settings()?;
        let parsed: tokio_postgres::Config =
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
        Ok(parsed)
    }

    fn validate_schema(&self) -> Result<(), PostgresError> {
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
        Ok(())
    }

    fn validate_settings(&self) -> Result<(), PostgresError> {
        let invalid = |reason: String| Err(PostgresError::InvalidConfig { reason });
        let name = &self.application_name;
        if name.is_empty()
            || name.len() > APPLICATION_NAME_BYTES_MAX
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_graphic() || byte == b' ')
        {
            return invalid(format!(
                "application name {name:?} must be 1 to {APPLICATION_NAME_BYTES_MAX} printable \
                 ASCII characters"
            ));
        }
        let zero = [
            ("reader_connections", self.reader_connections == 0),
            ("group_events_max", self.group_events_max == 0),
            ("queued_appends_max", self.queued_appends_max == 0),
            ("queued_append_bytes_max", self.queued_append_bytes_max == 0),
            ("statement_timeout", self.statement_timeout.is_zero()),
            (
                "idle_in_transaction_timeout",
                self.idle_in_transaction_timeout.is_zero(),
            ),
            (
                "read_all_examined_events_max",
                self.read_all_examined_events_max == 0,
            ),
            ("read_all_page_bytes_max", self.read_all_page_bytes_max == 0),
        ];
        if let Some((field, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return invalid(format!("{field} must be above zero"));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_name_that_postgresql_would_mangle_is_refused() {
        for name in [
            "",
            "nœud",
            "tab\there",
            &"n".repeat(APPLICATION_NAME_BYTES_MAX + 1),
        ] {
            let mut config = PostgresConfig::new("postgres://h/db");
            config.application_name = name.to_owned();
            assert!(
                matches!(config.validate(), Err(PostgresError::InvalidConfig { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn zero_limits_and_timeouts_are_refused() {
        let mut config = PostgresConfig::new("postgres://h/db");
        config.statement_timeout = Duration::ZERO;
        let error = config.validate().expect_err("a zero timeout is refused");
        assert!(error.to_string().contains("statement_timeout"), "{error}");
        let mut config = PostgresConfig::new("postgres://h/db");
        config.queued_append_bytes_max = 0;
        assert!(config.validate().is_err());
    }
}
