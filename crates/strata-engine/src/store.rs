//! `Store`: the embedded engine behind the [`EventStore`] trait.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use parking_lot::Mutex;
use strata_core::rules::{self, StreamHead, StreamRead};
use strata_core::system_streams::{
    IndexKey, IndexSlice, ResolvedSlice, index_window, read_stream_resolved_by_reading,
    read_system_stream,
};
use strata_core::{
    AllSlice, AppendCondition, AppendPart, AppendResult, DeleteResult, Direction, Error,
    EventStore, ExpectedRevision, Limits, MultiAppendResult, Position, ProposedEvent, Query,
    QuerySlice, ReadAllOptions, ReadStreamOptions, RecordedEvent, Result, StreamName, StreamSlice,
    StreamState, Timestamp, WindowSlice,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::all_reader::{self, off_the_runtime};
use crate::config::Config;
use crate::index_lookup::{positions, stream_head};
use crate::log_reader::LogReader;
use crate::recovery::recover;
use crate::shared::Shared;
use crate::syncer::Syncer;
use crate::writer::{Request, Writer};

/// Groups written but not yet synced, at most: the writer waits beyond that, which bounds
/// both memory and how much unsynced log a crash can leave.
const GROUPS_IN_FLIGHT_MAX: usize = 4;

/// Bytes of appends queued for the writer, at most (in KiB, the unit of the permits);
/// appenders wait beyond that. Above the 256 MiB append limit, so any valid append fits.
const QUEUED_APPEND_KIB_MAX: usize = 1024 * 1024;

/// The embedded event store: an append-only log of segment files in one directory.
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
    /// Permits (KiB) for queued append bytes: back-pressure on appenders.
    queued_append_kib: tokio::sync::Semaphore,
    /// The writer and the syncer, joined on close.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The event id index's builder, stopped after them.
    id_builder: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<File>>,
    /// Held while a scavenge runs: one at a time.
    scavenging: Mutex<()>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, recovering from any crash.
    ///
    /// # Errors
    /// [`Error::DirectoryInUse`] when another process has it open; [`Error::Corrupt`]
    /// when the log is damaged other than by a torn final write; I/O errors.
    pub fn open(data_dir: impl AsRef<Path>, config: Config) -> Result<Arc<Store>> {
        let data_dir = data_dir.as_ref();
        config.validate()?;
        std::fs::create_dir_all(data_dir)
            .map_err(|error| Error::io(format!("creating {}", data_dir.display()), error))?;
        let lock = lock_directory(data_dir)?;
        let recovered = recover(data_dir, &config)?;
        let shared = Arc::new(Shared::new(
            config,
            data_dir.to_path_buf(),
            recovered.segments,
            recovered.index,
            recovered.end,
        ));
        let mut recent_ids = recovered.recent_ids;
        if shared.config.event_id_index {
            shared.id_index.open(recovered.end)?;
            recent_ids.forget_only_below(shared.id_index.covered_to());
            // The whole durable log may be filed: what the open found missing is built
            // again while the store serves.
            shared.id_index.extend_to(recovered.end);
        }
        let (requests, receiver) = mpsc::unbounded_channel();
        let (handoffs, handed_off) = std::sync::mpsc::sync_channel(GROUPS_IN_FLIGHT_MAX);
        let syncer = Syncer::new(
            shared.clone(),
            handed_off,
            recovered.index_file_sequence,
            recovered.index_covered_to,
            recovered.end,
            recovered.runs,
        );
        let writer = Writer::new(
            shared.clone(),
            receiver,
            handoffs,
            recovered.end,
            recent_ids,
        );
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|error| Error::io(format!("starting thread {name}"), error))
        };
        let syncer = spawn("strata-syncer", Box::new(move || syncer.run()))?;
        let writer = spawn("strata-writer", Box::new(move || writer.run()))?;
        let id_builder = shared
            .config
            .event_id_index
            .then(|| crate::id_index::IdIndex::start_builder(shared.clone()))
            .flatten();
        Ok(Arc::new(Store {
            shared,
            requests,
            queued_append_kib: tokio::sync::Semaphore::new(QUEUED_APPEND_KIB_MAX),
            threads: Mutex::new(vec![writer, syncer]),
            id_builder: Mutex::new(id_builder),
            lock: Mutex::new(Some(lock)),
            scavenging: Mutex::new(()),
        }))
    }

    /// Stops the writer after the appends already queued, saves the index and releases the
    /// directory. Reads keep working; appends fail with [`Error::Closed`].
    pub fn close(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        if threads.is_empty() {
            return;
        }
        let (done, finished) = std::sync::mpsc::channel();
        if self.requests.send(Request::Shutdown { done }).is_ok() {
            let _ = finished.recv();
        }
        for thread in threads {
            let _ = thread.join();
        }
        self.shared.id_index.stop();
        if let Some(builder) = self.id_builder.lock().take() {
            let _ = builder.join();
        }
        self.lock.lock().take();
    }

    /// Scavenges the sealed segments: removes the events no read can return any more and
    /// gives their disk space back, while appends, reads and subscriptions go on
    /// (docs/SCAVENGING.md). Blocks the calling thread (call it from `spawn_blocking` in
    /// async code); one scavenge runs at a time.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a scavenge is already running; [`Error::Closed`]
    /// after [`Store::close`]; I/O errors, and [`Error::Corrupt`] for a damaged segment
    /// (that segment is left as it was).
    pub fn scavenge(&self, options: crate::ScavengeOptions) -> Result<crate::ScavengeReport> {
        let Some(_only_one) = self.scavenging.try_lock() else {
            return Err(Error::InvalidArgument {
                reason: "a scavenge is already running".into(),
            });
        };
        if self.threads.lock().is_empty() {
            return Err(Error::Closed);
        }
        crate::scavenge::scavenge(&self.shared, options, crate::scavenge::Reach::Sealed)
    }

    /// An estimate of the frame bytes a scavenge would remove now (docs/SCAVENGING.md,
    /// "Automatic scavenging"): the floors a scavenge would decide, the index's removable
    /// positions in the segments it would look at, and a sample of those frames read per
    /// segment. Blocks the calling thread.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Store::close`]; I/O errors.
    pub fn estimate_reclaimable_bytes(&self) -> Result<u64> {
        if self.threads.lock().is_empty() {
            return Err(Error::Closed);
        }
        crate::scavenge::estimate_reclaimable(&self.shared)
    }

    /// Hands what the index gained since the last index file to the index saver now,
    /// instead of waiting for `index_checkpoint_interval_bytes` more log (KurrentDB's
    /// MergeIndexes): a later open replays less, and a scavenge right after may take the
    /// segments it covers. Blocks until the file is written.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Store::close`].
    pub fn checkpoint_indexes(&self) -> Result<()> {
        let (done, finished) = std::sync::mpsc::channel();
        self.requests
            .send(Request::SaveIndex { done })
            .map_err(|_| Error::Closed)?;
        finished.recv().map_err(|_| Error::Closed)
    }

    /// Scavenges the store in `data_dir`, which no process may have open, the tail segment
    /// included (up to the log's end): opens it, closes it (the index files then cover the
    /// whole log), and scavenges every segment while holding the directory's lock. What
    /// `strata scavenge` and `strata forget` run: afterwards no removed event's bytes are
    /// left in any file of the directory.
    ///
    /// # Errors
    /// As [`Store::open`] and [`Store::scavenge`].
    pub fn scavenge_closed(
        data_dir: impl AsRef<Path>,
        config: Config,
        options: crate::ScavengeOptions,
    ) -> Result<crate::ScavengeReport> {
        let data_dir = data_dir.as_ref();
        let store = Store::open(data_dir, config)?;
        store.close();
        let _lock = lock_directory(data_dir)?;
        crate::scavenge::scavenge(&store.shared, options, crate::scavenge::Reach::WithTail)
    }

    /// The directory this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// Number of events (tombstones included) in the log.
    pub fn event_count(&self) -> u64 {
        self.shared.index.read().events_total()
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Tells `observer` about every group commit from now on (see [`CommitStats`]); false
    /// when an observer is already set (the first one stays).
    ///
    /// [`CommitStats`]: crate::CommitStats
    pub fn observe_commits(&self, observer: Arc<dyn crate::CommitObserver>) -> bool {
        self.shared.commit_observer.set(observer).is_ok()
    }

    /// KiB of appends accepted and not yet acknowledged: queued for the writer or in a
    /// group commit under way.
    pub fn appends_in_flight_kib(&self) -> usize {
        QUEUED_APPEND_KIB_MAX.saturating_sub(self.queued_append_kib.available_permits())
    }

    /// Number of streams (metadata streams included).
    pub fn stream_count(&self) -> usize {
        self.shared.index.read().stream_count()
    }

    async fn send<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request) -> Result<T> {
        let (reply, response) = oneshot::channel();
        self.requests.send(make(reply)).map_err(|_| Error::Closed)?;
        response.await.map_err(|_| Error::Closed)?
    }

    async fn delete(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<DeleteResult> {
        let stream = stream.clone();
        self.send(|reply| Request::Delete {
            stream,
            expected,
            tombstone,
            reply,
        })
        .await
    }

    #[cfg(test)]
    fn durable_end(&self) -> u64 {
        self.shared
            .durable_end
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The published heads of `stream` and of the stream it describes, if it is `$$S`.
    pub(crate) fn read_heads(
        &self,
        stream: &StreamName,
    ) -> Result<(StreamHead, Option<StreamHead>)> {
        let described = stream
            .described_stream()
            .map(|described| stream_head(&self.shared, &described))
            .transpose()?;
        Ok((stream_head(&self.shared, stream)?, described))
    }
}

/// Runs the `$maxAge` search of a read: one event read per probe, no lock held.
fn skip_expired(
    shared: &Shared,
    stream: &StreamName,
    read: &mut StreamRead,
    now: Timestamp,
) -> Result<()> {
    let Some(mut search) = read.expiry_search(now) else {
        return Ok(());
    };
    let reader = LogReader::new(&shared.segments);
    while let Some(revision) = search.next_probe() {
        let created = match positions(shared, stream, revision..revision + 1)?.first() {
            Some(&position) => reader
                .read_event_if_present(position)?
                .map(|event| event.created),
            None => None,
        };
        search.observe(revision, created);
    }
    read.skip_expired(&search);
    Ok(())
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn lock_directory(data_dir: &Path) -> Result<File> {
    let path = data_dir.join("LOCK");
    let file = File::create(&path)
        .map_err(|error| Error::io(format!("creating {}", path.display()), error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::DirectoryInUse {
            path: data_dir.display().to_string(),
        }),
        Err(TryLockError::Error(error)) => {
            Err(Error::io(format!("locking {}", path.display()), error))
        }
    }
}

#[async_trait]
impl EventStore for Store {
    fn limits(&self) -> Limits {
        self.shared.config.limits
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.shared.config.limits.check_append(&events)?;
        let size_bytes: usize = events.iter().map(ProposedEvent::size_bytes).sum();
        let kib = u32::try_from(size_bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _queued = self
            .queued_append_kib
            .acquire_many(kib)
            .await
            .map_err(|_| Error::Closed)?;
        let stream = stream.clone();
        self.send(|reply| Request::Append {
            stream,
            expected,
            events,
            reply,
        })
        .await
    }

    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        self.shared.config.limits.check_multi_append(&parts)?;
        let size_bytes: usize = parts
            .iter()
            .flat_map(|part| &part.events)
            .map(ProposedEvent::size_bytes)
            .sum();
        let kib = u32::try_from(size_bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _queued = self
            .queued_append_kib
            .acquire_many(kib)
            .await
            .map_err(|_| Error::Closed)?;
        self.send(|reply| Request::AppendMulti {
            parts,
            condition: None,
            reply,
        })
        .await
    }

    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: AppendCondition,
    ) -> Result<MultiAppendResult> {
        if !self.shared.config.system_streams {
            return Err(Error::Unsupported {
                operation: "conditional (DCB) appends on a store without secondary indexes \
                            (Config::system_streams is off)",
            });
        }
        let condition = AppendCondition {
            query: condition.query.validated()?,
            ..condition
        };
        self.shared.config.limits.check_multi_append(&parts)?;
        let size_bytes: usize = parts
            .iter()
            .flat_map(|part| &part.events)
            .map(ProposedEvent::size_bytes)
            .sum();
        let kib = u32::try_from(size_bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _queued = self
            .queued_append_kib
            .acquire_many(kib)
            .await
            .map_err(|_| Error::Closed)?;
        self.send(|reply| Request::AppendMulti {
            parts,
            condition: Some(condition),
            reply,
        })
        .await
    }

    async fn read_query(
        &self,
        query: &Query,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<QuerySlice> {
        if !self.shared.config.system_streams {
            return strata_core::read_query_by_index(self, query, after, max_count).await;
        }
        let query = query.clone().validated()?;
        let shared = Arc::clone(&self.shared);
        let (found, more) = off_the_runtime(move || {
            // Only published (durable) events are in the indexes, so every position found
            // is readable.
            let mut positions = crate::postings_lookup::query_positions(
                &shared,
                &query,
                after.map(|position| position.0),
                max_count.saturating_add(1),
            )?;
            let more = positions.len() > max_count;
            positions.truncate(max_count);
            let found = LogReader::new(&shared.segments).read_events_if_present(&positions)?;
            Ok((found, more))
        })
        .await?;
        let events: Vec<RecordedEvent> = found.into_iter().flatten().collect();
        let last_position = events.last().map(|event| event.position).or(after);
        Ok(QuerySlice {
            events,
            last_position,
            more,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        if self.shared.config.system_streams
            && let Some(key) = IndexKey::of_stream(stream.as_str())
        {
            return read_system_stream(self, stream, &key, options).await;
        }
        let (head, described_head) = self.read_heads(stream)?;
        let Some(mut read) =
            rules::plan_stream_read(stream, &head, described_head.as_ref(), &options)?
        else {
            return Ok(StreamSlice::NotFound);
        };
        let now = self.shared.config.clock.now();
        let (shared, stream) = (Arc::clone(&self.shared), stream.clone());
        let (mut events, read) = off_the_runtime(move || {
            skip_expired(&shared, &stream, &mut read, now)?;
            let positions = positions(&shared, &stream, read.revisions())?;
            let mut events: Vec<RecordedEvent> =
                LogReader::new(&shared.segments).read_events(&positions)?;
            events.retain(|event| read.is_visible(event, now));
            Ok((events, read))
        })
        .await?;
        if read.direction() == Direction::Backwards {
            events.reverse();
        }
        Ok(StreamSlice::Found {
            events,
            last_revision: read.last_revision(),
        })
    }

    async fn read_stream_resolved(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<ResolvedSlice> {
        if self.shared.config.system_streams
            && let Some(key) = IndexKey::of_stream(stream.as_str())
            && !key.shows_stream_references()
        {
            let now = self.shared.config.clock.now();
            return crate::resolved_reader::read(self, stream, &key, options, now).await;
        }
        read_stream_resolved_by_reading(self, stream, options).await
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let shared = Arc::clone(&self.shared);
        off_the_runtime(move || all_reader::read(&shared, &options, usize::MAX))
            .await
            .map(|scanned| scanned.slice)
    }

    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        let shared = Arc::clone(&self.shared);
        let scanned =
            off_the_runtime(move || all_reader::read(&shared, &options, examined_max)).await?;
        Ok(WindowSlice {
            slice: scanned.slice,
            examined_count: scanned.examined_count,
            passed_count: scanned.passed_count,
        })
    }

    async fn read_tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let positions =
            self.shared
                .index
                .read()
                .tombstones_between(after.map(|after| after.0), up_to.0, max);
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.shared);
        let found = off_the_runtime(move || {
            LogReader::new(&shared.segments).read_events_if_present(&positions)
        })
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn read_index(&self, key: &IndexKey, options: ReadStreamOptions) -> Result<IndexSlice> {
        let (kind, name) = crate::secondary::Kind::of(key);
        let name = name.to_owned();
        let direction = options.direction;
        let shared = Arc::clone(&self.shared);
        let (found, revisions, len) = off_the_runtime(move || {
            let window = |len| index_window(&options, len);
            let select = crate::postings_lookup::select_revisions(window);
            let view = crate::postings_lookup::view(&shared, kind, &name, &select)?;
            let revisions = index_window(&options, view.len());
            let positions = view.revisions(revisions.clone())?;
            let found = LogReader::new(&shared.segments).read_events_if_present(&positions)?;
            Ok((found, revisions, view.len()))
        })
        .await?;
        // Events a scavenge removed leave their index revisions empty.
        let mut events: Vec<strata_core::system_streams::IndexedEvent> = found
            .into_iter()
            .zip(revisions)
            .filter_map(|(event, index_revision)| {
                event.map(|event| strata_core::system_streams::IndexedEvent {
                    index_revision,
                    event,
                })
            })
            .collect();
        if direction == Direction::Backwards {
            events.reverse();
        }
        Ok(IndexSlice {
            events,
            last_revision: len.checked_sub(1),
        })
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        Ok(stream_head(&self.shared, stream)?.state())
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
        Ok(self.shared.index.read().last_event_position().map(Position))
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.shared.log_end.subscribe()
    }
}

/// What a server runs on this store: scavenges and index checkpoints.
impl strata_core::Maintenance for Store {
    fn scavenge(&self, options: crate::ScavengeOptions) -> Result<crate::ScavengeReport> {
        Store::scavenge(self, options)
    }

    fn checkpoint_indexes(&self) -> Result<()> {
        Store::checkpoint_indexes(self)
    }

    fn reclaimable_bytes_estimate(&self) -> Result<u64> {
        Store::estimate_reclaimable_bytes(self)
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{Bytes, EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions};

    use super::*;
    use crate::format::{EventRecord, encode_event};

    fn forged_frame() -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_event(
            &mut bytes,
            &EventRecord {
                stream: "victim-1",
                revision: 0,
                id: 42,
                event_type: "Forged",
                json: false,
                created_nanos: 0,
                data: b"not really here",
                metadata: &[],
                commit: true,
            },
        );
        bytes
    }

    #[tokio::test]
    async fn an_existing_store_keeps_the_segment_size_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        let small = Config::small_for_tests();
        let store = Store::open(dir.path(), small.clone()).unwrap();
        let stream = StreamName::new("kept").unwrap();
        let event = ProposedEvent::json("E", "{}");
        store
            .append(&stream, ExpectedRevision::NoStream, vec![event])
            .await
            .unwrap();
        store.close();
        drop(store);
        let larger = Config {
            segment_size_bytes: small.segment_size_bytes * 2,
            ..small
        };
        let reopened = Store::open(dir.path(), larger).unwrap();
        assert_eq!(
            reopened.shared.segments.size_bytes(),
            small.segment_size_bytes
        );
        assert_eq!(reopened.event_count(), 1);
        reopened.close();
    }

    #[tokio::test]
    async fn positions_inside_event_data_are_refused_even_when_they_hold_a_valid_frame() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        // Stream and type of 8 bytes each put the data at offset 72 of the frame: 8-aligned.
        let stream = StreamName::new("s-123456").unwrap();
        let event = ProposedEvent::binary("Fake1234", Bytes::from(forged_frame()));
        let written = store
            .append(&stream, ExpectedRevision::NoStream, vec![event])
            .await
            .unwrap();
        let inside = written.position.0 + 72;
        for position in [inside, written.position.0 + 3, u64::MAX - 7] {
            let forwards = store
                .read_all(ReadAllOptions::forwards().from_position(Position(position)))
                .await;
            let backwards = store
                .read_all(ReadAllOptions::backwards().from_position(Position(position)))
                .await;
            for (direction, result) in [("forwards", forwards), ("backwards", backwards)] {
                match result {
                    Err(Error::InvalidArgument { .. }) => {}
                    Ok(slice) if position >= store.durable_end() => {
                        assert!(slice.events.len() <= 1)
                    }
                    other => panic!(
                        "{direction} from {position}: expected InvalidArgument, got {other:?}"
                    ),
                }
            }
        }
        let from_event = store
            .read_all(ReadAllOptions::forwards().from_position(written.position))
            .await
            .unwrap();
        assert_eq!(from_event.events.len(), 1, "the real position still works");
        store.close();
    }
}
