//! Reads: streams (metadata applied) and pages of `$all` (metadata ignored), each with
//! statements prepared once per reader connection.

use std::sync::Arc;

use bytes::Bytes;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use strata_core::rules::{self, StreamRead};
use strata_core::{
    Clock, ContentType, Direction, Error, EventId, Position, ReadStreamOptions, RecordedEvent,
    Result, Revision, StreamName, StreamSlice, Timestamp,
};
use tokio_postgres::{Client, Row, Statement};

use crate::config::PostgresConfig;
use crate::connect::{Role, connect};
use crate::error::{PostgresError, query_failed};
use crate::filtered_reader::FilteredStatements;
use crate::index::IndexStatements;
use crate::plan::{Head, TOMBSTONE_REVISION};
use crate::read_all::AllStatements;

pub(crate) const COLUMNS: &str =
    "position, stream, revision, event_id, event_type, is_json, data, metadata, created_nanos";

/// A reader connection with its statements prepared.
pub(crate) struct ReaderConnection {
    pub(crate) client: Client,
    /// Set when a query did not answer in time: the connection is replaced.
    broken: AtomicBool,
    /// The store's clock: the "now" of `$maxAge`.
    clock: Clock,
    heads: Statement,
    stream_range: Statement,
    created_at: Statement,
    pub(crate) all: AllStatements,
    pub(crate) index: IndexStatements,
    pub(crate) filtered: FilteredStatements,
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
                .unwrap_or_else(|| unreachable!("four statements"))
        };
        Ok(Self {
            clock,
            heads: next(),
            stream_range: next(),
            created_at: next(),
            last_position: next(),
            all: AllStatements::prepare(&client).await?,
            index: IndexStatements::prepare(&client).await?,
            filtered: FilteredStatements::prepare(&client).await?,
            broken: AtomicBool::new(false),
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

    /// The tombstones of user streams after `after` and at or before `up_to`, in log order,
    /// at most `max`: the tombstoned streams' records at the tombstone revision (found
    /// through `streams` and the `(stream, revision)` index, not by a scan of the log).
    pub(crate) async fn tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let after = after.map_or(-1, |after| to_i64(after.0));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                TOMBSTONES_SQL,
                &[&to_i64(TOMBSTONE_REVISION), &after, &to_i64(up_to.0), &max],
            )
            .await
            .map_err(query_failed("reading tombstones"))?;
        rows.iter().map(recorded_event).collect()
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
}

/// Readers' connections, shared round-robin; a broken one is replaced on its next use.
pub(crate) struct Readers {
    config: PostgresConfig,
    slots: Vec<tokio::sync::Mutex<Option<Arc<ReaderConnection>>>>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn new(config: PostgresConfig) -> Self {
        let slots = (0..config.reader_connections.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        Self {
            config,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Slots holding a connection, or busy (a slot in use is opening or using one).
    pub(crate) fn open_connections(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| {
                slot.try_lock()
                    .map_or(true, |connection| connection.is_some())
            })
            .count()
    }

    /// Runs `read` on a live reader connection within the statement timeout. A read that
    /// does not answer in time fails, and its connection is replaced on its next use (a
    /// hung server or a dead network must not hold readers forever).
    ///
    /// # Errors
    /// The read's own errors, or an I/O error when it timed out.
    pub(crate) async fn run<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: FnOnce(Arc<ReaderConnection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let timeout = self.config.statement_timeout;
        let timed_out = || {
            Error::io(
                "reading from PostgreSQL",
                std::io::Error::other(format!("no answer within {timeout:?}")),
            )
        };
        let reader = tokio::time::timeout(timeout, self.get())
            .await
            .map_err(|_| timed_out())??;
        match tokio::time::timeout(timeout, read(reader.clone())).await {
            Ok(result) => result,
            Err(_) => {
                reader.broken.store(true, Ordering::Relaxed);
                Err(timed_out())
            }
        }
    }

    /// A live reader connection.
    async fn get(&self) -> Result<Arc<ReaderConnection>> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.client.is_closed()
            && !connection.broken.load(Ordering::Relaxed)
        {
            return Ok(connection.clone());
        }
        *slot = None;
        let client = connect(&self.config, Role::Reader, None).await?;
        let connection =
            Arc::new(ReaderConnection::prepare(client, self.config.clock.clone()).await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// The tombstone records of user streams in a range of positions (`tombstones`).
const TOMBSTONES_SQL: &str = "SELECT e.position, e.stream, e.revision, e.event_id, e.event_type,
         e.is_json, e.data, e.metadata, e.created_nanos
     FROM streams s JOIN events e ON e.stream = s.stream AND e.revision = $1
     WHERE s.tombstoned AND left(s.stream, 1) <> '$'
         AND e.position > $2 AND e.position <= $3
     ORDER BY e.position LIMIT $4";

pub(crate) fn recorded_event(row: &Row) -> Result<RecordedEvent> {
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
