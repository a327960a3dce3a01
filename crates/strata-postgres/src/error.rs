//! The errors of opening a PostgreSQL store, and how query failures reach the contract.

/// Why a [`crate::PostgresStore`] could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    #[error("invalid PostgreSQL URL: {reason}; expected postgres://USER@HOST[:PORT]/DATABASE")]
    InvalidUrl { reason: String },

    #[error("invalid schema name {schema:?}: {reason}")]
    InvalidSchema { schema: String, reason: String },

    #[error("invalid PostgreSQL store configuration: {reason}")]
    InvalidConfig { reason: String },

    #[error(
        "cannot connect to PostgreSQL at {target} ({detail}); check that the server runs, \
         accepts TCP connections and that the URL (user, database) is right"
    )]
    Unreachable { target: String, detail: String },

    #[error(
        "the database schema {schema:?} is at version {found}, newer than this strata binary \
         understands (up to {supported}); run a newer strata, or use another --store-schema"
    )]
    SchemaTooNew {
        schema: String,
        found: i32,
        supported: i32,
    },

    #[error(
        "database {database:?} uses encoding {encoding}, which cannot store every name and \
         event type Strata accepts; use a database created with ENCODING 'UTF8' \
         (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
    )]
    UnsupportedEncoding { database: String, encoding: String },

    #[error("PostgreSQL failed while {context}: {detail}")]
    Query { context: String, detail: String },
}

/// The error with its causes (tokio-postgres keeps the interesting part in the cause).
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

impl PostgresError {
    pub(crate) fn query(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| PostgresError::Query {
            context,
            detail: describe(&source),
        }
    }
}

impl From<PostgresError> for strata_core::Error {
    fn from(error: PostgresError) -> Self {
        strata_core::Error::io("using PostgreSQL", std::io::Error::other(error.to_string()))
    }
}

/// Maps a failed query onto the contract's I/O error, saying what the store was doing.
pub(crate) fn query_failed(
    context: &str,
) -> impl FnOnce(tokio_postgres::Error) -> strata_core::Error {
    let context = context.to_owned();
    move |source| {
        strata_core::Error::io(
            format!("{context} in PostgreSQL"),
            std::io::Error::other(describe(&source)),
        )
    }
}
