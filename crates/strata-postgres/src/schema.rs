//! Versioned schema migrations, applied when a store opens.
//!
//! `strata_schema` holds the version of the tables in this schema. Opening applies every
//! migration above it in one transaction under an advisory lock, so nodes starting together
//! migrate once; a version above [`SCHEMA_VERSION`] is refused (a newer binary made it).

use tokio_postgres::Client;

use crate::config::PostgresConfig;
use crate::error::PostgresError;

/// The first advisory-lock key of Strata's locks; the second is the schema's hash.
pub(crate) const LOCK_CLASS_MIGRATION: i32 = 0x5354_5201;
/// The lock the writers of all nodes take to assign positions.
pub(crate) const LOCK_CLASS_WRITE: i32 = 0x5354_5202;
/// The session lock the cluster's leader holds.
pub(crate) const LOCK_CLASS_LEADER: i32 = 0x5354_5203;
/// The session lock a scavenge holds: one at a time per schema, across nodes.
pub(crate) const LOCK_CLASS_SCAVENGE: i32 = 0x5354_5204;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: the log and the stream heads.
    "CREATE TABLE events (
        position BIGINT PRIMARY KEY,
        stream TEXT NOT NULL,
        revision BIGINT NOT NULL,
        event_id UUID NOT NULL,
        event_type TEXT NOT NULL,
        is_json BOOLEAN NOT NULL,
        data BYTEA NOT NULL,
        metadata BYTEA NOT NULL,
        created_nanos BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX events_stream_revision ON events (stream, revision) INCLUDE (event_id);
    CREATE TABLE streams (
        stream TEXT PRIMARY KEY,
        last_revision BIGINT,
        tombstoned BOOLEAN NOT NULL,
        metadata BYTEA
    );",
    // 2: the secondary indexes (`index.rs`), filled from the log as the migration runs.
    crate::index::INDEX_MIGRATION_SQL,
    // 3: cluster membership and the leadership term (`cluster.rs`, docs/CLUSTER.md).
    crate::cluster::CLUSTER_MIGRATION_SQL,
    // 4: event-type and stream-head indexes for filtered `$all` reads (`filtered_reader.rs`).
    crate::filtered_reader::FILTER_INDEX_MIGRATION_SQL,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The only database encoding accepted: any other cannot store every string the contract
/// accepts (a `LATIN1` database refuses most non-Latin names; `SQL_ASCII` checks nothing,
/// so other tools would read the bytes in whatever encoding they guess).
const DATABASE_ENCODING: &str = "UTF8";

/// Creates the schema if needed and brings it to [`SCHEMA_VERSION`].
///
/// # Errors
/// [`PostgresError::UnsupportedEncoding`] for a database that is not UTF-8,
/// [`PostgresError::SchemaTooNew`] when a newer binary migrated the schema; query errors.
pub(crate) async fn migrate(
    client: &mut Client,
    config: &PostgresConfig,
) -> Result<(), PostgresError> {
    check_encoding(client).await?;
    let schema = config.quoted_schema();
    let transaction = client
        .transaction()
        .await
        .map_err(PostgresError::query("starting the migration"))?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS_MIGRATION, &config.schema],
        )
        .await
        .map_err(PostgresError::query("taking the migration lock"))?;
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             SET LOCAL search_path TO {schema};
             CREATE TABLE IF NOT EXISTS strata_schema (
                 singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
                 version INTEGER NOT NULL
             );"
        ))
        .await
        .map_err(PostgresError::query(format!("creating schema {schema}")))?;
    let found: i32 = transaction
        .query_opt("SELECT version FROM strata_schema", &[])
        .await
        .map_err(PostgresError::query("reading the schema version"))?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        // Explicitly, so no lock outlives this call whatever the caller's runtime does next.
        transaction
            .rollback()
            .await
            .map_err(PostgresError::query("ending the migration"))?;
        return Err(PostgresError::SchemaTooNew {
            schema: config.schema.clone(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let version = index as i32 + 1;
        transaction
            .batch_execute(migration)
            .await
            .map_err(PostgresError::query(format!(
                "migrating to version {version}"
            )))?;
        if version == crate::index::INDEX_MIGRATION_VERSION {
            crate::index::backfill(&transaction).await?;
        }
        transaction
            .execute(
                "INSERT INTO strata_schema (version) VALUES ($1)
                 ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
                &[&version],
            )
            .await
            .map_err(PostgresError::query("recording the schema version"))?;
    }
    transaction
        .commit()
        .await
        .map_err(PostgresError::query("committing the migration"))
}

/// Refuses a database whose encoding cannot hold every stream name and event type.
async fn check_encoding(client: &Client) -> Result<(), PostgresError> {
    let row = client
        .query_one(
            "SELECT current_database()::text, current_setting('server_encoding')",
            &[],
        )
        .await
        .map_err(PostgresError::query("reading the database encoding"))?;
    let encoding: String = row.get(1);
    if encoding != DATABASE_ENCODING {
        return Err(PostgresError::UnsupportedEncoding {
            database: row.get(0),
            encoding,
        });
    }
    Ok(())
}

/// Drops `schema` and everything in it (tests and tools clean up with it).
///
/// # Errors
/// [`PostgresError::Unreachable`] and query errors.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), PostgresError> {
    let config = PostgresConfig::new(url).with_schema(schema);
    let client = crate::connect::connect(&config, crate::connect::Role::Migration, None).await?;
    client
        .batch_execute(&format!(
            "SET lock_timeout = '30s'; DROP SCHEMA IF EXISTS {} CASCADE",
            config.quoted_schema()
        ))
        .await
        .map_err(PostgresError::query(format!("dropping schema {schema}")))
}
