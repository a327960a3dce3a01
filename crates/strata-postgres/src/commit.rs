//! One group commit on the writer's connection: lock, read heads, plan, insert (events,
//! heads, index entries), notify, commit, in two pipelined round trips (three when a
//! re-send check needs stored events); and the check that settles a group whose
//! connection broke with its commit in flight.

use std::collections::HashMap;

use bytes::Bytes;
use strata_core::{EventId, StreamName};
use tokio_postgres::error::Severity;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::config::PostgresConfig;
use crate::connect::{Role, connect};
use crate::error::{PostgresError, describe};
use crate::index::{Entries, INSERT_ENTRIES_SQL};
use crate::plan::{
    Group, Head, Operation, Outcome, RESEND_WINDOW_EVENTS, RevisionRange, streams_needed,
    weak_resend_candidates,
};
use crate::reader::{to_i64, to_u64};
use crate::schema::LOCK_CLASS_WRITE;

const HEADS_SQL: &str = "SELECT stream, last_revision, tombstoned, metadata FROM streams
     WHERE stream = ANY($1::text[])";
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";
const LAST_POSITION_SQL: &str = "SELECT COALESCE(max(position), 0) FROM events";
// LATERAL: one index range scan per wanted stream, whatever the planner guesses of unnest.
const RANGES_SQL: &str = "SELECT e.stream, e.revision, e.event_id, e.position
     FROM unnest($1::text[], $2::int8[], $3::int8[]) AS q(stream, first_revision, last_revision)
     CROSS JOIN LATERAL (SELECT stream, revision, event_id, position FROM events
         WHERE stream = q.stream AND revision BETWEEN q.first_revision AND q.last_revision) e";
const FIRST_IDS_SQL: &str = "SELECT e.stream, e.revision, e.event_id, e.position
     FROM unnest($1::text[], $2::uuid[]) AS q(stream, event_id)
     CROSS JOIN LATERAL (SELECT last_revision FROM streams WHERE stream = q.stream) s
     CROSS JOIN LATERAL (SELECT stream, revision, event_id, position FROM events
         WHERE stream = q.stream AND revision >= s.last_revision - $3
             AND event_id = q.event_id) e";
const INSERT_SQL: &str = "INSERT INTO events
     (position, stream, revision, event_id, event_type, is_json, data, metadata, created_nanos)
     SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::uuid[], $5::text[],
         $6::bool[], $7::bytea[], $8::bytea[], $9::int8[])";
const UPSERT_HEADS_SQL: &str = "INSERT INTO streams (stream, last_revision, tombstoned, metadata)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::bool[], $4::bytea[])
     ON CONFLICT (stream) DO UPDATE SET last_revision = EXCLUDED.last_revision,
         tombstoned = EXCLUDED.tombstoned, metadata = EXCLUDED.metadata";
const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";
/// `backend_start` in microseconds: with the pid, names one session even if the pid is
/// reused after it ended.
const THIS_BACKEND_SQL: &str = "SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8
     FROM pg_stat_activity WHERE pid = pg_backend_pid()";
const TERMINATE_SQL: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE pid = $1 AND (extract(epoch FROM backend_start) * 1000000)::int8 = $2";
/// The first stored event after `$2` carrying tag `$1`, every tag of `$3` and, unless
/// `$4` is empty, one of the types `$4` (a DCB query item led by its first tag).
const TAGGED_CONFLICT_SQL: &str = "SELECT d.position FROM index_entries d
     WHERE d.kind = 6 AND d.key = $1 AND d.position > $2
         AND (SELECT count(*) FROM index_entries o
              WHERE o.kind = 6 AND o.key = ANY($3) AND o.position = d.position)
             = cardinality($3::text[])
         AND (cardinality($4::text[]) = 0 OR EXISTS (SELECT 1 FROM index_entries t
              WHERE t.kind = 2 AND t.key = ANY($4) AND t.position = d.position))
     ORDER BY d.position LIMIT 1";
/// The first stored event after `$2` of one of the types `$1` (a DCB item without tags).
const TYPED_CONFLICT_SQL: &str = "SELECT position FROM index_entries
     WHERE kind = 2 AND key = ANY($1) AND position > $2 ORDER BY position LIMIT 1";
const EVENT_AT_SQL: &str = "SELECT event_id, created_nanos FROM events WHERE position = $1";

/// One PostgreSQL session, as `pg_stat_activity` knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backend {
    pid: i32,
    started_micros: i64,
}

/// The writer's connection with its statements prepared.
pub(crate) struct Connection {
    pub(crate) client: Client,
    statements: Statements,
    pub(crate) backend: Backend,
}

struct Statements {
    heads: Statement,
    lock: Statement,
    last_position: Statement,
    ranges: Statement,
    first_ids: Statement,
    insert: Statement,
    upsert_heads: Statement,
    insert_entries: Statement,
    notify: Statement,
    terminate: Statement,
    event_at: Statement,
    tagged_conflict: Statement,
    typed_conflict: Statement,
}

impl Connection {
    /// Connects and prepares the statements, within the connect and statement timeouts.
    pub(crate) async fn open(config: &PostgresConfig) -> Result<Self, PostgresError> {
        let client = connect(config, Role::Writer, None).await?;
        let preparing = Self::prepare(client);
        tokio::time::timeout(config.statement_timeout, preparing)
            .await
            .map_err(|_| PostgresError::Query {
                context: "preparing the writer's statements".to_owned(),
                detail: format!("no answer within {:?}", config.statement_timeout),
            })?
    }

    async fn prepare(client: Client) -> Result<Self, PostgresError> {
        let prepare = |sql: &'static str| {
            let client = &client;
            async move {
                client
                    .prepare(sql)
                    .await
                    .map_err(PostgresError::query("preparing the writer's statements"))
            }
        };
        let (heads, lock, last_position, ranges, first_ids) = futures::try_join!(
            prepare(HEADS_SQL),
            prepare(LOCK_SQL),
            prepare(LAST_POSITION_SQL),
            prepare(RANGES_SQL),
            prepare(FIRST_IDS_SQL),
        )?;
        let (insert, upsert_heads, insert_entries, notify, terminate, event_at) = futures::try_join!(
            prepare(INSERT_SQL),
            prepare(UPSERT_HEADS_SQL),
            prepare(INSERT_ENTRIES_SQL),
            prepare(NOTIFY_SQL),
            prepare(TERMINATE_SQL),
            prepare(EVENT_AT_SQL),
        )?;
        let (tagged_conflict, typed_conflict) =
            futures::try_join!(prepare(TAGGED_CONFLICT_SQL), prepare(TYPED_CONFLICT_SQL),)?;
        let row = client
            .query_one(THIS_BACKEND_SQL, &[])
            .await
            .map_err(PostgresError::query("identifying the writer's session"))?;
        let backend = Backend {
            pid: row.get(0),
            started_micros: row.get(1),
        };
        Ok(Self {
            client,
            statements: Statements {
                heads,
                lock,
                last_position,
                ranges,
                first_ids,
                insert,
                upsert_heads,
                insert_entries,
                notify,
                terminate,
                event_at,
                tagged_conflict,
                typed_conflict,
            },
            backend,
        })
    }
}

/// The first event a group writes and its last position: enough to tell later whether
/// the group was committed (`created_nanos` is the group's own clock reading).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Written {
    first_position: u64,
    first_id: EventId,
    created_nanos: i64,
    pub(crate) last_position: u64,
}

/// What a group came to, planned under the write lock.
pub(crate) struct Planned {
    pub(crate) outcomes: Vec<Outcome>,
    /// `None` when the group writes nothing (every request failed its check or was a
    /// re-send): its outcomes then stand whatever becomes of its COMMIT.
    pub(crate) written: Option<Written>,
}

/// Why a group transaction did not commit.
pub(crate) enum TransactionError {
    /// PostgreSQL refused a value the group writes (a data, constraint or size error of
    /// the INSERT or of the head upsert): nothing was committed, and the same group
    /// without the request carrying the value may commit.
    Refused(tokio_postgres::Error),
    /// A live connection answered with an error: the transaction is aborted, nothing was
    /// committed.
    Failed(strata_core::Error),
    /// The connection broke. If the group was planned, its COMMIT may have reached the
    /// server: [`was_committed`] tells.
    Broken(strata_core::Error),
}

/// Runs one group transaction. `planned` is filled just before the statements that
/// write and commit are sent, so a caller that gives up on the connection knows whether
/// a COMMIT may be in flight.
pub(crate) async fn run(
    connection: &Connection,
    config: &PostgresConfig,
    operations: &[Operation],
    planned: &mut Option<Planned>,
) -> Result<(), TransactionError> {
    let Connection {
        client, statements, ..
    } = connection;
    let mut group = lock_and_read_heads(client, statements, config, operations).await?;
    let mut ranges = group.ranges_for_checks(operations);
    ranges.extend(group.follow_up(operations));
    if !ranges.is_empty() {
        fetch_ranges(client, statements, &mut group, &ranges).await?;
    }
    let mut stored_conflicts = Vec::with_capacity(operations.len());
    for operation in operations {
        stored_conflicts.push(stored_conflict(client, statements, operation).await?);
    }
    let outcomes: Vec<Outcome> = operations
        .iter()
        .zip(stored_conflicts)
        .map(|(operation, stored)| group.plan_checked(operation, stored))
        .collect();
    let written = group
        .events
        .first()
        .zip(group.last_position())
        .map(|(first, last_position)| Written {
            first_position: first.position,
            first_id: first.id,
            created_nanos: first.created_nanos,
            last_position,
        });
    *planned = Some(Planned { outcomes, written });
    if written.is_some() {
        write_and_commit(client, statements, config, &group).await
    } else {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|error| classify(client, error, "ending a group that wrote nothing"))
    }
}

/// For a conditional append, the first stored event after its position that matches its
/// query, looked up in `index_entries` (one probe per query item) while the group holds the
/// write lock: every event committed before is seen, none can commit until this group ends.
async fn stored_conflict(
    client: &Client,
    statements: &Statements,
    operation: &Operation,
) -> Result<Option<u64>, TransactionError> {
    let Operation::AppendMulti {
        condition: Some(condition),
        ..
    } = operation
    else {
        return Ok(None);
    };
    let after: i64 = condition.after.map_or(-1, |after| to_i64(after.0));
    let mut first: Option<u64> = None;
    for item in &condition.query.items {
        let rows = match item.tags.split_first() {
            Some((leading, others)) => {
                let parameters: [&(dyn ToSql + Sync); 4] = [leading, &after, &others, &item.types];
                client.query(&statements.tagged_conflict, &parameters).await
            }
            None => {
                let parameters: [&(dyn ToSql + Sync); 2] = [&item.types, &after];
                client.query(&statements.typed_conflict, &parameters).await
            }
        }
        .map_err(|error| classify(client, error, "checking an append condition"))?;
        if let Some(row) = rows.first() {
            let position = to_u64(row.get(0));
            first = Some(first.map_or(position, |earlier| earlier.min(position)));
        }
    }
    Ok(first)
}

/// BEGIN, the write lock, the log end, the heads and the ids of possible re-sends, in one
/// round trip; each statement takes its snapshot once the lock is held.
async fn lock_and_read_heads(
    client: &Client,
    statements: &Statements,
    config: &PostgresConfig,
    operations: &[Operation],
) -> Result<Group, TransactionError> {
    let streams = streams_needed(operations);
    let names: Vec<&str> = streams.iter().map(StreamName::as_str).collect();
    let candidates = weak_resend_candidates(operations);
    let candidate_streams: Vec<&str> = candidates.iter().map(|(s, _)| s.as_str()).collect();
    let candidate_ids: Vec<uuid::Uuid> = candidates.iter().map(|(_, id)| id.0).collect();
    let window = to_i64(RESEND_WINDOW_EVENTS);
    let lock_parameters: [&(dyn ToSql + Sync); 2] = [&LOCK_CLASS_WRITE, &config.schema];
    let heads_parameters: [&(dyn ToSql + Sync); 1] = [&names];
    let first_ids_parameters: [&(dyn ToSql + Sync); 3] =
        [&candidate_streams, &candidate_ids, &window];
    let (begun, locked, last, heads, first_ids) = futures::join!(
        client.batch_execute("BEGIN"),
        client.execute(&statements.lock, &lock_parameters),
        client.query_one(&statements.last_position, &[]),
        client.query(&statements.heads, &heads_parameters),
        async {
            if candidates.is_empty() {
                Ok(Vec::new())
            } else {
                client
                    .query(&statements.first_ids, &first_ids_parameters)
                    .await
            }
        },
    );
    let failed = |context: &'static str| move |error| classify(client, error, context);
    begun.map_err(failed("starting a group commit"))?;
    locked.map_err(failed("taking the write lock"))?;
    let last: i64 = last.map_err(failed("reading the end of the log"))?.get(0);
    let heads = heads.map_err(failed("reading stream heads"))?;
    let first_ids = first_ids.map_err(failed("looking for re-sent events"))?;
    let heads = heads
        .iter()
        .map(|row| {
            let stream = StreamName::from_stored(row.get(0));
            let head = Head {
                last: row.get::<_, Option<i64>>(1).map(to_u64),
                tombstoned: row.get(2),
                metadata_json: row.get::<_, Option<Vec<u8>>>(3).map(Bytes::from),
            };
            (stream, head)
        })
        .collect::<HashMap<_, _>>();
    let mut group = Group::new(heads, to_u64(last), config.clock.now());
    learn_rows(&mut group, &first_ids);
    Ok(group)
}

/// Reads every stored event in `ranges` into the group, for the re-send checks.
async fn fetch_ranges(
    client: &Client,
    statements: &Statements,
    group: &mut Group,
    ranges: &[RevisionRange],
) -> Result<(), TransactionError> {
    let streams: Vec<&str> = ranges.iter().map(|(s, _, _)| s.as_str()).collect();
    let firsts: Vec<i64> = ranges.iter().map(|(_, first, _)| to_i64(*first)).collect();
    let lasts: Vec<i64> = ranges.iter().map(|(_, _, last)| to_i64(*last)).collect();
    let rows = client
        .query(&statements.ranges, &[&streams, &firsts, &lasts])
        .await
        .map_err(|error| classify(client, error, "reading events for re-send checks"))?;
    learn_rows(group, &rows);
    Ok(())
}

fn learn_rows(group: &mut Group, rows: &[tokio_postgres::Row]) {
    for row in rows {
        group.learn(
            StreamName::from_stored(row.get(0)),
            to_u64(row.get(1)),
            EventId(row.get(2)),
            to_u64(row.get(3)),
        );
    }
}

/// Inserts the group's events, updates the heads it changed, queues the notification
/// (PostgreSQL delivers it on commit) and commits, in one round trip. A failed statement
/// aborts the transaction, and the COMMIT after it then only ends it.
async fn write_and_commit(
    client: &Client,
    statements: &Statements,
    config: &PostgresConfig,
    group: &Group,
) -> Result<(), TransactionError> {
    let events = &group.events;
    let positions: Vec<i64> = events.iter().map(|e| to_i64(e.position)).collect();
    let streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
    let revisions: Vec<i64> = events.iter().map(|e| to_i64(e.revision)).collect();
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id.0).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let json: Vec<bool> = events.iter().map(|e| e.is_json).collect();
    let data: Vec<&[u8]> = events.iter().map(|e| &e.data[..]).collect();
    let metadata: Vec<&[u8]> = events.iter().map(|e| &e.metadata[..]).collect();
    let created: Vec<i64> = events.iter().map(|e| e.created_nanos).collect();
    let insert_parameters: [&(dyn ToSql + Sync); 9] = [
        &positions, &streams, &revisions, &ids, &types, &json, &data, &metadata, &created,
    ];
    let heads: Vec<(&StreamName, Head)> = group
        .changed
        .iter()
        .map(|stream| (stream, group.head(stream)))
        .collect();
    let head_streams: Vec<&str> = heads.iter().map(|(s, _)| s.as_str()).collect();
    let head_lasts: Vec<Option<i64>> = heads.iter().map(|(_, h)| h.last.map(to_i64)).collect();
    let head_tombstoned: Vec<bool> = heads.iter().map(|(_, h)| h.tombstoned).collect();
    let head_metadata: Vec<Option<&[u8]>> = heads
        .iter()
        .map(|(_, h)| h.metadata_json.as_deref())
        .collect();
    let end = notification_payload(config, group.last_position().map_or(0, |last| last + 1));
    let channel = config.channel();
    let upsert_parameters: [&(dyn ToSql + Sync); 4] =
        [&head_streams, &head_lasts, &head_tombstoned, &head_metadata];
    let notify_parameters: [&(dyn ToSql + Sync); 2] = [&channel, &end];
    let mut entries = Entries::default();
    for event in events {
        entries.push(
            event.stream.as_str(),
            event.revision,
            &event.event_type,
            &event.metadata,
            event.position,
        );
    }
    let entries_parameters: [&(dyn ToSql + Sync); 5] = [
        &entries.key_kinds,
        &entries.key_texts,
        &entries.key_numbers,
        &entries.ordinals,
        &entries.positions,
    ];
    let (inserted, upserted, indexed, notified, committed) = futures::join!(
        client.execute(&statements.insert, &insert_parameters),
        client.execute(&statements.upsert_heads, &upsert_parameters),
        async {
            if entries.is_empty() {
                Ok(0)
            } else {
                client
                    .execute(&statements.insert_entries, &entries_parameters)
                    .await
            }
        },
        client.execute(&statements.notify, &notify_parameters),
        client.batch_execute("COMMIT"),
    );
    let refusable = |context: &'static str| {
        move |error: tokio_postgres::Error| {
            if is_refusal(&error) && !client.is_closed() {
                TransactionError::Refused(error)
            } else {
                classify(client, error, context)
            }
        }
    };
    inserted.map_err(refusable("inserting events"))?;
    upserted.map_err(refusable("updating stream heads"))?;
    indexed.map_err(refusable("inserting index entries"))?;
    let failed = |context: &'static str| move |error| classify(client, error, context);
    notified.map_err(failed("notifying listeners"))?;
    committed.map_err(failed("committing a group"))?;
    Ok(())
}

/// `END SCHEMA`: the schema is named because two long schema names may share a channel.
pub(crate) fn notification_payload(config: &PostgresConfig, end: u64) -> String {
    format!("{end} {}", config.schema)
}

/// True for the errors a value of one request can cause: data exceptions (class 22, e.g.
/// a NUL character in text), integrity constraint violations (23) and program limits
/// exceeded (54, e.g. a row too large).
fn is_refusal(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| matches!(&code.code()[..2], "22" | "23" | "54"))
}

/// Broken when the connection is gone or the server is ending the session (a FATAL
/// error, class 08 connection exceptions, class 57P operator intervention such as
/// `pg_terminate_backend` or a shutdown); otherwise a failure the live session reported.
fn classify(client: &Client, error: tokio_postgres::Error, context: &str) -> TransactionError {
    let ending_session = error.as_db_error().is_some_and(|db| {
        matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ) || db.code().code().starts_with("08")
            || db.code().code().starts_with("57P")
    });
    let wrapped = strata_core::Error::io(
        format!("{context} in PostgreSQL"),
        std::io::Error::other(describe(&error)),
    );
    if error.is_closed() || ending_session || client.is_closed() {
        TransactionError::Broken(wrapped)
    } else {
        TransactionError::Failed(wrapped)
    }
}

/// Whether the group that wrote `written` was committed by the session `abandoned`,
/// asked on a new connection: ends that session (its transaction then commits or rolls
/// back), waits for the write lock, which that transaction held until it ended, and
/// looks for the group's first event.
///
/// # Errors
/// When the new connection fails: the outcome stays unknown.
pub(crate) async fn was_committed(
    connection: &Connection,
    config: &PostgresConfig,
    abandoned: Option<Backend>,
    written: &Written,
) -> strata_core::Result<bool> {
    let Connection {
        client, statements, ..
    } = connection;
    let failed = |context: &'static str| {
        move |error: tokio_postgres::Error| {
            strata_core::Error::io(
                format!("{context} in PostgreSQL"),
                std::io::Error::other(describe(&error)),
            )
        }
    };
    if let Some(backend) = abandoned {
        let ended = client
            .query(
                &statements.terminate,
                &[&backend.pid, &backend.started_micros],
            )
            .await;
        if let Err(error) = ended {
            // Not fatal: the lock below still waits for that session's transaction.
            tracing::warn!(error = %describe(&error), "cannot end the abandoned writer session");
        }
    }
    let lock_parameters: [&(dyn ToSql + Sync); 2] = [&LOCK_CLASS_WRITE, &config.schema];
    let position = to_i64(written.first_position);
    let event_parameters: [&(dyn ToSql + Sync); 1] = [&position];
    let (begun, locked, found, committed) = futures::join!(
        client.batch_execute("BEGIN"),
        client.execute(&statements.lock, &lock_parameters),
        client.query_opt(&statements.event_at, &event_parameters),
        client.batch_execute("COMMIT"),
    );
    begun.map_err(failed("starting the check of a group"))?;
    locked.map_err(failed("taking the write lock to check a group"))?;
    let found = found.map_err(failed("looking for a group's first event"))?;
    committed.map_err(failed("ending the check of a group"))?;
    Ok(found.is_some_and(|row| {
        EventId(row.get(0)) == written.first_id && row.get::<_, i64>(1) == written.created_nanos
    }))
}
