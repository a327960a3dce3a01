//! The group-commit writer: one task per node. It drains every pending write, takes the
//! schema's write lock (`pg_advisory_xact_lock`) in one transaction, checks the writes
//! against the stream heads, gives the new events the next positions, inserts them with
//! one statement, commits, and only then replies. Every node's writer takes the same lock
//! until its commit, so positions are handed out and become visible in commit order.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use strata_core::{Error, EventId, Position, Result, StreamName};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::config::PostgresConfig;
use crate::connect::connect;
use crate::error::{PostgresError, query_failed};
use crate::plan::{
    Group, Head, Operation, Outcome, RESEND_WINDOW_EVENTS, RevisionRange, streams_needed,
    weak_resend_candidates,
};
use crate::reader::{to_i64, to_u64};
use crate::schema::LOCK_CLASS_WRITE;

/// Longest the writer waits before trying a lost connection again.
const RECONNECT_WAIT_MAX: Duration = Duration::from_secs(2);

/// Yields to ready appenders before a group, at most (see [`gather`]).
const GATHER_YIELDS_MAX: usize = 8;

/// A write and where its outcome goes.
pub(crate) struct Request {
    pub(crate) operation: Operation,
    pub(crate) reply: oneshot::Sender<Outcome>,
}

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

/// The writer's connection with its statements prepared.
struct Connection {
    client: Client,
    statements: Statements,
}

struct Statements {
    heads: Statement,
    lock: Statement,
    last_position: Statement,
    ranges: Statement,
    first_ids: Statement,
    insert: Statement,
    upsert_heads: Statement,
    notify: Statement,
}

impl Connection {
    async fn open(config: &PostgresConfig) -> std::result::Result<Self, PostgresError> {
        let client = connect(config, None).await?;
        let prepare = |sql: &'static str| {
            let client = &client;
            async move {
                client
                    .prepare(sql)
                    .await
                    .map_err(PostgresError::query("preparing the writer's statements"))
            }
        };
        let (heads, lock, last_position, ranges) = futures::try_join!(
            prepare(HEADS_SQL),
            prepare(LOCK_SQL),
            prepare(LAST_POSITION_SQL),
            prepare(RANGES_SQL)
        )?;
        let (first_ids, insert, upsert_heads, notify) = futures::try_join!(
            prepare(FIRST_IDS_SQL),
            prepare(INSERT_SQL),
            prepare(UPSERT_HEADS_SQL),
            prepare(NOTIFY_SQL)
        )?;
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
                notify,
            },
        })
    }
}

/// Runs until every sender is gone.
pub(crate) async fn run(
    config: PostgresConfig,
    mut requests: mpsc::Receiver<Request>,
    log_end: watch::Sender<Position>,
) {
    let mut connection: Option<Connection> = None;
    let mut reconnect_wait = Duration::from_millis(50);
    while let Some(first) = requests.recv().await {
        gather(&requests).await;
        let batch = drain(&config, first, &mut requests);
        if connection
            .as_ref()
            .is_none_or(|open| open.client.is_closed())
        {
            match Connection::open(&config).await {
                Ok(opened) => {
                    connection = Some(opened);
                    reconnect_wait = Duration::from_millis(50);
                }
                Err(error) => {
                    tracing::warn!(%error, "the writer cannot reach PostgreSQL");
                    fail_all(batch, &Error::from(error));
                    tokio::time::sleep(reconnect_wait).await;
                    reconnect_wait = (reconnect_wait * 2).min(RECONNECT_WAIT_MAX);
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let (operations, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|request| (request.operation, request.reply))
            .unzip();
        match commit_group(open, &config, &operations).await {
            Ok((outcomes, last_position)) => {
                if let Some(last_position) = last_position {
                    advance(&log_end, last_position + 1);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "a group commit failed; its writes are refused");
                for (reply, operation) in replies.into_iter().zip(&operations) {
                    let _ = reply.send(failed(operation, &error));
                }
            }
        }
    }
}

/// `END SCHEMA`: the schema is named because two long schema names may share a channel.
pub(crate) fn notification_payload(config: &PostgresConfig, end: u64) -> String {
    format!("{end} {}", config.schema)
}

/// Moves the published end of the log forwards (never back).
pub(crate) fn advance(log_end: &watch::Sender<Position>, end: u64) {
    log_end.send_if_modified(|current| {
        let moved = end > current.0;
        if moved {
            *current = Position(end);
        }
        moved
    });
}

/// Lets appenders that are ready to run queue their requests before a group is drained:
/// the callers answered by the last commit are woken but may not have run yet, and a group
/// without them would cost them a commit of their own. Stops as soon as the queue stops
/// growing, so an idle writer loses a few microseconds at most.
async fn gather(requests: &mpsc::Receiver<Request>) {
    let mut queued = requests.len();
    for _ in 0..GATHER_YIELDS_MAX {
        tokio::task::yield_now().await;
        let now = requests.len();
        if now == queued {
            return;
        }
        queued = now;
    }
}

/// The first request and every one pending after it, within the group's bounds.
fn drain(
    config: &PostgresConfig,
    first: Request,
    requests: &mut mpsc::Receiver<Request>,
) -> Vec<Request> {
    let mut events = first.operation.event_count();
    let mut bytes = first.operation.size_bytes();
    let mut batch = vec![first];
    while events < config.group_events_max && bytes < config.group_bytes_max {
        let Ok(request) = requests.try_recv() else {
            break;
        };
        events += request.operation.event_count();
        bytes += request.operation.size_bytes();
        batch.push(request);
    }
    batch
}

fn failed(operation: &Operation, error: &Error) -> Outcome {
    let error = Error::io(
        "writing to PostgreSQL (the append may or may not have been committed; re-send it \
         with the same event ids to find out)",
        std::io::Error::other(error.to_string()),
    );
    match operation {
        Operation::Append { .. } => Outcome::Append(Err(error)),
        Operation::Delete { .. } => Outcome::Delete(Err(error)),
    }
}

fn fail_all(batch: Vec<Request>, error: &Error) {
    for request in batch {
        let _ = request.reply.send(failed(&request.operation, error));
    }
}

/// One transaction: lock, read heads, check, insert, notify, commit. The statements go in
/// two pipelined round trips (three when a re-send check needs stored events); the
/// transaction is driven by hand so that BEGIN and COMMIT ride in those round trips.
async fn commit_group(
    connection: &mut Connection,
    config: &PostgresConfig,
    operations: &[Operation],
) -> Result<(Vec<Outcome>, Option<u64>)> {
    let outcome = run_transaction(connection, config, operations).await;
    if outcome.is_err() && !connection.client.is_closed() {
        // Ends the failed transaction; harmless when none is open.
        let _ = connection.client.batch_execute("ROLLBACK").await;
    }
    outcome
}

async fn run_transaction(
    connection: &Connection,
    config: &PostgresConfig,
    operations: &[Operation],
) -> Result<(Vec<Outcome>, Option<u64>)> {
    let Connection { client, statements } = connection;
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
    // Pipelined; each statement takes its snapshot once the lock is held.
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
    begun.map_err(query_failed("starting a group commit"))?;
    locked.map_err(query_failed("taking the write lock"))?;
    let last: i64 = last
        .map_err(query_failed("reading the end of the log"))?
        .get(0);
    let heads = heads.map_err(query_failed("reading stream heads"))?;
    let first_ids = first_ids.map_err(query_failed("looking for re-sent events"))?;
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
    let mut ranges = group.ranges_for_checks(operations);
    ranges.extend(group.follow_up(operations));
    if !ranges.is_empty() {
        fetch_ranges(client, statements, &mut group, &ranges).await?;
    }
    let outcomes: Vec<Outcome> = operations
        .iter()
        .map(|operation| group.plan(operation))
        .collect();
    let written = group.last_position();
    if written.is_some() {
        write_and_commit(client, statements, config, &group).await?;
    } else {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(query_failed("ending a group that wrote nothing"))?;
    }
    Ok((outcomes, written))
}

/// Reads every stored event in `ranges` into the group, for the re-send checks.
async fn fetch_ranges(
    client: &Client,
    statements: &Statements,
    group: &mut Group,
    ranges: &[RevisionRange],
) -> Result<()> {
    let streams: Vec<&str> = ranges.iter().map(|(s, _, _)| s.as_str()).collect();
    let firsts: Vec<i64> = ranges.iter().map(|(_, first, _)| to_i64(*first)).collect();
    let lasts: Vec<i64> = ranges.iter().map(|(_, _, last)| to_i64(*last)).collect();
    let rows = client
        .query(&statements.ranges, &[&streams, &firsts, &lasts])
        .await
        .map_err(query_failed("reading events for re-send checks"))?;
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
) -> Result<()> {
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
    let (inserted, upserted, notified, committed) = futures::join!(
        client.execute(&statements.insert, &insert_parameters),
        client.execute(&statements.upsert_heads, &upsert_parameters),
        client.execute(&statements.notify, &notify_parameters),
        client.batch_execute("COMMIT"),
    );
    inserted.map_err(query_failed("inserting events"))?;
    upserted.map_err(query_failed("updating stream heads"))?;
    notified.map_err(query_failed("notifying listeners"))?;
    committed.map_err(query_failed("committing a group"))?;
    Ok(())
}
