//! Strata's PostgreSQL backend: the [`strata_core::EventStore`] contract in one schema of a
//! PostgreSQL database, shared by any number of Strata nodes.
//!
//! `$all` positions are gapless and strictly increasing in commit order, across nodes: each
//! node runs one group-commit writer that takes the schema's transaction-scoped advisory
//! lock, gives a whole batch of appends the next positions, inserts them with one
//! statement and commits. A catch-up subscriber therefore never passes a position that a
//! later commit could still fill. Live subscribers are woken by LISTEN/NOTIFY, with a poll
//! as a fallback. The design, and the numbers behind it, are in `docs/POSTGRES.md`.
//!
//! Dependencies: `tokio-postgres` (the asynchronous client; its `Client` pipelines the
//! queries of concurrent tasks over one connection, so readers share a few connections
//! round-robin and no pool crate such as deadpool is needed), `uuid` (event ids as
//! PostgreSQL `uuid`), `futures` (pipelining several statements), `parking_lot`.
//!
//! ```no_run
//! use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
//! use strata_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PostgresConfig::new("postgres://postgres@127.0.0.1:5432/test").with_schema("shop");
//! let store = PostgresStore::open(config).await?;
//! let stream = StreamName::new("order-42")?;
//! let event = ProposedEvent::json("OrderPlaced", r#"{"total":10}"#);
//! store.append(&stream, ExpectedRevision::NoStream, vec![event]).await?;
//! store.close().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod cluster;
mod commit;
mod config;
mod connect;
mod error;
mod filtered_reader;
mod index;
mod listener;
mod observe;
mod plan;
mod read_all;
mod reader;
mod scavenge;
mod schema;
mod store;
#[cfg(test)]
mod test_schema;
mod writer;

pub use cluster::{
    ClusterOptions, ClusterStatus, HEARTBEAT_INTERVAL_DEFAULT, LEASE_DEFAULT, PostgresCluster,
    cluster_status, request_resignation,
};
pub use config::{
    PostgresConfig, QUEUED_APPEND_BYTES_DEFAULT, READ_ALL_EXAMINED_EVENTS_DEFAULT,
    READ_ALL_PAGE_BYTES_DEFAULT,
};
pub use error::PostgresError;
pub use observe::{CommitObserver, GroupCommit};
pub use scavenge::{PostgresScavenge, SCAVENGE_BATCH_ROWS_DEFAULT, Vacuum};
pub use schema::{SCHEMA_VERSION, drop_schema};
pub use store::PostgresStore;
