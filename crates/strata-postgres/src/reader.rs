//! Reads: streams (metadata applied) and pages of `$all` (metadata ignored), each with
//! statements prepared once per reader connection.

use std::sync::Arc;

use bytes::Bytes;
use strata_core::rules::{self, StreamRead};
use strata_core::{
    AllSlice, Clock, ContentType, Direction, EventId, Position, ReadAllOptions, ReadFrom,
    ReadStreamOptions, RecordedEvent, Result, Revision, StreamName, StreamSlice, Timestamp,
};
use tokio_postgres::{Client, Row, Statement};

use crate::error::{PostgresError, query_failed};
use crate::plan::{Head, TOMBSTONE_REVISION};

/// Rows one `$all` query fetches at most.
const ALL_PAGE_ROWS_MAX: usize = 2_048;

const COLUMNS: &str =
    "position, stream, revision, event_id, event_type, is_json, data, metadata, created_nanos";

/// A reader connection with its statements prepared.
pub(crate) struct ReaderConnection {
    pub(crate) client: Client,
    /// The store's clock: the "now" of `$maxAge`.
    clock: Clock,
    heads: Statement,
    stream_range: Statement,
    created_at: Statement,
    all_forwards: Statement,
    all_backwards: Statement,
    last_position: Statement,
}

impl ReaderConnection {
    pub(crate) async fn prepare(
        client: Client,
        clock: Clock,
    ) -> std::result::Result<Self, PostgresError> {
        let sql = [
            "SELECT stream, last_revision, tombstoned, metadata FROM streams
             WHERE stream = ANY($1::text[])"
                .to_owned(),
            format!(
                "SELECT {COLUMNS} FROM events WHERE stream = $1 AND revision BETWEEN $2 AND $3
                 ORDER BY revision"
            ),
            "SELECT created_nanos FROM events WHERE stream = $1 AND revision = $2".to_owned(),
            format!("SELECT {COLUMNS} FROM events WHERE position >= $1 ORDER BY position LIMIT $2"),
            format!(
                "SELECT {COLUMNS} FROM events WHERE position < $1 ORDER BY position DESC LIMIT $2"
            ),
            "SELECT max(position) FROM events".to_owned(),
        ];
        let mut statements = Vec::with_capacity(sql.len());
        for text in &sql {
            statements.push(
                client
                    .prepare(text)
                    .await
                    .map_err(PostgresError::query("preparing the readers' statements"))?,
            );
        }
        let mut statements = statements.into_iter();
        let mut next = || {
            statements
                .next()
                .unwrap_or_else(|| unreachable!("six statements"))
        };
        Ok(Self {
            clock,
            heads: next(),
            stream_range: next(),
            created_at: next(),
            all_forwards: next(),
            all_backwards: next(),
            last_position: next(),
            client,
        })
    }

    /// The stored heads of `streams` (absent ones are left out).
    pub(crate) async fn heads(&self, streams: &[&StreamName]) -> Result<Vec<(StreamName, Head)>> {
        let names: Vec<&str> = streams.iter().map(|stream| stream.as_str()).collect();
        let rows = self
            .client
            .query(&self.heads, &[&names])
            .await
            .map_err(query_failed("reading stream heads"))?;
        Ok(rows
            .iter()
            .map(|row| {
                let head = Head {
                    last: row.get::<_, Option<i64>>(1).map(to_u64),
                    tombstoned: row.get(2),
                    metadata_json: row.get::<_, Option<Vec<u8>>>(3).map(Bytes::from),
                };
                (StreamName::from_stored(row.get(0)), head)
            })
            .collect())
    }

    pub(crate) async fn last_position(&self) -> Result<Option<Position>> {
        let row = self
            .client
            .query_one(&self.last_position, &[])
            .await
            .map_err(query_failed("reading the end of the log"))?;
        Ok(row
            .get::<_, Option<i64>>(0)
            .map(|last| Position(to_u64(last))))
    }

    pub(crate) async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        let described = stream.described_stream();
        let mut wanted = vec![stream];
        wanted.extend(described.as_ref());
        let heads = self.heads(&wanted).await?;
        let head_of = |name: &StreamName| {
            heads
                .iter()
                .find(|(found, _)| found == name)
                .map(|(_, head)| head.to_stream_head(name))
                .unwrap_or_default()
        };
        let described_head = described.as_ref().map(head_of);
        let Some(mut read) =
            rules::plan_stream_read(stream, &head_of(stream), described_head.as_ref(), &options)?
        else {
            return Ok(StreamSlice::NotFound);
        };
        let now = self.clock.now();
        self.skip_expired(stream, &mut read, now).await?;
        let revisions = read.revisions();
        let mut events = if revisions.is_empty() {
            Vec::new()
        } else {
            let rows = self
                .client
                .query(
                    &self.stream_range,
                    &[
                        &stream.as_str(),
                        &to_i64(revisions.start),
                        &to_i64(revisions.end - 1),
                    ],
                )
                .await
                .map_err(query_failed("reading a stream"))?;
            rows.iter()
                .map(recorded_event)
                .collect::<Result<Vec<_>>>()?
        };
        events.retain(|event| read.is_visible(event, now));
        if read.direction() == Direction::Backwards {
            events.reverse();
        }
        Ok(StreamSlice::Found {
            events,
            last_revision: read.last_revision(),
        })
    }

    /// Runs the `$maxAge` search of a read: one indexed lookup per probe.
    async fn skip_expired(
        &self,
        stream: &StreamName,
        read: &mut StreamRead,
        now: Timestamp,
    ) -> Result<()> {
        let Some(mut search) = read.expiry_search(now) else {
            return Ok(());
        };
        while let Some(revision) = search.next_probe() {
            let row = self
                .client
                .query_opt(&self.created_at, &[&stream.as_str(), &to_i64(revision)])
                .await
                .map_err(query_failed("reading when an event was created"))?;
            search.observe(revision, row.map(|row| Timestamp(row.get(0))));
        }
        read.skip_expired(&search);
        Ok(())
    }

    pub(crate) async fn read_all(&self, options: &ReadAllOptions) -> Result<AllSlice> {
        let forwards = options.direction == Direction::Forwards;
        let mut cursor = match (options.direction, options.from) {
            (_, ReadFrom::At(position)) => position.0,
            (Direction::Forwards, ReadFrom::Start) => 0,
            (Direction::Backwards, ReadFrom::Start) => 0,
            (Direction::Forwards, ReadFrom::End) => {
                self.last_position().await?.map_or(1, |last| last.0 + 1)
            }
            (Direction::Backwards, ReadFrom::End) => u64::MAX,
        };
        let start = if forwards || options.from != ReadFrom::End {
            cursor
        } else {
            0
        };
        let mut slice = AllSlice {
            events: Vec::new(),
            next_position: Position(start),
            is_end: false,
            last_examined: None,
        };
        let done_before_reading = options.max_count == 0
            || (forwards && options.from == ReadFrom::End)
            || (!forwards && (options.from == ReadFrom::Start || cursor == 0));
        if done_before_reading {
            slice.is_end = options.max_count != 0;
            return Ok(slice);
        }
        loop {
            let wanted = options.max_count - slice.events.len();
            let page_rows = if options.filter.is_some() {
                ALL_PAGE_ROWS_MAX
            } else {
                wanted.min(ALL_PAGE_ROWS_MAX)
            };
            let statement = if forwards {
                &self.all_forwards
            } else {
                &self.all_backwards
            };
            let rows = self
                .client
                .query(statement, &[&to_i64(cursor), &(page_rows as i64)])
                .await
                .map_err(query_failed("reading $all"))?;
            let short_page = rows.len() < page_rows;
            for (index, row) in rows.iter().enumerate() {
                let event = recorded_event(row)?;
                let position = event.position.0;
                slice.last_examined = Some(event.position);
                cursor = if forwards { position + 1 } else { position };
                slice.next_position = Position(cursor);
                if options
                    .filter
                    .as_ref()
                    .is_none_or(|filter| filter.matches(&event))
                {
                    slice.events.push(event);
                    if slice.events.len() >= options.max_count {
                        slice.is_end = short_page && index + 1 == rows.len();
                        return Ok(slice);
                    }
                }
            }
            if short_page {
                slice.is_end = true;
                return Ok(slice);
            }
        }
    }
}

/// Readers' connections, shared round-robin; a broken one is replaced on its next use.
pub(crate) struct Readers {
    config: crate::config::PostgresConfig,
    slots: Vec<tokio::sync::Mutex<Option<Arc<ReaderConnection>>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Readers {
    pub(crate) fn new(config: crate::config::PostgresConfig) -> Self {
        let slots = (0..config.reader_connections.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        Self {
            config,
            slots,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A live reader connection.
    pub(crate) async fn get(&self) -> Result<Arc<ReaderConnection>> {
        let index = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.client.is_closed()
        {
            return Ok(connection.clone());
        }
        let client = crate::connect::connect(&self.config, None).await?;
        let connection =
            Arc::new(ReaderConnection::prepare(client, self.config.clock.clone()).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

fn recorded_event(row: &Row) -> Result<RecordedEvent> {
    let revision = to_u64(row.try_get(2).map_err(query_failed("decoding an event"))?);
    Ok(RecordedEvent {
        position: Position(to_u64(row.get(0))),
        stream: StreamName::from_stored(row.get(1)),
        revision: Revision(revision.min(TOMBSTONE_REVISION)),
        id: EventId(row.get(3)),
        event_type: row.get(4),
        content_type: if row.get(5) {
            ContentType::Json
        } else {
            ContentType::Binary
        },
        data: Bytes::from(row.get::<_, Vec<u8>>(6)),
        metadata: Bytes::from(row.get::<_, Vec<u8>>(7)),
        created: Timestamp(row.get(8)),
    })
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
