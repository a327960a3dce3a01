//! Scavenging on PostgreSQL: the rows of events no read can return any more are deleted in
//! bounded batches, by the same rules as the engine's scavenge
//! ([`strata_core::rules::retention`]); then an optional `VACUUM` lets PostgreSQL reuse or
//! return the space. See `docs/SCAVENGING.md` ("PostgreSQL").
//!
//! Positions never change: rows are deleted, never renumbered, and the last event of every
//! stream (which holds `max(position)` and the stream's head) always stays, so the writer's
//! `max(position) + 1` and the readers' log end are unchanged. `$all` readers scan a range of
//! positions (`read_all.rs`), so a deleted row is a hole they step over; a checkpoint that
//! named a deleted event resumes at the next row.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_core::rules::{self, Retention};
use strata_core::scavenge::{ScavengeOptions, ScavengeProgress, ScavengeReport};
use strata_core::{Clock, Error, Result, StreamName, Timestamp};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::config::PostgresConfig;
use crate::connect::{Role, connect};
use crate::error::query_failed;
use crate::index::{encode, keys_of};
use crate::plan::{Head, TOMBSTONE_REVISION};
use crate::reader::{to_i64, to_u64};
use crate::schema::{LOCK_CLASS_SCAVENGE, LOCK_CLASS_WRITE};

/// Rows deleted in one transaction, by default.
pub const SCAVENGE_BATCH_ROWS_DEFAULT: usize = 10_000;

/// Stream rows looked at per query while deciding what to remove.
const STREAMS_PAGE: i64 = 10_000;

/// What the database does after the rows are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vacuum {
    /// Nothing: autovacuum reclaims the dead rows in its own time.
    None,
    /// `VACUUM (ANALYZE)` of the store's tables: the space of the deleted rows becomes
    /// reusable by new rows (the tables stop growing until it is used up) and empty pages at
    /// a table's end go back to the file system. Reads and appends go on meanwhile.
    Plain,
    /// `VACUUM FULL`: the tables are rewritten, so all the space goes back to the file
    /// system and the deleted rows' bytes leave the table files. It first waits (up to
    /// 30 s) for the transactions begun before it, whose snapshots keep those rows. Takes
    /// an `ACCESS EXCLUSIVE` lock: reads and appends of every node wait until it is done.
    Full,
}

/// PostgreSQL's settings of a scavenge, beyond [`ScavengeOptions`].
#[derive(Clone, Debug)]
pub struct PostgresScavenge {
    pub vacuum: Vacuum,
    /// Rows (revisions) deleted in one transaction at most; at least 1.
    pub batch_rows: usize,
    /// Only these streams (and their `$$` metadata streams) when set (`strata forget`);
    /// every stream otherwise.
    pub streams: Option<Vec<StreamName>>,
}

impl Default for PostgresScavenge {
    fn default() -> Self {
        Self {
            vacuum: Vacuum::Plain,
            batch_rows: SCAVENGE_BATCH_ROWS_DEFAULT,
            streams: None,
        }
    }
}

/// Revisions `from..to` of `stream` go (at most `batch_rows` of them).
#[derive(Clone, Debug)]
struct Piece {
    stream: String,
    from: i64,
    to: i64,
}

/// A stream with something to remove, and the metadata that decision was made with.
struct Decided {
    tombstoned: bool,
    metadata: Option<Vec<u8>>,
}

const TABLES: [&str; 3] = ["events", "index_entries", "streams"];
/// How long `VACUUM FULL` waits at most for the transactions that began before the last
/// deletion; after that it runs anyway (their snapshots keep those rows until they end).
const OLDER_TRANSACTIONS_WAIT_MAX: Duration = Duration::from_secs(30);

/// Deletes the rows of events no read can return any more, in batches, then vacuums.
pub(crate) async fn run(
    config: &PostgresConfig,
    clock: &Clock,
    mut options: ScavengeOptions,
    settings: PostgresScavenge,
) -> Result<ScavengeReport> {
    if settings.batch_rows == 0 {
        return Err(Error::InvalidArgument {
            reason: "a scavenge's batch must hold at least one row".into(),
        });
    }
    if !(1..=100).contains(&options.throttle_percent) {
        return Err(Error::InvalidArgument {
            reason: format!(
                "the scavenge throttle is a percentage from 1 to 100, not {}",
                options.throttle_percent
            ),
        });
    }
    let started = Instant::now();
    let client = connect(config, Role::Scavenge, None).await?;
    let schema_lock: [&(dyn ToSql + Sync); 2] = [&LOCK_CLASS_SCAVENGE, &config.schema];
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &schema_lock,
        )
        .await
        .map_err(query_failed("taking the scavenge lock"))?
        .get(0);
    if !locked {
        return Err(Error::InvalidArgument {
            reason: format!(
                "a scavenge of schema \"{}\" is already running (on this or another node)",
                config.schema
            ),
        });
    }
    let mut report = ScavengeReport {
        allocated_bytes_before: tables_size(&client).await?,
        ..ScavengeReport::default()
    };
    let (decided, pieces) = decide(&client, clock, &settings).await?;
    report.segments_considered = decided.len() as u64;
    let mut progress = ScavengeProgress {
        bytes_total: 0,
        segments_total: decided.len() as u64,
        ..ScavengeProgress::default()
    };
    let mut deferred: HashSet<String> = HashSet::new();
    let mut rewritten: HashSet<String> = HashSet::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut batch: Vec<Piece> = Vec::new();
    let mut batch_revisions = 0usize;
    let mut pending = pieces.into_iter().peekable();
    let mut transaction_client = client;
    while pending.peek().is_some() || !batch.is_empty() {
        // Fill a batch with whole pieces (each at most `batch_rows` revisions).
        while let Some(piece) = pending.peek() {
            let revisions = usize::try_from(piece.to - piece.from).unwrap_or(usize::MAX);
            if !batch.is_empty() && batch_revisions + revisions > settings.batch_rows {
                break;
            }
            batch_revisions += revisions;
            batch.extend(pending.next());
        }
        if options
            .stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
        {
            report.stopped = true;
            break;
        }
        let worked = Instant::now();
        let outcome = delete_batch(&mut transaction_client, config, &decided, &batch).await?;
        for stream in outcome.deferred {
            deferred.insert(stream);
        }
        for piece in &batch {
            if !deferred.contains(&piece.stream) {
                rewritten.insert(piece.stream.clone());
            }
            done.insert(piece.stream.clone());
        }
        report.events_removed += outcome.rows;
        report.frame_bytes_removed += outcome.bytes;
        progress.events_removed = report.events_removed;
        progress.bytes_done = report.frame_bytes_removed;
        progress.segments_done = done.len() as u64;
        if let Some(callback) = options.progress.as_mut() {
            callback(&progress);
        }
        batch.clear();
        batch_revisions = 0;
        throttle(options.throttle_percent, worked.elapsed()).await;
    }
    let client = transaction_client;
    report.segments_rewritten = rewritten.len() as u64;
    report.segments_deferred = deferred.len() as u64;
    if !report.stopped {
        let tables = TABLES.join(", ");
        let statement = match settings.vacuum {
            Vacuum::None => None,
            Vacuum::Plain => Some(format!("VACUUM (ANALYZE) {tables}")),
            Vacuum::Full => Some(format!("VACUUM (FULL, ANALYZE) {tables}")),
        };
        if settings.vacuum == Vacuum::Full {
            wait_for_older_transactions(&client).await?;
        }
        if let Some(statement) = statement {
            client
                .batch_execute(&statement)
                .await
                .map_err(query_failed("vacuuming the store's tables"))?;
        }
    }
    report.allocated_bytes_after = tables_size(&client).await?;
    client
        .query_one("SELECT pg_advisory_unlock($1, hashtext($2))", &schema_lock)
        .await
        .map_err(query_failed("releasing the scavenge lock"))?;
    report.elapsed = started.elapsed();
    tracing::info!(
        events_removed = report.events_removed,
        streams = report.segments_rewritten,
        deferred = report.segments_deferred,
        bytes_before = report.allocated_bytes_before,
        bytes_after = report.allocated_bytes_after,
        "PostgreSQL scavenge done"
    );
    Ok(report)
}

/// Removable rows read per stream when estimating what a scavenge would remove.
pub(crate) const ESTIMATE_SAMPLES_PER_STREAM: i64 = 64;

/// Sampled rows looked up per query while estimating.
const ESTIMATE_SAMPLES_PER_QUERY: usize = 10_000;

/// An estimate of the bytes (data + metadata of the rows, as the report's
/// `frame_bytes_removed`) a scavenge started now would delete, without reading the rows
/// through: the streams and their removable revisions are decided as a scavenge decides
/// them, then at most [`ESTIMATE_SAMPLES_PER_STREAM`] of each stream's removable rows,
/// evenly spread, are looked up by `(stream, revision)`; a stream's estimate is their mean
/// size times its count of removable revisions (a stream's revisions from its first stored
/// one are all stored: a scavenge removes prefixes). Exact for streams with no more
/// removable revisions than samples.
pub(crate) async fn estimate(config: &PostgresConfig, clock: &Clock) -> Result<u64> {
    let client = connect(config, Role::Scavenge, None).await?;
    let settings = PostgresScavenge {
        batch_rows: usize::MAX,
        ..PostgresScavenge::default()
    };
    let (_, pieces) = decide(&client, clock, &settings).await?;
    // Per stream (one piece each: batches are unbounded here): its removable count, and
    // the bytes and count of its samples found.
    let mut sampled = vec![(0u64, 0u64); pieces.len()];
    let mut samples: Vec<(i32, &str, i64)> = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let count = piece.to - piece.from;
        let taken = count.min(ESTIMATE_SAMPLES_PER_STREAM);
        let index = i32::try_from(index).map_err(|_| Error::InvalidArgument {
            reason: "too many streams to estimate".into(),
        })?;
        for sample in 0..taken {
            let step = i128::from(count) * i128::from(sample) / i128::from(taken);
            let revision = piece.from + i64::try_from(step).unwrap_or(0);
            samples.push((index, piece.stream.as_str(), revision));
        }
    }
    let lookup = client
        .prepare(
            "SELECT r.piece, (octet_length(e.data) + octet_length(e.metadata))::int8
             FROM unnest($1::int4[], $2::text[], $3::int8[]) AS r(piece, stream, revision)
             JOIN events e ON e.stream = r.stream AND e.revision = r.revision",
        )
        .await
        .map_err(query_failed("preparing the estimate"))?;
    for chunk in samples.chunks(ESTIMATE_SAMPLES_PER_QUERY) {
        let indexes: Vec<i32> = chunk.iter().map(|sample| sample.0).collect();
        let streams: Vec<&str> = chunk.iter().map(|sample| sample.1).collect();
        let revisions: Vec<i64> = chunk.iter().map(|sample| sample.2).collect();
        let rows = client
            .query(&lookup, &[&indexes, &streams, &revisions])
            .await
            .map_err(query_failed("sampling removable rows"))?;
        for row in rows {
            let index = usize::try_from(row.get::<_, i32>(0)).unwrap_or(usize::MAX);
            if let Some(slot) = sampled.get_mut(index) {
                slot.0 += to_u64(row.get(1));
                slot.1 += 1;
            }
        }
    }
    let mut total = 0u64;
    for (piece, (bytes, found)) in pieces.iter().zip(sampled) {
        if found > 0 {
            let count = to_u64(piece.to - piece.from);
            let share = u128::from(bytes) * u128::from(count) / u128::from(found);
            total = total.saturating_add(u64::try_from(share).unwrap_or(u64::MAX));
        }
    }
    Ok(total)
}

/// At `percent` < 100, sleeps so that the work is that share of the time.
async fn throttle(percent: u8, worked: Duration) {
    if percent < 100 {
        let pause = worked.mul_f64(f64::from(100 - percent) / f64::from(percent));
        tokio::time::sleep(pause).await;
    }
}

/// Waits (up to [`OLDER_TRANSACTIONS_WAIT_MAX`]) until no other session of this database
/// holds a snapshot from a transaction begun before now: `VACUUM FULL` copies the deleted
/// rows such a snapshot may still see, and their bytes would stay in the table files. A
/// session whose start this role may not see (another role's, without
/// `pg_read_all_stats`: `xact_start` reads NULL) counts as older.
async fn wait_for_older_transactions(client: &Client) -> Result<()> {
    let deleted_at: std::time::SystemTime = client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .map_err(query_failed("reading the server's clock"))?
        .get(0);
    let deadline = Instant::now() + OLDER_TRANSACTIONS_WAIT_MAX;
    loop {
        let older: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND backend_xmin IS NOT NULL AND (xact_start IS NULL OR xact_start < $1)",
                &[&deleted_at],
            )
            .await
            .map_err(query_failed("looking for older transactions"))?
            .get(0);
        if older == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                transactions = older,
                "VACUUM FULL runs while older transactions are open: the rows they may see \
                 keep their bytes in the table files until a later vacuum"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `pg_total_relation_size` (heap, TOAST, indexes) of the store's tables.
async fn tables_size(client: &Client) -> Result<u64> {
    let mut total = 0u64;
    for table in TABLES {
        let size: i64 = client
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&table],
            )
            .await
            .map_err(query_failed("measuring the store's tables"))?
            .get(0);
        total += to_u64(size);
    }
    Ok(total)
}

/// The streams with something to remove (by the rules at the clock's now) and the pieces
/// of revisions to delete, stream by stream.
async fn decide(
    client: &Client,
    clock: &Clock,
    settings: &PostgresScavenge,
) -> Result<(HashMap<String, Decided>, Vec<Piece>)> {
    let now = clock.now();
    let mut decided = HashMap::new();
    let mut pieces = Vec::new();
    let heads_sql = "SELECT stream, last_revision, tombstoned, metadata FROM streams
                     WHERE stream = ANY($1::text[])";
    let bounds = client
        .prepare(
            "SELECT (SELECT min(revision) FROM events WHERE stream = $1),
                    (SELECT max(revision) FROM events WHERE stream = $1 AND revision < $2)",
        )
        .await
        .map_err(query_failed("preparing the scavenge"))?;
    let created_at = client
        .prepare("SELECT created_nanos FROM events WHERE stream = $1 AND revision = $2")
        .await
        .map_err(query_failed("preparing the scavenge"))?;
    let mut after = String::new();
    loop {
        // Only streams that can hold something removable: tombstoned ones, those with
        // metadata, and metadata streams (which keep their last event only).
        let rows = match &settings.streams {
            Some(streams) if after.is_empty() => {
                let mut names: Vec<String> = streams.iter().map(ToString::to_string).collect();
                names.extend(streams.iter().map(|s| s.metadata_stream().to_string()));
                client
                    .query(heads_sql, &[&names])
                    .await
                    .map_err(query_failed("reading stream heads"))?
            }
            Some(_) => Vec::new(),
            None => client
                .query(
                    "SELECT stream, last_revision, tombstoned, metadata FROM streams
                     WHERE stream > $1
                         AND (tombstoned OR metadata IS NOT NULL OR starts_with(stream, '$$'))
                     ORDER BY stream LIMIT $2",
                    &[&after, &STREAMS_PAGE],
                )
                .await
                .map_err(query_failed("reading stream heads"))?,
        };
        let Some(last_row) = rows.last() else { break };
        after = last_row.get::<_, String>(0);
        if after.is_empty() {
            // A stream cannot be named "", but never loop on it.
            after.push('\u{0}');
        }
        let heads: Vec<(StreamName, Head)> = rows
            .iter()
            .map(|row| {
                (
                    StreamName::from_stored(row.get(0)),
                    Head {
                        last: row.get::<_, Option<i64>>(1).map(to_u64),
                        tombstoned: row.get(2),
                        metadata_json: row.get::<_, Option<Vec<u8>>>(3).map(Into::into),
                    },
                )
            })
            .collect();
        // The heads of the streams the metadata streams describe.
        let described_names: Vec<String> = heads
            .iter()
            .filter_map(|(stream, _)| stream.described_stream())
            .map(|stream| stream.to_string())
            .collect();
        let described_heads: HashMap<String, Head> = if described_names.is_empty() {
            HashMap::new()
        } else {
            client
                .query(heads_sql, &[&described_names])
                .await
                .map_err(query_failed("reading stream heads"))?
                .iter()
                .map(|row| {
                    (
                        row.get::<_, String>(0),
                        Head {
                            last: row.get::<_, Option<i64>>(1).map(to_u64),
                            tombstoned: row.get(2),
                            metadata_json: None,
                        },
                    )
                })
                .collect()
        };
        for (stream, head) in heads {
            let described = stream.described_stream().map(|described| {
                described_heads
                    .get(described.as_str())
                    .map(|head| head.to_stream_head(&described))
                    .unwrap_or_default()
            });
            let stream_head = head.to_stream_head(&stream);
            let (from_revision, to_revision) =
                match rules::retention(&stream, &stream_head, described.as_ref(), now) {
                    Retention::AllButTombstone => {
                        let row = client
                            .query_one(&bounds, &[&stream.as_str(), &to_i64(TOMBSTONE_REVISION)])
                            .await
                            .map_err(query_failed("reading a stream's revisions"))?;
                        let (Some(low), Some(high)) =
                            (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
                        else {
                            continue;
                        };
                        (low, high + 1)
                    }
                    Retention::Below {
                        keep_from,
                        last,
                        expiry,
                    } => {
                        let keep_from = match expiry {
                            None => keep_from,
                            Some(mut search) => {
                                while let Some(revision) = search.next_probe() {
                                    let created = client
                                        .query_opt(
                                            &created_at,
                                            &[&stream.as_str(), &to_i64(revision)],
                                        )
                                        .await
                                        .map_err(query_failed("reading when an event was created"))?
                                        .map(|row| Timestamp(row.get(0)));
                                    search.observe(revision, created);
                                }
                                Retention::keep_from_after(keep_from, last, Some(&search))
                            }
                        };
                        if keep_from == 0 {
                            continue;
                        }
                        let row = client
                            .query_one(&bounds, &[&stream.as_str(), &to_i64(keep_from)])
                            .await
                            .map_err(query_failed("reading a stream's revisions"))?;
                        let Some(low) = row.get::<_, Option<i64>>(0) else {
                            continue;
                        };
                        (low, to_i64(keep_from))
                    }
                };
            if from_revision >= to_revision {
                continue;
            }
            let step = i64::try_from(settings.batch_rows).unwrap_or(i64::MAX);
            let mut from = from_revision;
            while from < to_revision {
                let to = from.saturating_add(step).min(to_revision);
                pieces.push(Piece {
                    stream: stream.to_string(),
                    from,
                    to,
                });
                from = to;
            }
            decided.insert(
                stream.to_string(),
                Decided {
                    tombstoned: head.tombstoned,
                    metadata: head.metadata_json.map(|json| json.to_vec()),
                },
            );
        }
        if settings.streams.is_some() {
            break;
        }
    }
    Ok((decided, pieces))
}

struct BatchOutcome {
    rows: u64,
    bytes: u64,
    /// Streams whose metadata changed since the decision: left for the next run.
    deferred: Vec<String>,
}

/// One transaction under the schema's write lock (so no append, delete or metadata change
/// of any node interleaves): checks that the streams' metadata is still the one decided
/// with, deletes their pieces' rows and the rows' index entries.
async fn delete_batch(
    client: &mut Client,
    config: &PostgresConfig,
    decided: &HashMap<String, Decided>,
    batch: &[Piece],
) -> Result<BatchOutcome> {
    let transaction = client
        .transaction()
        .await
        .map_err(query_failed("starting a scavenge batch"))?;
    let lock_parameters: [&(dyn ToSql + Sync); 2] = [&LOCK_CLASS_WRITE, &config.schema];
    transaction
        .query_one(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &lock_parameters,
        )
        .await
        .map_err(query_failed("taking the write lock"))?;
    let names: Vec<&str> = batch.iter().map(|piece| piece.stream.as_str()).collect();
    let current = transaction
        .query(
            "SELECT stream, tombstoned, metadata FROM streams WHERE stream = ANY($1::text[])",
            &[&names],
        )
        .await
        .map_err(query_failed("reading stream heads"))?;
    let mut deferred = Vec::new();
    for row in &current {
        let stream: String = row.get(0);
        let tombstoned: bool = row.get(1);
        let metadata: Option<Vec<u8>> = row.get(2);
        if let Some(decision) = decided.get(&stream) {
            // A tombstone is final; otherwise the metadata must be the one decided with
            // (a change could make removable events readable again).
            if !decision.tombstoned && !tombstoned && metadata != decision.metadata {
                deferred.push(stream);
            }
        }
    }
    let kept: Vec<&Piece> = batch
        .iter()
        .filter(|piece| !deferred.contains(&piece.stream))
        .collect();
    let streams: Vec<&str> = kept.iter().map(|piece| piece.stream.as_str()).collect();
    let froms: Vec<i64> = kept.iter().map(|piece| piece.from).collect();
    let tos: Vec<i64> = kept.iter().map(|piece| piece.to).collect();
    let deleted = transaction
        .query(
            "DELETE FROM events e
             USING unnest($1::text[], $2::int8[], $3::int8[]) AS r(stream, rev_from, rev_to)
             WHERE e.stream = r.stream AND e.revision >= r.rev_from AND e.revision < r.rev_to
             RETURNING e.position, e.stream, e.revision, e.event_type, e.metadata,
                 (octet_length(e.data) + octet_length(e.metadata))::int8",
            &[&streams, &froms, &tos],
        )
        .await
        .map_err(query_failed("deleting scavenged events"))?;
    let mut kinds: Vec<i16> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut positions: Vec<i64> = Vec::new();
    let mut bytes = 0u64;
    for row in &deleted {
        let position: i64 = row.get(0);
        let stream: &str = row.get(1);
        let revision: i64 = row.get(2);
        let event_type: &str = row.get(3);
        let metadata: &[u8] = row.get(4);
        bytes += to_u64(row.get(5));
        for key in keys_of(stream, to_u64(revision), event_type, metadata) {
            let (kind, text) = encode(&key);
            kinds.push(kind);
            keys.push(text.to_owned());
            positions.push(position);
        }
    }
    if !positions.is_empty() {
        // Each key's newest entry stays (even when its event went): `max(revision) + 1` is
        // the next entry's revision, which must never be handed out twice. Reads join the
        // entries with `events`, so an entry without its event reads as nothing. The
        // maximum is probed once per distinct key of the batch (`m`), not once per entry.
        transaction
            .execute(
                "WITH d AS MATERIALIZED (
                     SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[])
                         AS d(kind, key, position)),
                 m AS MATERIALIZED (
                     SELECT k.kind, k.key,
                         (SELECT max(x.revision) FROM index_entries x
                          WHERE x.kind = k.kind AND x.key = k.key) AS top
                     FROM (SELECT DISTINCT kind, key FROM d) k)
                 DELETE FROM index_entries i USING d, m
                 WHERE m.kind = d.kind AND m.key = d.key
                     AND i.kind = d.kind AND i.key = d.key AND i.position = d.position
                     AND i.revision < m.top",
                &[&kinds, &keys, &positions],
            )
            .await
            .map_err(query_failed("deleting scavenged index entries"))?;
    }
    transaction
        .commit()
        .await
        .map_err(query_failed("committing a scavenge batch"))?;
    Ok(BatchOutcome {
        rows: deleted.len() as u64,
        bytes,
        deferred,
    })
}
