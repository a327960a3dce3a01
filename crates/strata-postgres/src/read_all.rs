//! Pages of `$all`. Each read looks at one window of positions, at most
//! `read_all_examined_events_max` of them, so a filter that matches nothing costs each call
//! a bounded scan of the primary key and still moves the caller forwards (`last_examined`
//! is a checkpoint). Positions are gapless, so the window is a range of the primary key.
//!
//! A read is two statements: the first lists the window's candidates (position, stream,
//! event type, size; prefix filters are applied in SQL, so rows that do not match never
//! leave the server), the second fetches the chosen events whole. Regex filters run here,
//! on the candidates' names, with the same regex engine as every backend. The chosen
//! events stop at `max_count` and at `read_all_page_bytes_max` of data and metadata.
//! Stored events are never changed or removed, so the second statement finds every event
//! the first one listed.

use strata_core::{
    AllSlice, Direction, EventFilter, FilterTarget, Position, ReadAllOptions, ReadFrom,
    RecordedEvent, Result, WindowSlice,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::config::PostgresConfig;
use crate::error::{PostgresError, query_failed};
use crate::reader::{COLUMNS, ReaderConnection, recorded_event, to_i64, to_u64};

/// `$1` cursor, `$2` window width, `$3`/`$4` LIKE patterns on the stream / the event type
/// (NULL: no such filter), `$5` most rows. The one-row `bounds` gives the log end in the
/// same snapshot, also when nothing in the window matches.
const CANDIDATES_FORWARDS_SQL: &str =
    "SELECT b.log_end, e.position, e.stream, e.event_type, e.size_bytes
     FROM (SELECT COALESCE(max(position), 0) + 1 AS log_end FROM events) b
     LEFT JOIN LATERAL (
         SELECT position, stream, event_type,
             (octet_length(data) + octet_length(metadata))::int8 AS size_bytes
         FROM events
         WHERE position >= $1 AND position < LEAST($1 + $2, b.log_end)
             AND ($3::text[] IS NULL OR stream LIKE ANY ($3::text[]))
             AND ($4::text[] IS NULL OR event_type LIKE ANY ($4::text[]))
         ORDER BY position LIMIT $5) e ON true";
/// The same backwards: the window ends before `$1` (or the log end) and spans `$2`.
const CANDIDATES_BACKWARDS_SQL: &str =
    "SELECT b.log_end, e.position, e.stream, e.event_type, e.size_bytes
     FROM (SELECT COALESCE(max(position), 0) + 1 AS log_end FROM events) b
     LEFT JOIN LATERAL (
         SELECT position, stream, event_type,
             (octet_length(data) + octet_length(metadata))::int8 AS size_bytes
         FROM events
         WHERE position < LEAST($1, b.log_end) AND position >= LEAST($1, b.log_end) - $2
             AND ($3::text[] IS NULL OR stream LIKE ANY ($3::text[]))
             AND ($4::text[] IS NULL OR event_type LIKE ANY ($4::text[]))
         ORDER BY position DESC LIMIT $5) e ON true";

/// The statements of `$all` reads, prepared once per reader connection.
pub(crate) struct AllStatements {
    candidates_forwards: Statement,
    candidates_backwards: Statement,
    events_at: Statement,
    last_position: Statement,
}

impl AllStatements {
    pub(crate) async fn prepare(client: &Client) -> std::result::Result<Self, PostgresError> {
        let events_at = format!("SELECT {COLUMNS} FROM events WHERE position = ANY($1::int8[])");
        let prepare = |sql: String| async move {
            client
                .prepare(&sql)
                .await
                .map_err(PostgresError::query("preparing the $all statements"))
        };
        let (candidates_forwards, candidates_backwards, events_at, last_position) = futures::try_join!(
            prepare(CANDIDATES_FORWARDS_SQL.to_owned()),
            prepare(CANDIDATES_BACKWARDS_SQL.to_owned()),
            prepare(events_at),
            prepare("SELECT max(position) FROM events".to_owned()),
        )?;
        Ok(Self {
            candidates_forwards,
            candidates_backwards,
            events_at,
            last_position,
        })
    }
}

/// One row of the window: an event that may be returned.
struct Candidate {
    position: u64,
    stream: String,
    event_type: String,
    size_bytes: u64,
}

/// Which candidates a read returns, and how far it looked.
struct Chosen {
    positions: Vec<i64>,
    /// Forwards: every position in `[cursor, next)` was looked at; backwards, `[next, cursor)`.
    next: u64,
}

impl ReaderConnection {
    pub(crate) async fn read_all(
        &self,
        options: &ReadAllOptions,
        config: &PostgresConfig,
    ) -> Result<AllSlice> {
        let forwards = options.direction == Direction::Forwards;
        let cursor = match self.cursor(options).await? {
            Ok(cursor) => cursor,
            Err(nothing_to_read) => return Ok(nothing_to_read),
        };
        let window = config.read_all_examined_events_max;
        if let Some(key) = options.filter.as_ref().and_then(EventFilter::index_key) {
            let wanted = options
                .max_count
                .min(usize::try_from(window).unwrap_or(usize::MAX));
            let (slice, _) = self
                .read_all_indexed(
                    options,
                    &key,
                    cursor,
                    wanted,
                    config.read_all_page_bytes_max,
                )
                .await?;
            return Ok(slice);
        }
        if config.read_all_filters_from_indexes
            && let Some(filter) = options.filter.as_ref()
        {
            let examined_max = usize::try_from(window).unwrap_or(usize::MAX);
            if let Some((slice, _)) = self
                .read_all_served(options, config, filter, cursor, examined_max)
                .await?
            {
                return Ok(slice);
            }
        }
        let (log_end, candidates) = self.candidates(options, cursor, window).await?;
        let chosen = if forwards {
            choose_forwards(options, config, &candidates, cursor, window, log_end)?
        } else {
            choose_backwards(options, config, &candidates, cursor.min(log_end), window)?
        };
        let events = self.events_at(&chosen.positions, forwards).await?;
        let (last_examined, is_end) = if forwards {
            let examined = (chosen.next > cursor).then(|| Position(chosen.next - 1));
            (examined, chosen.next >= log_end)
        } else {
            let examined = (chosen.next < cursor.min(log_end)).then_some(Position(chosen.next));
            (examined, chosen.next <= 1)
        };
        Ok(AllSlice {
            events,
            next_position: Position(chosen.next),
            is_end,
            last_examined,
        })
    }

    /// A page of `$all` with a filter served from the indexes — a `$idx-` filter, or an
    /// ordinary one the indexes can serve — looking at no more than `examined_max` of its
    /// keys' events; `None` when the filter keeps the window path.
    pub(crate) async fn read_all_window(
        &self,
        options: &ReadAllOptions,
        config: &PostgresConfig,
        examined_max: usize,
    ) -> Result<Option<WindowSlice>> {
        let Some(filter) = options.filter.as_ref() else {
            return Ok(None);
        };
        let key = filter.index_key();
        if key.is_none()
            && !(config.read_all_filters_from_indexes && crate::filtered_reader::may_serve(filter))
        {
            return Ok(None);
        }
        let cursor = match self.cursor(options).await? {
            Ok(cursor) => cursor,
            Err(nothing_to_read) => return Ok(Some(served_window(nothing_to_read, 0, None))),
        };
        let window = usize::try_from(config.read_all_examined_events_max).unwrap_or(usize::MAX);
        let examined_max = examined_max.min(window);
        let served = match key {
            Some(key) => {
                let wanted = options.max_count.min(examined_max).max(1);
                Some(
                    self.read_all_indexed(
                        options,
                        &key,
                        cursor,
                        wanted,
                        config.read_all_page_bytes_max,
                    )
                    .await?,
                )
            }
            None => {
                self.read_all_served(options, config, filter, cursor, examined_max)
                    .await?
            }
        };
        let forwards_from = (options.direction == Direction::Forwards).then_some(cursor);
        Ok(served
            .map(|(slice, examined_count)| served_window(slice, examined_count, forwards_from)))
    }

    /// Where a read starts (positions start at 1), or its whole answer when it reads
    /// nothing.
    async fn cursor(&self, options: &ReadAllOptions) -> Result<std::result::Result<u64, AllSlice>> {
        let forwards = options.direction == Direction::Forwards;
        let cursor = match (options.direction, options.from) {
            (_, ReadFrom::At(position)) => position.0,
            (_, ReadFrom::Start) => 0,
            (Direction::Forwards, ReadFrom::End) => self.log_end().await?,
            (Direction::Backwards, ReadFrom::End) => u64::MAX,
        };
        let done_before_reading = options.max_count == 0
            || (forwards && options.from == ReadFrom::End)
            || (!forwards && cursor == 0);
        if done_before_reading {
            let backwards_from_end = !forwards && options.from == ReadFrom::End;
            return Ok(Err(AllSlice {
                events: Vec::new(),
                next_position: Position(if backwards_from_end { 0 } else { cursor }),
                is_end: options.max_count != 0,
                last_examined: None,
            }));
        }
        // Positions start at 1: a forwards window from 0 would hold one fewer.
        Ok(Ok(if forwards { cursor.max(1) } else { cursor }))
    }

    /// The log end and the window's candidates, in the read's order.
    async fn candidates(
        &self,
        options: &ReadAllOptions,
        cursor: u64,
        window: u64,
    ) -> Result<(u64, Vec<Candidate>)> {
        let window_sql = to_i64(window);
        let (statement, cursor_sql) = match options.direction {
            // Keeps `$1 + $2` within a BIGINT.
            Direction::Forwards => (
                &self.all.candidates_forwards,
                to_i64(cursor).min(i64::MAX - window_sql),
            ),
            Direction::Backwards => (&self.all.candidates_backwards, to_i64(cursor)),
        };
        let (stream_patterns, type_patterns) = like_patterns(options.filter.as_ref());
        let filtered_here = options.filter.as_ref().is_some_and(is_filtered_here);
        let rows_max = if filtered_here {
            window_sql
        } else {
            window_sql.min(i64::try_from(options.max_count).unwrap_or(i64::MAX))
        };
        let parameters: [&(dyn ToSql + Sync); 5] = [
            &cursor_sql,
            &window_sql,
            &stream_patterns,
            &type_patterns,
            &rows_max,
        ];
        let rows = self
            .client
            .query(statement, &parameters)
            .await
            .map_err(query_failed("reading $all"))?;
        let log_end = rows.first().map_or(1, |row| to_u64(row.get(0)));
        let mut candidates = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(position) = row.get::<_, Option<i64>>(1) {
                candidates.push(Candidate {
                    position: to_u64(position),
                    stream: row.get(2),
                    event_type: row.get(3),
                    size_bytes: to_u64(row.get(4)),
                });
            }
        }
        match options.direction {
            Direction::Forwards => candidates.sort_by_key(|candidate| candidate.position),
            Direction::Backwards => {
                candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.position));
            }
        }
        Ok((log_end, candidates))
    }

    /// The events at `positions`, in the read's order.
    pub(crate) async fn events_at(
        &self,
        positions: &[i64],
        forwards: bool,
    ) -> Result<Vec<RecordedEvent>> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(&self.all.events_at, &[&positions])
            .await
            .map_err(query_failed("reading $all"))?;
        // Fewer rows than positions: a scavenge deleted some between the two statements.
        // They were events no read could return any more; they are left out (a checkpoint
        // past them misses nothing).
        let mut events = rows
            .iter()
            .map(recorded_event)
            .collect::<Result<Vec<_>>>()?;
        events.sort_by_key(|event| event.position);
        if !forwards {
            events.reverse();
        }
        Ok(events)
    }

    /// The position after the last event.
    async fn log_end(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(&self.all.last_position, &[])
            .await
            .map_err(query_failed("reading the end of the log"))?;
        Ok(row
            .get::<_, Option<i64>>(0)
            .map_or(1, |last| to_u64(last) + 1))
    }
}

/// Where a forwards read stops: at `max_count`, before the event that would take the page
/// over the byte budget (a first event always comes), or at the end of the window.
fn choose_forwards(
    options: &ReadAllOptions,
    config: &PostgresConfig,
    candidates: &[Candidate],
    cursor: u64,
    window: u64,
    log_end: u64,
) -> Result<Chosen> {
    let (positions, stop) = pick(options, config, candidates)?;
    let next = match stop {
        Stop::Full { last } => last + 1,
        Stop::OverBudget { left } => left,
        Stop::WindowEnd => cursor.saturating_add(window).min(log_end).max(cursor),
    };
    Ok(Chosen { positions, next })
}

/// The same backwards; `cursor` (exclusive) is within the log.
fn choose_backwards(
    options: &ReadAllOptions,
    config: &PostgresConfig,
    candidates: &[Candidate],
    cursor: u64,
    window: u64,
) -> Result<Chosen> {
    let (positions, stop) = pick(options, config, candidates)?;
    let next = match stop {
        Stop::Full { last } => last,
        Stop::OverBudget { left } => left + 1,
        Stop::WindowEnd => cursor.saturating_sub(window).max(1).min(cursor),
    };
    Ok(Chosen { positions, next })
}

/// Why a page stopped.
enum Stop {
    /// `max_count` reached at position `last`.
    Full { last: u64 },
    /// The candidate at `left` would take the page over its byte budget: the next read
    /// starts with it.
    OverBudget { left: u64 },
    /// Every candidate of the window was looked at.
    WindowEnd,
}

/// Goes through the candidates in the read's order: a filter SQL does not apply
/// (`is_filtered_here`) is applied here, and the page stops at `max_count` or at the byte
/// budget.
///
/// # Errors
/// [`strata_core::Error::InvalidFilter`] when the regex exceeds its backtracking limit on a
/// candidate, as on every backend.
fn pick(
    options: &ReadAllOptions,
    config: &PostgresConfig,
    candidates: &[Candidate],
) -> Result<(Vec<i64>, Stop)> {
    let filtered_here = options
        .filter
        .as_ref()
        .filter(|filter| is_filtered_here(filter));
    let bytes_max = u64::try_from(config.read_all_page_bytes_max).unwrap_or(u64::MAX);
    let mut positions = Vec::new();
    let mut bytes = 0u64;
    for candidate in candidates {
        if let Some(filter) = filtered_here
            && !filter.try_matches_parts(&candidate.stream, &candidate.event_type)?
        {
            continue;
        }
        if !positions.is_empty() && bytes.saturating_add(candidate.size_bytes) > bytes_max {
            return Ok((
                positions,
                Stop::OverBudget {
                    left: candidate.position,
                },
            ));
        }
        bytes = bytes.saturating_add(candidate.size_bytes);
        positions.push(to_i64(candidate.position));
        if positions.len() >= options.max_count {
            return Ok((
                positions,
                Stop::Full {
                    last: candidate.position,
                },
            ));
        }
    }
    Ok((positions, Stop::WindowEnd))
}

/// True when the window's candidates are filtered here, not by `LIKE` in SQL: a regex, and
/// a `$idx-all` stream prefix (the only `$idx-` prefix that reaches a window: it selects
/// the events of user streams whose type does not start with `$`, no stream name).
fn is_filtered_here(filter: &EventFilter) -> bool {
    filter.prefix_list().is_none_or(|prefixes| {
        filter.target() == FilterTarget::StreamName
            && prefixes.iter().any(|prefix| prefix.starts_with("$idx-"))
    })
}

/// `LIKE` patterns of a prefix filter, for the stream and for the event type (`None`
/// where the filter does not apply or is filtered here).
fn like_patterns(filter: Option<&EventFilter>) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let Some((filter, prefixes)) = filter
        .filter(|filter| !is_filtered_here(filter))
        .and_then(|filter| filter.prefix_list().map(|prefixes| (filter, prefixes)))
    else {
        return (None, None);
    };
    let patterns = prefixes
        .iter()
        .map(|prefix| format!("{}%", escape_like(prefix)))
        .collect();
    match filter.target() {
        FilterTarget::StreamName => (Some(patterns), None),
        FilterTarget::EventType => (None, Some(patterns)),
    }
}

/// `text` matched literally by `LIKE` (whose escape character is `\`).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// A window served from the indexes. Positions are dense from 1, so a forwards window from
/// `forwards_from` moved past the events before its next position (fewer where appends
/// rolled back or a scavenge removed rows: the count then runs ahead, and checkpoints come
/// a little early); a backwards one counts what it looked at.
fn served_window(
    slice: AllSlice,
    examined_count: usize,
    forwards_from: Option<u64>,
) -> WindowSlice {
    let spanned = forwards_from.map_or(0, |cursor| slice.next_position.0.saturating_sub(cursor));
    let passed_count = usize::try_from(spanned)
        .unwrap_or(usize::MAX)
        .max(examined_count);
    WindowSlice {
        slice,
        examined_count,
        passed_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_in_a_prefix_match_themselves() {
        assert_eq!(escape_like(r"a_b%c\d"), r"a\_b\%c\\d");
        let filter =
            EventFilter::prefixes(FilterTarget::EventType, vec!["Order_".to_owned()]).unwrap();
        let (streams, types) = like_patterns(Some(&filter));
        assert_eq!(streams, None);
        assert_eq!(types, Some(vec![r"Order\_%".to_owned()]));
    }

    #[test]
    fn a_regex_filter_is_not_sent_to_postgresql() {
        let filter = EventFilter::regex(FilterTarget::StreamName, "^order").unwrap();
        assert_eq!(like_patterns(Some(&filter)), (None, None));
    }
}
