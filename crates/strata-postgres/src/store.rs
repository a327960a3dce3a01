//! `PostgresStore`: the [`EventStore`] contract on PostgreSQL.

use std::sync::Arc;
use strata_core::system_streams::{IndexKey, IndexSlice, read_system_stream};

use async_trait::async_trait;
use strata_core::{
    AllSlice, AppendCondition, AppendPart, AppendResult, DeleteResult, Error, EventStore,
    ExpectedRevision, Limits, MultiAppendResult, Position, ProposedEvent, ReadAllOptions,
    ReadStreamOptions, RecordedEvent, Result, StreamName, StreamSlice, StreamState, WindowSlice,
    read_all_window_by_filtering,
};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::PostgresConfig;
use crate::connect::{Role, connect};
use crate::error::PostgresError;
use crate::observe::{CommitObserver, Observers};
use crate::plan::{Operation, Outcome};
use crate::reader::Readers;
use crate::schema::migrate;
use crate::writer::{Request, advance};

/// Bytes a queued event costs beyond its payload (the request, the event's struct, its
/// id): an append of empty events is not free.
const QUEUED_EVENT_OVERHEAD_BYTES: usize = 128;

/// The unit of the queue's byte budget: permits are KiB, so a budget above 4 GiB still
/// fits tokio's permit counts.
const QUEUE_PERMIT_BYTES: usize = 1024;

/// An event store in one schema of a PostgreSQL database. Several stores (nodes) may use
/// the same schema at once: `$all` stays gapless and in commit order across them.
pub struct PostgresStore {
    config: PostgresConfig,
    readers: Arc<Readers>,
    requests: parking_lot::Mutex<Option<mpsc::Sender<Request>>>,
    /// Permits (KiB) for queued write bytes: back-pressure on appenders.
    queued_kib: Arc<Semaphore>,
    log_end: watch::Sender<Position>,
    writer: parking_lot::Mutex<Option<JoinHandle<()>>>,
    listener: JoinHandle<()>,
    observers: Observers,
}

impl PostgresStore {
    /// Connects, creates or migrates the schema, and starts the writer and the listener.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`PostgresError::Unreachable`] when the database cannot be reached,
    /// [`PostgresError::SchemaTooNew`] when a newer binary migrated the schema, URL and
    /// query errors.
    pub async fn open(config: PostgresConfig) -> std::result::Result<Arc<Self>, PostgresError> {
        config.validate()?;
        let mut client = connect(&config, Role::Migration, None).await?;
        migrate(&mut client, &config).await?;
        let last: i64 = client
            .query_one("SELECT COALESCE(max(position), 0) FROM events", &[])
            .await
            .map_err(PostgresError::query("reading the end of the log"))?
            .get(0);
        drop(client);
        let readers = Arc::new(Readers::new(config.clone()));
        let log_end = watch::Sender::new(Position(u64::try_from(last).unwrap_or(0) + 1));
        let (requests, receiver) = mpsc::channel(config.queued_appends_max);
        let queued_kib = Arc::new(Semaphore::new(queue_permits(
            config.queued_append_bytes_max,
        )));
        let observers = Observers::default();
        let writer = tokio::spawn(crate::writer::run(
            config.clone(),
            receiver,
            log_end.clone(),
            observers.clone(),
        ));
        let listener = tokio::spawn(crate::listener::run(
            config.clone(),
            readers.clone(),
            log_end.clone(),
        ));
        Ok(Arc::new(Self {
            config,
            readers,
            requests: parking_lot::Mutex::new(Some(requests)),
            queued_kib,
            log_end,
            writer: parking_lot::Mutex::new(Some(writer)),
            listener,
            observers,
        }))
    }

    /// Tells `observer` about every group commit from now on.
    pub fn observe_commits(&self, observer: Arc<dyn CommitObserver>) {
        self.observers.add(observer);
    }

    /// Reader connections open or being opened, of [`PostgresConfig::reader_connections`].
    pub fn reader_connections_open(&self) -> usize {
        self.readers.open_connections()
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Finishes the writes already queued, then refuses new ones with [`Error::Closed`].
    /// Reads keep working.
    pub async fn close(&self) {
        self.requests.lock().take();
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }

    /// Deletes the rows of the events no read can return any more (deleted, truncated,
    /// expired, superseded metadata, tombstoned streams: the engine's rules), in batches of
    /// [`crate::SCAVENGE_BATCH_ROWS_DEFAULT`] rows, then runs `VACUUM (ANALYZE)`. Appends
    /// and reads of every node go on meanwhile (each batch holds the write lock for its one
    /// transaction). Positions of the other events do not change. See `docs/SCAVENGING.md`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a scavenge of the schema is already running on any
    /// node, or for a throttle outside 1–100; I/O errors from PostgreSQL.
    pub async fn scavenge(
        &self,
        options: strata_core::scavenge::ScavengeOptions,
    ) -> Result<strata_core::scavenge::ScavengeReport> {
        self.scavenge_with(options, crate::PostgresScavenge::default())
            .await
    }

    /// [`PostgresStore::scavenge`] with PostgreSQL's settings: the `VACUUM` to run, the
    /// batch size, and the streams to look at (all by default).
    ///
    /// # Errors
    /// As [`PostgresStore::scavenge`]; [`Error::InvalidArgument`] for a batch of 0 rows.
    pub async fn scavenge_with(
        &self,
        options: strata_core::scavenge::ScavengeOptions,
        settings: crate::PostgresScavenge,
    ) -> Result<strata_core::scavenge::ScavengeReport> {
        crate::scavenge::run(&self.config, &self.config.clock, options, settings).await
    }

    /// About how many bytes (data + metadata of the rows) a scavenge started now would
    /// delete, for automatic scavenging's threshold: the scavenge's own decision, then at
    /// most 64 sampled rows per stream with something to remove, not a read of the rows.
    /// See `docs/SCAVENGING.md`.
    ///
    /// # Errors
    /// I/O errors from PostgreSQL.
    pub async fn estimate_reclaimable_bytes(&self) -> Result<u64> {
        crate::scavenge::estimate(&self.config, &self.config.clock).await
    }

    /// Tombstones `streams` (whatever their revision; already tombstoned ones included) and
    /// deletes their events' rows at once, then runs `VACUUM FULL` on the store's tables so
    /// the rows' bytes leave the table files (`vacuum` may ask for less). What stays: the
    /// stream names (the tombstones, `streams`), and their `$$` metadata streams' last
    /// event. See `docs/SCAVENGING.md`, "Forgetting".
    ///
    /// # Errors
    /// As [`PostgresStore::scavenge`].
    pub async fn forget(
        &self,
        streams: &[StreamName],
        vacuum: crate::Vacuum,
    ) -> Result<strata_core::scavenge::ScavengeReport> {
        for stream in streams {
            match self.tombstone_stream(stream, ExpectedRevision::Any).await {
                Ok(_) | Err(Error::StreamDeleted { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let settings = crate::PostgresScavenge {
            vacuum,
            streams: Some(streams.to_vec()),
            ..crate::PostgresScavenge::default()
        };
        self.scavenge_with(strata_core::scavenge::ScavengeOptions::default(), settings)
            .await
    }

    async fn write(&self, operation: Operation) -> Result<Outcome> {
        let sender = self.requests.lock().clone().ok_or(Error::Closed)?;
        // A write larger than the whole budget waits for the whole budget, then goes.
        let permits = queue_permits(queued_bytes(&operation))
            .min(queue_permits(self.config.queued_append_bytes_max));
        let queued = self
            .queued_kib
            .clone()
            .acquire_many_owned(u32::try_from(permits).unwrap_or(u32::MAX))
            .await
            .map_err(|_| Error::Closed)?;
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            operation,
            reply,
            queued: Some(queued),
        };
        sender.send(request).await.map_err(|_| Error::Closed)?;
        outcome.await.map_err(|_| Error::Closed)
    }

    async fn delete(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<DeleteResult> {
        let operation = Operation::Delete {
            stream: stream.clone(),
            expected,
            tombstone,
        };
        match self.write(operation).await? {
            Outcome::Delete(result) => result,
            _ => unreachable!("a delete is answered as a delete"),
        }
    }
}

/// Bytes `operation` counts against the queue's budget.
fn queued_bytes(operation: &Operation) -> usize {
    operation
        .size_bytes()
        .saturating_add(operation.event_count() * QUEUED_EVENT_OVERHEAD_BYTES)
}

/// Permits standing for `bytes` (rounded up; at least one), within tokio's bounds.
fn queue_permits(bytes: usize) -> usize {
    bytes
        .div_ceil(QUEUE_PERMIT_BYTES)
        .clamp(1, u32::MAX as usize)
        .min(Semaphore::MAX_PERMITS)
}

/// What a server's job manager runs (docs/SCAVENGING.md). It calls these on a blocking
/// thread of its runtime, which they block on.
impl strata_core::Maintenance for PostgresStore {
    fn scavenge(
        &self,
        options: strata_core::ScavengeOptions,
    ) -> Result<strata_core::ScavengeReport> {
        block_on(PostgresStore::scavenge(self, options))
    }

    fn reclaimable_bytes_estimate(&self) -> Result<u64> {
        block_on(self.estimate_reclaimable_bytes())
    }

    /// PostgreSQL keeps its indexes itself: there is nothing to write (KurrentDB's
    /// MergeIndexes then has nothing to do).
    fn checkpoint_indexes(&self) -> Result<()> {
        Ok(())
    }
}

/// Runs `work` to its end on the calling (blocking) thread: on the current runtime when
/// there is one, on a runtime of its own otherwise.
fn block_on<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.block_on(work),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::io("starting a runtime for maintenance", error))?
            .block_on(work),
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    fn limits(&self) -> Limits {
        Limits::default()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.limits().check_append(&events)?;
        let operation = Operation::Append {
            stream: stream.clone(),
            expected,
            events,
        };
        let result = match self.write(operation).await? {
            Outcome::Append(result) => result,
            _ => unreachable!("an append is answered as an append"),
        };
        if let Ok(appended) = &result {
            // An idempotent re-send of another node's events: make sure this node's readers
            // can see them as soon as the caller does.
            advance(&self.log_end, appended.position.0 + 1);
        }
        result
    }

    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        self.limits().check_multi_append(&parts)?;
        let result = match self
            .write(Operation::AppendMulti {
                parts,
                condition: None,
            })
            .await?
        {
            Outcome::AppendMulti(result) => result,
            _ => unreachable!("a multi-stream append is answered as one"),
        };
        if let Ok(appended) = &result {
            // As for an append: a re-send of another node's request becomes visible here.
            advance(&self.log_end, appended.position.0 + 1);
        }
        result
    }

    /// Checked in the group transaction, under the schema's write lock that every node's
    /// writer takes: two conditional appends on one database are ordered, whichever node
    /// sends them.
    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: AppendCondition,
    ) -> Result<MultiAppendResult> {
        let condition = AppendCondition {
            query: condition.query.validated()?,
            ..condition
        };
        self.limits().check_multi_append(&parts)?;
        let result = match self
            .write(Operation::AppendMulti {
                parts,
                condition: Some(condition),
            })
            .await?
        {
            Outcome::AppendMulti(result) => result,
            _ => unreachable!("a conditional append is answered as one"),
        };
        if let Ok(appended) = &result {
            advance(&self.log_end, appended.position.0 + 1);
        }
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        if let Some(key) = IndexKey::of_stream(stream.as_str()) {
            return read_system_stream(self, stream, &key, options).await;
        }
        self.readers
            .run(|reader| async move { reader.read_stream(stream, options).await })
            .await
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let config = self.readers.config();
        self.readers
            .run(|reader| async move { reader.read_all(&options, config).await })
            .await
    }

    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        let config = self.readers.config();
        let served = self
            .readers
            .run(|reader| {
                let options = &options;
                async move { reader.read_all_window(options, config, examined_max).await }
            })
            .await?;
        match served {
            Some(window) => Ok(window),
            None => read_all_window_by_filtering(self, options, examined_max).await,
        }
    }

    async fn read_index(&self, key: &IndexKey, options: ReadStreamOptions) -> Result<IndexSlice> {
        self.readers
            .run(|reader| async move { reader.read_index(key, &options).await })
            .await
    }

    async fn read_tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        if max == 0 || after.is_some_and(|after| after >= up_to) {
            return Ok(Vec::new());
        }
        self.readers
            .run(|reader| async move { reader.tombstones(after, up_to, max).await })
            .await
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        let heads = self
            .readers
            .run(|reader| async move { reader.heads(&[stream]).await })
            .await?;
        Ok(heads
            .into_iter()
            .next()
            .map_or(StreamState::NoStream, |(_, head)| head.state()))
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.delete(stream, expected, false).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.delete(stream, expected, true).await
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        self.readers
            .run(|reader| async move { reader.last_position().await })
            .await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.log_end.subscribe()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
