//! Secondary indexes in the `index_entries` table: for each key of
//! [`strata_core::system_streams::index_keys`] (category, event type, correlation id, first
//! events of streams), the positions of its events by index revision, dense from 0 in log
//! order. The writer fills it in the transaction that inserts the events, so a reader's
//! snapshot sees an event and its entries together. It serves `$ce-…`, `$et-…`, `$bc-…`,
//! `$streams` and `$category-…` reads ([`strata_core::EventStore::read_index`]) and `$all`
//! reads with a `$idx-ce-…` / `$idx-et-…` filter, without scanning the log.

use std::collections::HashMap;

use strata_core::system_streams::{IndexKey, IndexSlice, IndexedEvent, index_keys, index_window};
use strata_core::{
    AllSlice, Direction, Position, ReadAllOptions, ReadStreamOptions, Result,
    STREAM_NAME_BYTES_MAX, TOMBSTONE_REVISION,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Statement};

use crate::error::{PostgresError, query_failed};
use crate::reader::{ReaderConnection, recorded_event, to_i64, to_u64};

/// The version of the migration that adds the table; it backfills it from the log.
pub(crate) const INDEX_MIGRATION_VERSION: i32 = 2;

/// Migration 2: the table. The primary key serves index reads by revision; the second
/// index serves `$all` reads by position.
pub(crate) const INDEX_MIGRATION_SQL: &str = "CREATE TABLE index_entries (
        kind SMALLINT NOT NULL,
        key TEXT NOT NULL,
        revision BIGINT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (kind, key, revision)
    );
    CREATE INDEX index_entries_position ON index_entries (kind, key, position);";

/// The writer's insert. `$1`/`$2` are the group's distinct keys; each entry (`$3` the
/// number of its key, from 1, `$4` its ordinal among the group's entries of that key, `$5`
/// its position) gets revision = one past its key's stored maximum plus its ordinal. The
/// maximum is probed once per key, before any entry of that key is inserted: a probe per
/// entry would walk back over the entries this statement already inserted (invisible to
/// it, but each one a heap check), quadratic in the group's size.
pub(crate) const INSERT_ENTRIES_SQL: &str = "WITH heads AS MATERIALIZED (
         SELECT k.n, k.kind, k.key,
             (SELECT COALESCE(max(i.revision) + 1, 0) FROM index_entries i
              WHERE i.kind = k.kind AND i.key = k.key) AS next
         FROM unnest($1::int2[], $2::text[]) WITH ORDINALITY AS k(kind, key, n))
     INSERT INTO index_entries (kind, key, revision, position)
     SELECT h.kind, h.key, h.next + e.ordinal, e.position
     FROM unnest($3::int8[], $4::int8[], $5::int8[]) AS e(key_number, ordinal, position)
     JOIN heads h ON h.n = e.key_number";

/// The backfill's insert, with revisions computed here.
const BACKFILL_INSERT_SQL: &str = "INSERT INTO index_entries (kind, key, revision, position)
     SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[], $4::int8[])";

/// A page of the log for the backfill. Metadata is fetched only where a correlation id may
/// be (the only key read from it).
const BACKFILL_EVENTS_SQL: &str = "SELECT position, stream, revision, event_type,
         CASE WHEN position('$correlationId'::bytea IN metadata) > 0 THEN metadata
             ELSE ''::bytea END
     FROM events WHERE position > $1 ORDER BY position LIMIT $2";

/// Events per page of the backfill.
const BACKFILL_PAGE_EVENTS: i64 = 10_000;

const LAST_REVISION_SQL: &str =
    "SELECT max(revision) FROM index_entries WHERE kind = $1 AND key = $2";
/// A window of a key by revision. `OFFSET 0` keeps the event lookup a nested loop of
/// primary-key probes (a generic plan would otherwise hash-join a scan of `events`).
const RANGE_SQL: &str = "SELECT e.position, e.stream, e.revision, e.event_id, e.event_type,
         e.is_json, e.data, e.metadata, e.created_nanos, i.revision
     FROM index_entries i
     CROSS JOIN LATERAL (SELECT * FROM events e WHERE e.position = i.position OFFSET 0) e
     WHERE i.kind = $1 AND i.key = $2 AND i.revision BETWEEN $3 AND $4
     ORDER BY i.revision";

/// `$1`/`$2` the key, `$3` the cursor, `$4` most rows, `$5` the stream named like the
/// category (NULL for an event type). That stream has no category, so it is under no
/// `Category` key and the two branches never return the same event. Events of system
/// streams and events whose type starts with `$` are left out, as KurrentDB's `$idx-` reads
/// do. The one-row `b` gives the log end in the same snapshot.
///
/// Each branch stops at `$4` rows in position order, so the cost follows the page, not the
/// key: `OFFSET 0` keeps the event lookup a nested loop behind the ordered scan of
/// `index_entries_position`, and `position + 0` keeps the planner on the stream's index for
/// the named stream (its revisions are in position order) rather than on a scan of
/// `events` by position.
const ALL_FORWARDS_SQL: &str = "SELECT b.log_end, c.position, c.size_bytes
     FROM (SELECT COALESCE(max(position), 0) + 1 AS log_end FROM events) b
     LEFT JOIN LATERAL (
         SELECT u.position, u.size_bytes FROM (
             (SELECT i.position, x.size_bytes FROM index_entries i
              CROSS JOIN LATERAL (
                  SELECT (octet_length(e.data) + octet_length(e.metadata))::int8 AS size_bytes
                  FROM events e WHERE e.position = i.position
                      AND e.event_type NOT LIKE '$%' AND e.stream NOT LIKE '$%' OFFSET 0) x
              WHERE i.kind = $1 AND i.key = $2 AND i.position >= $3 AND i.position < b.log_end
              ORDER BY i.position LIMIT $4)
             UNION ALL
             (SELECT e.position, (octet_length(e.data) + octet_length(e.metadata))::int8
              FROM events e
              WHERE e.stream = $5 AND e.position + 0 >= $3 AND e.position + 0 < b.log_end
                  AND e.event_type NOT LIKE '$%' AND e.stream NOT LIKE '$%'
              ORDER BY e.revision LIMIT $4)) u
         ORDER BY u.position LIMIT $4) c ON true";
/// The same backwards: positions before `$3` (or the log end), newest first.
const ALL_BACKWARDS_SQL: &str = "SELECT b.log_end, c.position, c.size_bytes
     FROM (SELECT COALESCE(max(position), 0) + 1 AS log_end FROM events) b
     LEFT JOIN LATERAL (
         SELECT u.position, u.size_bytes FROM (
             (SELECT i.position, x.size_bytes FROM index_entries i
              CROSS JOIN LATERAL (
                  SELECT (octet_length(e.data) + octet_length(e.metadata))::int8 AS size_bytes
                  FROM events e WHERE e.position = i.position
                      AND e.event_type NOT LIKE '$%' AND e.stream NOT LIKE '$%' OFFSET 0) x
              WHERE i.kind = $1 AND i.key = $2 AND i.position < LEAST($3, b.log_end)
              ORDER BY i.position DESC LIMIT $4)
             UNION ALL
             (SELECT e.position, (octet_length(e.data) + octet_length(e.metadata))::int8
              FROM events e
              WHERE e.stream = $5 AND e.position + 0 < LEAST($3, b.log_end)
                  AND e.event_type NOT LIKE '$%' AND e.stream NOT LIKE '$%'
              ORDER BY e.revision DESC LIMIT $4)) u
         ORDER BY u.position DESC LIMIT $4) c ON true";

/// The column `kind` of DCB tag keys (docs/DCB.md).
pub(crate) const KIND_TAG: i16 = 6;

/// The column `kind` of a key, and its text (empty for the one `StreamStarts` key).
pub(crate) fn encode(key: &IndexKey) -> (i16, &str) {
    match key {
        IndexKey::Category(category) => (1, category),
        IndexKey::EventType(event_type) => (2, event_type),
        IndexKey::Correlation(id) => (3, id),
        IndexKey::StreamStarts => (4, ""),
        IndexKey::CategoryStreams(category) => (5, category),
        IndexKey::Tag(tag) => (KIND_TAG, tag),
    }
}

/// The keys a stored record goes under: [`index_keys`], except that tombstones go under
/// none, and a key whose system stream could not be named (a correlation id longer than a
/// stream name may be, which no read can ask for) is not stored.
pub(crate) fn keys_of(
    stream: &str,
    revision: u64,
    event_type: &str,
    metadata: &[u8],
) -> Vec<IndexKey> {
    if revision == TOMBSTONE_REVISION {
        return Vec::new();
    }
    let mut keys = index_keys(stream, revision, event_type, metadata);
    keys.retain(|key| match key {
        IndexKey::Correlation(id) => id.len() + "$bc-".len() <= STREAM_NAME_BYTES_MAX,
        _ => true,
    });
    keys
}

/// A group's index entries in log order, as the parameters of [`INSERT_ENTRIES_SQL`].
#[derive(Default)]
pub(crate) struct Entries {
    /// The distinct keys, numbered from 1 in order of first appearance.
    pub(crate) key_kinds: Vec<i16>,
    pub(crate) key_texts: Vec<String>,
    /// Each entry's key number.
    pub(crate) key_numbers: Vec<i64>,
    /// Each entry's place among the group's entries of the same key.
    pub(crate) ordinals: Vec<i64>,
    pub(crate) positions: Vec<i64>,
    /// Key → (its number, entries so far).
    counts: HashMap<(i16, String), (i64, i64)>,
}

impl Entries {
    /// Adds the entries of the next record; records come in position order.
    pub(crate) fn push(
        &mut self,
        stream: &str,
        revision: u64,
        event_type: &str,
        metadata: &[u8],
        position: u64,
    ) {
        for key in keys_of(stream, revision, event_type, metadata) {
            let (kind, text) = encode(&key);
            let next_number = i64::try_from(self.key_kinds.len()).unwrap_or(i64::MAX) + 1;
            let (number, count) = self
                .counts
                .entry((kind, text.to_owned()))
                .or_insert_with(|| {
                    self.key_kinds.push(kind);
                    self.key_texts.push(text.to_owned());
                    (next_number, 0)
                });
            self.key_numbers.push(*number);
            self.ordinals.push(*count);
            self.positions.push(to_i64(position));
            *count += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// Fills `index_entries` from the events already stored, in position order: an upgraded
/// store answers as if it had always kept the indexes. Runs in the migration's transaction.
pub(crate) async fn backfill<C: GenericClient>(
    client: &C,
) -> std::result::Result<(), PostgresError> {
    let failed = || PostgresError::query("filling index_entries from the log");
    let read = client
        .prepare(BACKFILL_EVENTS_SQL)
        .await
        .map_err(failed())?;
    let insert = client
        .prepare(BACKFILL_INSERT_SQL)
        .await
        .map_err(failed())?;
    let mut next_revisions: HashMap<(i16, String), i64> = HashMap::new();
    let mut after = 0i64;
    loop {
        let rows = client
            .query(&read, &[&after, &BACKFILL_PAGE_EVENTS])
            .await
            .map_err(failed())?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.get(0);
        let (mut kinds, mut keys, mut revisions, mut positions) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let position: i64 = row.get(0);
            let stream: &str = row.get(1);
            let revision = to_u64(row.get(2));
            let event_type: &str = row.get(3);
            let metadata: &[u8] = row.get(4);
            for key in keys_of(stream, revision, event_type, metadata) {
                let (kind, text) = encode(&key);
                let next = next_revisions.entry((kind, text.to_owned())).or_insert(0);
                kinds.push(kind);
                keys.push(text.to_owned());
                revisions.push(*next);
                positions.push(position);
                *next += 1;
            }
        }
        if !kinds.is_empty() {
            client
                .execute(&insert, &[&kinds, &keys, &revisions, &positions])
                .await
                .map_err(failed())?;
        }
    }
}

/// The statements of index reads, prepared once per reader connection.
pub(crate) struct IndexStatements {
    last_revision: Statement,
    range: Statement,
    all_forwards: Statement,
    all_backwards: Statement,
}

impl IndexStatements {
    pub(crate) async fn prepare(client: &Client) -> std::result::Result<Self, PostgresError> {
        let prepare = |sql: &'static str| async move {
            client
                .prepare(sql)
                .await
                .map_err(PostgresError::query("preparing the index statements"))
        };
        let (last_revision, range, all_forwards, all_backwards) = futures::try_join!(
            prepare(LAST_REVISION_SQL),
            prepare(RANGE_SQL),
            prepare(ALL_FORWARDS_SQL),
            prepare(ALL_BACKWARDS_SQL),
        )?;
        Ok(Self {
            last_revision,
            range,
            all_forwards,
            all_backwards,
        })
    }
}

/// One matching event of an indexed `$all` read.
struct Candidate {
    position: u64,
    size_bytes: u64,
}

impl ReaderConnection {
    /// The events under `key` in the window of `options`.
    pub(crate) async fn read_index(
        &self,
        key: &IndexKey,
        options: &ReadStreamOptions,
    ) -> Result<IndexSlice> {
        let (kind, text) = encode(key);
        let row = self
            .client
            .query_one(&self.index.last_revision, &[&kind, &text])
            .await
            .map_err(query_failed("reading an index"))?;
        let len = row
            .get::<_, Option<i64>>(0)
            .map_or(0, |last| to_u64(last) + 1);
        let window = index_window(options, len);
        let mut events = Vec::new();
        if !window.is_empty() {
            let (first, last) = (to_i64(window.start), to_i64(window.end - 1));
            let rows = self
                .client
                .query(&self.index.range, &[&kind, &text, &first, &last])
                .await
                .map_err(query_failed("reading an index"))?;
            for row in &rows {
                events.push(IndexedEvent {
                    index_revision: to_u64(row.get(9)),
                    event: recorded_event(row)?,
                });
            }
        }
        if options.direction == Direction::Backwards {
            events.reverse();
        }
        Ok(IndexSlice {
            events,
            last_revision: len.checked_sub(1),
        })
    }

    /// A page of `$all` holding the events under `key` that a `$idx-` filter selects, read
    /// from the index: at most `wanted` events (and the page's byte budget), starting at
    /// `cursor` (forwards: at or after it; backwards: before it). Returns the page and how
    /// many events it looked at.
    pub(crate) async fn read_all_indexed(
        &self,
        options: &ReadAllOptions,
        key: &IndexKey,
        cursor: u64,
        wanted: usize,
        page_bytes_max: usize,
    ) -> Result<(AllSlice, usize)> {
        let forwards = options.direction == Direction::Forwards;
        let (kind, text) = encode(key);
        let named_stream = match key {
            IndexKey::Category(category) => Some(category.as_str()),
            _ => None,
        };
        let rows_max = i64::try_from(wanted).unwrap_or(i64::MAX).saturating_add(1);
        let cursor_sql = to_i64(cursor);
        let parameters: [&(dyn ToSql + Sync); 5] =
            [&kind, &text, &cursor_sql, &rows_max, &named_stream];
        let statement = if forwards {
            &self.index.all_forwards
        } else {
            &self.index.all_backwards
        };
        let rows = self
            .client
            .query(statement, &parameters)
            .await
            .map_err(query_failed("reading $all from an index"))?;
        let log_end = rows.first().map_or(1, |row| to_u64(row.get(0)));
        let candidates: Vec<Candidate> = rows
            .iter()
            .filter_map(|row| {
                row.get::<_, Option<i64>>(1).map(|position| Candidate {
                    position: to_u64(position),
                    size_bytes: to_u64(row.get(2)),
                })
            })
            .collect();
        // Take up to `wanted`, stopping before the event that would take the page over
        // its byte budget (a first event always comes).
        let bytes_max = u64::try_from(page_bytes_max).unwrap_or(u64::MAX);
        let mut taken: Vec<i64> = Vec::new();
        let mut bytes = 0u64;
        let mut following = None;
        for candidate in &candidates {
            let over_budget =
                !taken.is_empty() && bytes.saturating_add(candidate.size_bytes) > bytes_max;
            if taken.len() >= wanted || over_budget {
                following = Some(candidate.position);
                break;
            }
            bytes = bytes.saturating_add(candidate.size_bytes);
            taken.push(to_i64(candidate.position));
        }
        let last_taken = taken.last().map(|&position| to_u64(position));
        let examined = taken.len();
        let events = self.events_at(&taken, forwards).await?;
        let slice = match (forwards, following) {
            (true, Some(next)) => AllSlice {
                events,
                next_position: Position(next),
                is_end: false,
                last_examined: last_taken.map(Position),
            },
            // Every event up to the end was accounted for: a checkpoint may move to the
            // newest event.
            (true, None) => {
                let newest = log_end
                    .checked_sub(1)
                    .filter(|&newest| newest >= cursor.max(1));
                AllSlice {
                    events,
                    next_position: Position(log_end.max(cursor)),
                    is_end: true,
                    last_examined: newest.or(last_taken).map(Position),
                }
            }
            (false, _) => AllSlice {
                events,
                next_position: Position(last_taken.unwrap_or(cursor.min(log_end).max(1))),
                is_end: following.is_none(),
                last_examined: last_taken.map(Position),
            },
        };
        Ok((slice, examined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_count_each_key_within_a_group() {
        let mut entries = Entries::default();
        entries.push("order-1", 0, "Placed", b"{}", 10);
        entries.push("order-1", 1, "Paid", b"{}", 11);
        entries.push("order-2", 5, "Placed", b"{}", 12);
        let rows: Vec<(i16, &str, i64, i64)> = entries
            .key_numbers
            .iter()
            .zip(&entries.ordinals)
            .zip(&entries.positions)
            .map(|((number, ordinal), position)| {
                let at = usize::try_from(*number - 1).expect("numbered from 1");
                (
                    entries.key_kinds[at],
                    entries.key_texts[at].as_str(),
                    *ordinal,
                    *position,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, "order", 0, 10),
                (2, "Placed", 0, 10),
                (4, "", 0, 10),
                (5, "order", 0, 10),
                (1, "order", 1, 11),
                (2, "Paid", 0, 11),
                (1, "order", 2, 12),
                (2, "Placed", 1, 12),
            ]
        );
        assert_eq!(entries.key_kinds, vec![1, 2, 4, 5, 2]);
    }

    #[test]
    fn tombstones_and_unnameable_correlation_ids_are_not_stored() {
        let mut entries = Entries::default();
        entries.push("order-1", TOMBSTONE_REVISION, "$streamDeleted", b"", 3);
        assert!(entries.is_empty());
        let longest = "c".repeat(STREAM_NAME_BYTES_MAX - "$bc-".len());
        let too_long = format!("{longest}c");
        for (id, stored) in [(longest, true), (too_long, false)] {
            let metadata = format!(r#"{{"$correlationId":"{id}"}}"#);
            let keys = keys_of("order-1", 3, "Placed", metadata.as_bytes());
            assert_eq!(
                keys.contains(&IndexKey::Correlation(id.clone())),
                stored,
                "a correlation id of {} bytes",
                id.len()
            );
        }
    }
}
