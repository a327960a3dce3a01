//! `$all` reads with an ordinary filter — event-type prefixes or regex, stream-name
//! prefixes — served by range scans of two indexes of `events` instead of windows of the
//! whole log:
//! - `events_event_type_position` on `(event_type COLLATE "C", position)`;
//! - `events_stream_head_position` on `(split_part(stream, '-', 1) COLLATE "C", position)`:
//!   the stream's head, its name up to the first `-` (the category of a stream that has
//!   one, the whole name of one without `-`).
//!
//! Both cover every stored record (system events, links, tombstones), so a filter's events
//! are exactly the events of its keys that the filter accepts:
//! - event-type prefixes: the types listed from the index with one of the prefixes;
//! - an event-type regex: the types listed from the index that the regex matches;
//! - stream-name prefixes: for a prefix with a `-`, the head before it; for one without,
//!   the heads listed from the index that start with it.
//!
//! Byte order (`COLLATE "C"`) makes the names with a prefix one range of the index, listed
//! with one probe per name. Each page merges the keys' positions in log order from the
//! cursor, in rounds, and reads only those events; the filter keeps those it accepts (a
//! head holds streams the prefix may not want). A page is the page a window as long as
//! the log would give (same events, `next_position`, end, checkpoint), except that it
//! stops after looking at `read_all_examined_events_max` of its keys' events.
//!
//! Everything else keeps the window path ([`crate::read_all`]): a stream-name regex, an
//! empty prefix, a `$idx-` prefix beside others, more than [`KEYS_MAX`] keys, keys with a
//! name starting with `$` (or an empty head) whose size cannot be told cheaply, and
//! filters whose keys hold more than 1 / `filter_index_share_divisor` of the log (a window
//! reads sequentially and costs less then). The keys' sizes come from `index_entries`
//! (one probe per key): the event-type and category keys there count every event of a
//! user stream; the events of system streams are left out of the estimate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_core::{
    AllSlice, Direction, EventFilter, FilterTarget, Position, ReadAllOptions, RecordedEvent, Result,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::config::PostgresConfig;
use crate::error::{PostgresError, query_failed};
use crate::reader::{ReaderConnection, to_i64, to_u64};

/// Migration 4. `IF NOT EXISTS`: an operator may build them beforehand with
/// `CREATE INDEX CONCURRENTLY` under these names, and the migration then skips the build
/// (which otherwise holds writes back while it runs; reads go on).
pub(crate) const FILTER_INDEX_MIGRATION_SQL: &str =
    "CREATE INDEX IF NOT EXISTS events_event_type_position
         ON events ((event_type COLLATE \"C\"), position);
     CREATE INDEX IF NOT EXISTS events_stream_head_position
         ON events ((split_part(stream, '-', 1) COLLATE \"C\"), position);";

/// The default of `PostgresConfig::filter_index_share_divisor`, as on the engine.
pub(crate) const SHARE_DIVISOR_DEFAULT: u64 = 8;

/// Most keys a served read merges; a filter with more keeps the window path.
pub(crate) const KEYS_MAX: usize = 1_024;

/// Candidates taken per round at first, and at most (the rounds double in between).
const ROUND_MIN: usize = 16;
const ROUND_MAX: usize = 4_096;

/// The indexed column a filter's keys are names of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    EventType,
    StreamHead,
}

impl Column {
    /// The index's expression, as the statements must spell it to use the index.
    fn expression(self) -> &'static str {
        match self {
            Column::EventType => "(event_type COLLATE \"C\")",
            Column::StreamHead => "(split_part(stream, '-', 1) COLLATE \"C\")",
        }
    }

    /// How many events a key holds, from `index_entries` (event-type keys, kind 2;
    /// category keys, kind 1, plus the stream named like the category).
    fn count_sql(self) -> &'static str {
        match self {
            Column::EventType => {
                "(SELECT COALESCE(max(i.revision) + 1, 0) FROM index_entries i
                  WHERE i.kind = 2 AND i.key = k.name)"
            }
            Column::StreamHead => {
                "(SELECT COALESCE(max(i.revision) + 1, 0) FROM index_entries i
                  WHERE i.kind = 1 AND i.key = k.name)
                 + COALESCE((SELECT CASE WHEN s.last_revision BETWEEN 0 AND 4611686018427387903
                     THEN s.last_revision + 1 ELSE 0 END
                     FROM streams s WHERE s.stream = k.name), 0)"
            }
        }
    }
}

/// Where a filter's keys come from.
#[derive(Debug, PartialEq, Eq)]
enum Names {
    /// Each name listed from the index with one of these prefixes (none empty).
    Prefixed(Vec<String>),
    /// Each name listed from the index that the filter's regex matches.
    Matched,
}

/// The keys of a filter: names of `column`, listed as `listed` says, plus `exact` ones.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    column: Column,
    listed: Option<Names>,
    exact: Vec<String>,
}

/// How `filter` is served, or `None` when it keeps the window path.
fn plan_of(filter: &EventFilter) -> Option<Plan> {
    match (filter.target(), filter.prefix_list()) {
        (FilterTarget::EventType, Some(prefixes)) => {
            if prefixes
                .iter()
                .any(|prefix| prefix.is_empty() || prefix.starts_with('$'))
            {
                return None;
            }
            Some(Plan {
                column: Column::EventType,
                listed: Some(Names::Prefixed(prefixes.to_vec())),
                exact: Vec::new(),
            })
        }
        (FilterTarget::EventType, None) => Some(Plan {
            column: Column::EventType,
            listed: Some(Names::Matched),
            exact: Vec::new(),
        }),
        (FilterTarget::StreamName, Some(prefixes)) => {
            let mut listed = Vec::new();
            let mut exact = Vec::new();
            for prefix in prefixes {
                // `$…` and `-…` streams have a head starting with `$` or an empty one.
                if prefix.is_empty() || prefix.starts_with('$') || prefix.starts_with('-') {
                    return None;
                }
                match prefix.find('-') {
                    Some(at) => exact.push(prefix[..at].to_owned()),
                    None => listed.push(prefix.clone()),
                }
            }
            Some(Plan {
                column: Column::StreamHead,
                listed: (!listed.is_empty()).then_some(Names::Prefixed(listed)),
                exact,
            })
        }
        (FilterTarget::StreamName, None) => None,
    }
}

/// False for the filters no served read takes (they keep the window path whatever the
/// store holds).
pub(crate) fn may_serve(filter: &EventFilter) -> bool {
    plan_of(filter).is_some()
}

/// The statements of served reads for one column.
struct ColumnStatements {
    /// `$1` a prefix, `$2` most names: the log end, and the names from the prefix on in
    /// byte order (the last one listed may lack the prefix), one index probe each.
    names: Statement,
    /// `$1` names: the log end and the events the names hold, by the estimate.
    count: Statement,
    /// `$1` names, `$2` cursor, `$3` log end, `$4` most rows: the keys' events in
    /// `[$2, $3)`, the first `$4` in log order.
    forwards: Statement,
    /// The same backwards: before `LEAST($2, $3)`, newest first.
    backwards: Statement,
}

/// The log end in the statement's snapshot.
const LOG_END_SQL: &str = "(SELECT COALESCE(max(position), 0) + 1 AS log_end FROM events)";

fn names_sql(column: Column) -> String {
    let x = column.expression();
    format!(
        "WITH RECURSIVE names(name) AS (
             (SELECT {x} FROM events WHERE {x} >= $1::text ORDER BY {x} LIMIT 1)
             UNION ALL
             SELECT (SELECT {x} FROM events WHERE {x} > n.name ORDER BY {x} LIMIT 1)
             FROM names n WHERE starts_with(n.name, $1::text))
         SELECT b.log_end, l.name FROM {LOG_END_SQL} b
         LEFT JOIN (SELECT name::text FROM names WHERE name IS NOT NULL LIMIT $2::int8) l ON true"
    )
}

fn count_statement_sql(column: Column) -> String {
    format!(
        "SELECT b.log_end, (SELECT COALESCE(sum({}), 0)::int8 FROM unnest($1::text[]) k(name))
         FROM {LOG_END_SQL} b",
        column.count_sql()
    )
}

/// Each key's first `$4` positions in the range, merged; then the events' names and sizes.
/// The range is a row comparison on the index's two columns, which the primary key cannot
/// serve: otherwise a plan may walk the primary key in order and filter each row on its
/// name, a scan of the log. The cursor, end and row count reach the key's scan through an
/// `OFFSET 0` subquery, so no plan sees them as constants: with them, PostgreSQL
/// misjudges a key's rows from the cursor on as fewer than the limit and reads all of
/// them (a bitmap scan and a sort) instead of the first rows of the ordered index.
/// `OFFSET 0` also keeps the event lookup a nested loop of primary-key probes.
fn candidates_sql(column: Column, forwards: bool) -> String {
    let x = column.expression();
    let (bounds, range, order) = if forwards {
        (
            "$2::int8 AS cursor, $3::int8 AS log_end",
            format!(
                "({x}, position) >= (k.name, v.cursor) AND ({x}, position) < (k.name, v.log_end)"
            ),
            "",
        )
    } else {
        (
            "LEAST($2::int8, $3::int8) AS before",
            format!("({x}, position) < (k.name, v.before)"),
            "DESC",
        )
    };
    format!(
        "SELECT m.position, e.stream, e.event_type, e.size_bytes
         FROM (SELECT p.position
             FROM (SELECT {bounds}, $4::int8 AS most OFFSET 0) v
             CROSS JOIN unnest($1::text[]) k(name)
             CROSS JOIN LATERAL (SELECT position FROM events
                 WHERE {x} = k.name AND {range}
                 ORDER BY position {order} LIMIT v.most) p
             ORDER BY p.position {order} LIMIT $4::int8) m
         CROSS JOIN LATERAL (SELECT stream, event_type,
                 (octet_length(data) + octet_length(metadata))::int8 AS size_bytes
             FROM events e WHERE e.position = m.position OFFSET 0) e"
    )
}

impl ColumnStatements {
    async fn prepare(client: &Client, column: Column) -> std::result::Result<Self, PostgresError> {
        let prepare = |sql: String| async move {
            client.prepare(&sql).await.map_err(PostgresError::query(
                "preparing the filtered $all statements",
            ))
        };
        let (names, count, forwards, backwards) = futures::try_join!(
            prepare(names_sql(column)),
            prepare(count_statement_sql(column)),
            prepare(candidates_sql(column, true)),
            prepare(candidates_sql(column, false)),
        )?;
        Ok(Self {
            names,
            count,
            forwards,
            backwards,
        })
    }
}

/// How long a filter that kept the window path keeps it without its keys being listed
/// again: a subscription reads a window per few dozen events, and a filter whose keys
/// hold much of the log (the clients' default, a regex that excludes system events) would
/// otherwise list every name of the log (an index probe each) before each window.
const DECLINED_FOR: Duration = Duration::from_secs(1);

/// Most filters remembered as declined per connection.
const DECLINED_MAX: usize = 64;

/// The statements of served reads, prepared once per reader connection, and the filters
/// that kept the window path lately.
pub(crate) struct FilteredStatements {
    event_type: ColumnStatements,
    stream_head: ColumnStatements,
    declined: Mutex<HashMap<String, Instant>>,
}

impl FilteredStatements {
    pub(crate) async fn prepare(client: &Client) -> std::result::Result<Self, PostgresError> {
        Ok(Self {
            event_type: ColumnStatements::prepare(client, Column::EventType).await?,
            stream_head: ColumnStatements::prepare(client, Column::StreamHead).await?,
            declined: Mutex::new(HashMap::new()),
        })
    }

    /// True when `filter` kept the window path less than [`DECLINED_FOR`] ago.
    fn declined_lately(&self, filter: &EventFilter) -> bool {
        let mut declined = self.declined.lock();
        let key = declined_key(filter);
        match declined.get(&key) {
            Some(at) if at.elapsed() < DECLINED_FOR => true,
            Some(_) => {
                declined.remove(&key);
                false
            }
            None => false,
        }
    }

    fn decline(&self, filter: &EventFilter) {
        let mut declined = self.declined.lock();
        if declined.len() >= DECLINED_MAX {
            declined.retain(|_, at| at.elapsed() < DECLINED_FOR);
            if declined.len() >= DECLINED_MAX {
                declined.clear();
            }
        }
        declined.insert(declined_key(filter), Instant::now());
    }

    fn of(&self, column: Column) -> &ColumnStatements {
        match column {
            Column::EventType => &self.event_type,
            Column::StreamHead => &self.stream_head,
        }
    }
}

/// A filter's identity among the declined ones.
fn declined_key(filter: &EventFilter) -> String {
    let target = match filter.target() {
        FilterTarget::StreamName => 's',
        FilterTarget::EventType => 't',
    };
    match (filter.prefix_list(), filter.regex_pattern()) {
        (Some(prefixes), _) => {
            let mut key = format!("{target}p");
            for prefix in prefixes {
                // Each prefix after its length: no list reads as another.
                key.push_str(&format!("{}:{prefix}", prefix.len()));
            }
            key
        }
        (None, pattern) => format!("{target}r{}", pattern.unwrap_or_default()),
    }
}

/// A served read's keys, and the log end of the snapshot they were listed in: every
/// event before it has one of the listed names if the filter may accept it.
struct Keys {
    names: Vec<String>,
    log_end: u64,
}

/// One event of a key: the filter has yet to look at it.
struct Candidate {
    position: u64,
    stream: String,
    event_type: String,
    size_bytes: u64,
}

/// What a served read has gathered.
#[derive(Default)]
struct Page {
    positions: Vec<i64>,
    bytes: u64,
    examined_count: usize,
    last_examined: Option<u64>,
}

/// Why a served page stopped.
enum Stop {
    /// `wanted` events taken, the last at `last`.
    Full { last: u64 },
    /// The event at `left` would take the page over its byte budget.
    OverBudget { left: u64 },
    /// `examined_max` candidates looked at.
    Spent,
    /// The keys hold no more events in the read's direction.
    Exhausted,
}

impl Page {
    /// Looks at a round's candidates in the read's order.
    fn take(
        &mut self,
        filter: &EventFilter,
        candidates: &[Candidate],
        wanted: usize,
        examined_max: usize,
        bytes_max: u64,
    ) -> Result<Option<Stop>> {
        for candidate in candidates {
            if filter.try_matches_parts(&candidate.stream, &candidate.event_type)? {
                if !self.positions.is_empty()
                    && self.bytes.saturating_add(candidate.size_bytes) > bytes_max
                {
                    return Ok(Some(Stop::OverBudget {
                        left: candidate.position,
                    }));
                }
                self.bytes = self.bytes.saturating_add(candidate.size_bytes);
                self.positions.push(to_i64(candidate.position));
            }
            self.examined_count += 1;
            self.last_examined = Some(candidate.position);
            if self.positions.len() >= wanted {
                return Ok(Some(Stop::Full {
                    last: candidate.position,
                }));
            }
            if self.examined_count >= examined_max {
                return Ok(Some(Stop::Spent));
            }
        }
        Ok(None)
    }
}

impl ReaderConnection {
    /// A page of `$all` with the ordinary `filter`, from `cursor` (forwards: at or after
    /// it; backwards: before it), served from the indexes: at most `options.max_count`
    /// events, looking at no more than `examined_max` of the keys' events. Returns the page
    /// and how many events it looked at, or `None` when the read keeps the window path.
    pub(crate) async fn read_all_served(
        &self,
        options: &ReadAllOptions,
        config: &PostgresConfig,
        filter: &EventFilter,
        cursor: u64,
        examined_max: usize,
    ) -> Result<Option<(AllSlice, usize)>> {
        let Some(plan) = plan_of(filter) else {
            return Ok(None);
        };
        if self.filtered.declined_lately(filter) {
            return Ok(None);
        }
        let Some(keys) = self.keys(&plan, filter, config).await? else {
            self.filtered.decline(filter);
            return Ok(None);
        };
        let forwards = options.direction == Direction::Forwards;
        let log_end = keys.log_end;
        let statements = self.filtered.of(plan.column);
        let wanted = options.max_count;
        let examined_max = examined_max.max(1);
        let bytes_max = u64::try_from(config.read_all_page_bytes_max).unwrap_or(u64::MAX);
        let mut page = Page::default();
        let mut round_cursor = if forwards {
            cursor
        } else {
            cursor.min(log_end)
        };
        let mut round = wanted.clamp(ROUND_MIN, ROUND_MAX);
        let stop = loop {
            let take = round.min(examined_max - page.examined_count);
            let candidates = if keys.names.is_empty() {
                Vec::new()
            } else {
                let statement = if forwards {
                    &statements.forwards
                } else {
                    &statements.backwards
                };
                self.key_candidates(
                    statement,
                    &keys.names,
                    round_cursor,
                    log_end,
                    take,
                    forwards,
                )
                .await?
            };
            if let Some(stop) = page.take(filter, &candidates, wanted, examined_max, bytes_max)? {
                break stop;
            }
            let Some(last) = candidates.last() else {
                break Stop::Exhausted;
            };
            if candidates.len() < take {
                break Stop::Exhausted;
            }
            round_cursor = if forwards {
                last.position + 1
            } else {
                last.position
            };
            round = (round * 2).min(ROUND_MAX);
        };
        let examined_count = page.examined_count;
        let events = self.events_at(&page.positions, forwards).await?;
        Ok(Some((
            slice_of(events, &page, stop, forwards, cursor, log_end),
            examined_count,
        )))
    }

    /// The keys of `plan`, or `None` when the read keeps the window path (too many keys,
    /// or keys that hold too much of the log or whose size is unknown).
    async fn keys(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        config: &PostgresConfig,
    ) -> Result<Option<Keys>> {
        let statements = self.filtered.of(plan.column);
        let mut names = plan.exact.clone();
        let mut log_end = u64::MAX;
        let listing = match &plan.listed {
            None => Vec::new(),
            Some(Names::Prefixed(prefixes)) => prefixes.clone(),
            Some(Names::Matched) => vec![String::new()],
        };
        let names_max = i64::try_from(KEYS_MAX).unwrap_or(i64::MAX) + 2;
        for prefix in &listing {
            let rows = self
                .client
                .query(&statements.names, &[prefix, &names_max])
                .await
                .map_err(query_failed("listing the names of a filter"))?;
            if rows.len() > KEYS_MAX {
                return Ok(None);
            }
            for row in &rows {
                log_end = log_end.min(to_u64(row.get(0)));
                let Some(name) = row.get::<_, Option<String>>(1) else {
                    continue;
                };
                let wanted = match plan.listed {
                    Some(Names::Matched) => match filter.try_matches_field(&name) {
                        Ok(matched) => matched,
                        // Let the window path say so if an event has that type.
                        Err(_) => return Ok(None),
                    },
                    _ => name.starts_with(prefix.as_str()),
                };
                if wanted {
                    names.push(name);
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        if names.len() > KEYS_MAX
            || names
                .iter()
                .any(|name| name.is_empty() || name.starts_with('$'))
        {
            return Ok(None);
        }
        let row = self
            .client
            .query_one(&statements.count, &[&names])
            .await
            .map_err(query_failed("sizing the keys of a filter"))?;
        let log_end = log_end.min(to_u64(row.get(0)));
        let held = to_u64(row.get(1));
        let events_total = log_end.saturating_sub(1);
        if held > events_total / config.filter_index_share_divisor.max(1) {
            return Ok(None);
        }
        Ok(Some(Keys { names, log_end }))
    }

    /// Up to `take` events of the keys from `cursor`, in the read's order.
    async fn key_candidates(
        &self,
        statement: &Statement,
        names: &[String],
        cursor: u64,
        log_end: u64,
        take: usize,
        forwards: bool,
    ) -> Result<Vec<Candidate>> {
        let (cursor_sql, log_end_sql) = (to_i64(cursor), to_i64(log_end));
        let take_sql = i64::try_from(take).unwrap_or(i64::MAX);
        let parameters: [&(dyn ToSql + Sync); 4] = [&names, &cursor_sql, &log_end_sql, &take_sql];
        let rows = self
            .client
            .query(statement, &parameters)
            .await
            .map_err(query_failed("reading $all from the filter indexes"))?;
        let mut candidates: Vec<Candidate> = rows
            .iter()
            .map(|row| Candidate {
                position: to_u64(row.get(0)),
                stream: row.get(1),
                event_type: row.get(2),
                size_bytes: to_u64(row.get(3)),
            })
            .collect();
        if forwards {
            candidates.sort_by_key(|candidate| candidate.position);
        } else {
            candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.position));
        }
        Ok(candidates)
    }
}

/// The page as a window from `cursor` to the end of the log would give it, stopped where
/// the served read stopped.
fn slice_of(
    events: Vec<RecordedEvent>,
    page: &Page,
    stop: Stop,
    forwards: bool,
    cursor: u64,
    log_end: u64,
) -> AllSlice {
    if forwards {
        let next = match stop {
            Stop::Full { last } => last + 1,
            Stop::OverBudget { left } => left,
            Stop::Spent => page.last_examined.map_or(cursor, |last| last + 1),
            Stop::Exhausted => log_end.max(cursor),
        };
        AllSlice {
            events,
            next_position: Position(next),
            is_end: next >= log_end,
            last_examined: (next > cursor).then(|| Position(next - 1)),
        }
    } else {
        let cursor = cursor.min(log_end);
        let next = match stop {
            Stop::Full { last } => last,
            Stop::OverBudget { left } => left + 1,
            Stop::Spent => page.last_examined.unwrap_or(cursor),
            Stop::Exhausted => cursor.min(1),
        };
        AllSlice {
            events,
            next_position: Position(next),
            is_end: next <= 1,
            last_examined: (next < cursor).then_some(Position(next)),
        }
    }
}

#[cfg(test)]
#[path = "filtered_reader_tests.rs"]
mod tests;
