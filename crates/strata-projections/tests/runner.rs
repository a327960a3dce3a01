//! Projections run over the embedded engine: sources, states, results, emits, partitions,
//! continuous mode, restarts, and exactly-once after failures at every write.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use strata_core::system_streams::{IndexKey, IndexSlice};
use strata_core::{
    AllSlice, AppendResult, DeleteResult, Error, EventStore, ExpectedRevision, Limits, Position,
    ProposedEvent, ReadAllOptions, ReadStreamOptions, RecordedEvent, StreamName, StreamSlice,
    StreamState,
};
use strata_projections::{
    Mode, PARTITIONS_CACHED_MAX_DEFAULT, Progress, QueryDefinition, QuickJsEngine, RunConfig,
    RunHandle, RunStatus, SandboxLimits, stored_result, stored_state,
};
use tokio::sync::watch;

fn open() -> (tempfile::TempDir, Arc<strata_engine::Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())
        .expect("store opens");
    (dir, store)
}

async fn append(store: &dyn EventStore, stream: &str, event_type: &str, data: &str) {
    store
        .append(
            &StreamName::new(stream).unwrap(),
            ExpectedRevision::Any,
            vec![ProposedEvent::json(event_type, data.to_owned())],
        )
        .await
        .expect("append");
}

async fn read(store: &dyn EventStore, stream: &str) -> Vec<RecordedEvent> {
    match store
        .read_stream(
            &StreamName::new(stream).unwrap(),
            ReadStreamOptions::forwards(),
        )
        .await
    {
        Ok(slice) => slice.into_events(),
        Err(Error::StreamDeleted { .. }) => Vec::new(),
        Err(error) => panic!("read {stream}: {error}"),
    }
}

fn config(name: &str, query: &str, mode: Mode) -> RunConfig {
    RunConfig {
        name: name.to_owned(),
        query: query.to_owned(),
        mode,
        emit_enabled: true,
        track_emitted_streams: true,
        epoch: 0,
        batch_events: 3,
        // Checkpoints fall inside reads, and a failure at any write meets them.
        checkpoint_events: 2,
        limits: SandboxLimits::default(),
        partitions_cached_max: PARTITIONS_CACHED_MAX_DEFAULT,
    }
}

fn start(store: Arc<dyn EventStore>, config: RunConfig) -> RunHandle {
    RunHandle::start(
        store,
        Arc::new(QuickJsEngine),
        config,
        tokio::runtime::Handle::current(),
    )
    .expect("starts")
}

/// Waits (bounded) until `done` holds for the run's progress.
async fn wait_for(handle: &RunHandle, done: impl Fn(&Progress) -> bool) -> Progress {
    for _ in 0..3_000 {
        let progress = handle.progress();
        if done(&progress) {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the run did not get there: {:?}", handle.progress());
}

async fn run_to_end(store: Arc<dyn EventStore>, config: RunConfig) -> Progress {
    let handle = start(store, config);
    wait_for(&handle, |progress| progress.status != RunStatus::Running).await
}

async fn state_of(
    store: &dyn EventStore,
    name: &str,
    query: &str,
    partition: &str,
) -> Option<String> {
    let definition = definition(query);
    stored_state(store, name, 0, &definition, partition)
        .await
        .expect("state reads")
}

fn definition(query: &str) -> QueryDefinition {
    use strata_projections::EngineFactory;
    QuickJsEngine
        .compile(query, SandboxLimits::default())
        .expect("compiles")
        .definition()
        .clone()
}

const COUNT_ORDERS: &str = "fromCategory('order').when({
    $init: () => ({ placed: 0, total: 0 }),
    Placed: (s, e) => { s.placed++; s.total += e.data.total; }
}).outputState()";

async fn seed_orders(store: &dyn EventStore) {
    append(store, "order-1", "Placed", r#"{"total":10}"#).await;
    append(store, "cart-1", "Placed", r#"{"total":1000}"#).await;
    append(store, "order-2", "Placed", r#"{"total":5}"#).await;
    append(store, "order-1", "Shipped", "{}").await;
    append(store, "order-3", "Placed", r#"{"total":1}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_from_category_counts_only_its_category() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    let progress = run_to_end(store.clone(), config("orders", COUNT_ORDERS, Mode::OneTime)).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    assert_eq!(progress.events_processed, 4, "only order-* events are read");
    assert_eq!(
        state_of(&*store, "orders", COUNT_ORDERS, "")
            .await
            .as_deref(),
        Some(r#"{"placed":3,"total":16}"#)
    );
    let results = read(&*store, "$projections-orders-result").await;
    assert_eq!(
        results.len(),
        3,
        "a result per handled event (Shipped has no handler)"
    );
    assert!(results.iter().all(|event| event.event_type == "Result"));
    let sources = read(&*store, "order-3").await;
    let metadata: serde_json::Value = serde_json::from_slice(&results[2].metadata).unwrap();
    assert_eq!(metadata["$causedBy"], sources[0].id.to_string());
    let result = stored_result(&*store, "orders", 0, &definition(COUNT_ORDERS), "")
        .await
        .unwrap();
    assert_eq!(result.as_deref(), Some(r#"{"placed":3,"total":16}"#));
    assert!(
        !read(&*store, "$projections-orders-checkpoint")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_all_skips_system_streams_and_from_streams_merges_in_log_order() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    let query = "fromAll().when({ $init: () => ({ n: 0 }), $any: (s, e) => { s.n++; } })";
    run_to_end(store.clone(), config("all", query, Mode::OneTime)).await;
    assert_eq!(
        state_of(&*store, "all", query, "").await.as_deref(),
        Some(r#"{"n":5}"#)
    );
    let query = "fromStreams(['order-2', 'order-1']).when({
        $init: () => ({ seen: [] }),
        $any: (s, e) => { s.seen.push(e.streamId + ':' + e.sequenceNumber); }
    })";
    run_to_end(store.clone(), config("streams", query, Mode::OneTime)).await;
    assert_eq!(
        state_of(&*store, "streams", query, "").await.as_deref(),
        Some(r#"{"seen":["order-1:0","order-2:0","order-1:1"]}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    run_to_end(store.clone(), config("orders", COUNT_ORDERS, Mode::OneTime)).await;
    append(&*store, "order-4", "Placed", r#"{"total":100}"#).await;
    // Completed: a one-time projection does not run again.
    let progress = run_to_end(store.clone(), config("orders", COUNT_ORDERS, Mode::OneTime)).await;
    assert_eq!(progress.status, RunStatus::Completed);
    assert_eq!(
        progress.events_processed, 0,
        "completed before: nothing is read"
    );
    assert_eq!(
        state_of(&*store, "orders", COUNT_ORDERS, "")
            .await
            .as_deref(),
        Some(r#"{"placed":3,"total":16}"#)
    );
    // A continuous run over the same checkpoint goes on from it.
    let handle = start(
        store.clone(),
        config("orders", COUNT_ORDERS, Mode::Continuous),
    );
    let progress = wait_for(&handle, |progress| progress.caught_up).await;
    assert_eq!(progress.events_processed, 1, "only the new event is read");
    handle.join();
    assert_eq!(
        state_of(&*store, "orders", COUNT_ORDERS, "")
            .await
            .as_deref(),
        Some(r#"{"placed":4,"total":116}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_follows_the_log_until_stopped() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    let handle = start(
        store.clone(),
        config("orders", COUNT_ORDERS, Mode::Continuous),
    );
    wait_for(&handle, |progress| progress.caught_up).await;
    append(&*store, "order-9", "Placed", r#"{"total":2}"#).await;
    wait_for(&handle, |progress| progress.events_processed == 5).await;
    let progress = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap();
    assert_eq!(progress.status, RunStatus::Stopped);
    assert_eq!(
        state_of(&*store, "orders", COUNT_ORDERS, "")
            .await
            .as_deref(),
        Some(r#"{"placed":4,"total":18}"#)
    );
}

const PER_STREAM: &str = "fromCategory('order').foreachStream().when({
    $init: () => ({ events: 0 }),
    $created: (s, e) => { emit('started', 'Started', { stream: e.streamId }); },
    $any: (s, e) => { s.events++; linkTo('all-orders', e); }
})";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreach_stream_keeps_a_state_per_stream_and_emits() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    run_to_end(store.clone(), config("per", PER_STREAM, Mode::OneTime)).await;
    assert_eq!(
        state_of(&*store, "per", PER_STREAM, "order-1")
            .await
            .as_deref(),
        Some(r#"{"events":2}"#)
    );
    let partitions: Vec<String> = read(&*store, "$projections-per-partitions")
        .await
        .iter()
        .map(|event| String::from_utf8_lossy(&event.data).into_owned())
        .collect();
    assert_eq!(partitions, ["order-1", "order-2", "order-3"]);
    let links: Vec<String> = read(&*store, "all-orders")
        .await
        .iter()
        .map(|event| String::from_utf8_lossy(&event.data).into_owned())
        .collect();
    assert_eq!(links, ["0@order-1", "0@order-2", "1@order-1", "0@order-3"]);
    assert_eq!(read(&*store, "started").await.len(), 3);
    let tracked = read(&*store, "$projections-per-emittedstreams").await;
    assert_eq!(tracked.len(), 2, "started and all-orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_query_faults_with_its_reason() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    let query = "fromAll().when({ $any: (s, e) => { while (true) {} } })";
    let progress = run_to_end(store.clone(), config("loop", query, Mode::Continuous)).await;
    assert_eq!(progress.status, RunStatus::Faulted);
    let reason = progress.fault.unwrap_or_default();
    assert!(reason.contains("deadline of 250 ms"), "{reason}");
    let progress = run_to_end(store.clone(), config("bad", "fromAll(", Mode::Continuous)).await;
    assert_eq!(progress.status, RunStatus::Faulted);
    assert!(
        progress
            .fault
            .unwrap_or_default()
            .contains("does not compile")
    );
    let mut no_emit = config("noemit", PER_STREAM, Mode::OneTime);
    no_emit.emit_enabled = false;
    let progress = run_to_end(store.clone(), no_emit).await;
    assert!(
        progress
            .fault
            .unwrap_or_default()
            .contains("'emit' is not allowed"),
        "emit refused"
    );
}

/// A store whose `fail_at`-th append fails, as a crash at that write would leave it, and
/// that counts what a run reads: `$all` reads (a scan) apart from the events read through
/// the indexes and the tombstone list.
struct WatchedStore {
    inner: Arc<strata_engine::Store>,
    appends: AtomicUsize,
    fail_at: usize,
    all_reads: AtomicUsize,
    events_read: AtomicUsize,
}

impl WatchedStore {
    fn new(inner: Arc<strata_engine::Store>, fail_at: usize) -> Arc<Self> {
        Arc::new(Self {
            inner,
            appends: AtomicUsize::new(0),
            fail_at,
            all_reads: AtomicUsize::new(0),
            events_read: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl EventStore for WatchedStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> strata_core::Result<AppendResult> {
        if self.appends.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(Error::Closed);
        }
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> strata_core::Result<StreamSlice> {
        self.inner.read_stream(stream, options).await
    }
    async fn read_all(&self, options: ReadAllOptions) -> strata_core::Result<AllSlice> {
        self.all_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_all(options).await
    }
    async fn read_index(
        &self,
        key: &IndexKey,
        options: ReadStreamOptions,
    ) -> strata_core::Result<IndexSlice> {
        let slice = self.inner.read_index(key, options).await?;
        self.events_read
            .fetch_add(slice.events.len(), Ordering::SeqCst);
        Ok(slice)
    }
    async fn read_tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> strata_core::Result<Vec<RecordedEvent>> {
        let tombstones = self.inner.read_tombstones(after, up_to, max).await?;
        self.events_read
            .fetch_add(tombstones.len(), Ordering::SeqCst);
        Ok(tombstones)
    }
    async fn stream_state(&self, stream: &StreamName) -> strata_core::Result<StreamState> {
        self.inner.stream_state(stream).await
    }
    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.inner.delete_stream(stream, expected).await
    }
    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.inner.tombstone_stream(stream, expected).await
    }
    async fn last_position(&self) -> strata_core::Result<Option<Position>> {
        self.inner.last_position().await
    }
    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }
}

/// What a run leaves behind that must not depend on crashes: states, results, emits.
async fn outcome(store: &dyn EventStore) -> Vec<(String, Vec<(String, String, String)>)> {
    let mut streams = Vec::new();
    for stream in [
        "started",
        "all-orders",
        "$projections-per-partitions",
        "$projections-per-emittedstreams",
        "$projections-per-order-1-checkpoint",
        "$projections-per-order-2-checkpoint",
        "$projections-per-order-3-checkpoint",
    ] {
        let events = read(store, stream)
            .await
            .iter()
            .map(|event| {
                (
                    event.id.to_string(),
                    event.event_type.clone(),
                    String::from_utf8_lossy(&event.data).into_owned(),
                )
            })
            .collect();
        streams.push((stream.to_owned(), events));
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_write_then_a_restart_ends_as_an_uninterrupted_run() {
    let (_dir, reference) = open();
    seed_orders(&*reference).await;
    let counted = WatchedStore::new(reference.clone(), usize::MAX);
    run_to_end(counted.clone(), config("per", PER_STREAM, Mode::OneTime)).await;
    let expected = outcome(&*reference).await;
    let writes = counted.appends.load(Ordering::SeqCst);
    assert!(writes > 5, "the run writes in several appends ({writes})");
    for fail_at in 1..=writes {
        let (_dir, store) = open();
        seed_orders(&*store).await;
        let failing = WatchedStore::new(store.clone(), fail_at);
        let progress = run_to_end(failing, config("per", PER_STREAM, Mode::OneTime)).await;
        assert_eq!(
            progress.status,
            RunStatus::Faulted,
            "append {fail_at} failed"
        );
        let progress = run_to_end(store.clone(), config("per", PER_STREAM, Mode::OneTime)).await;
        assert_eq!(progress.status, RunStatus::Completed);
        assert_eq!(
            outcome(&*store).await,
            expected,
            "after a failure at append {fail_at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_partitions_come_back_with_their_state() {
    const PER_ACCOUNT: &str = "fromCategory('account').foreachStream().when({
        $init: () => ({ n: 0, sum: 0 }),
        $created: (s, e) => { emit('opened', 'Opened', { stream: e.streamId }); },
        Deposited: (s, e) => { s.n++; s.sum += e.data.amount; }
    })";
    let (_dir, store) = open();
    // Twelve accounts, written round-robin, so each batch meets partitions evicted before.
    for round in 0..4_u32 {
        for account in 0..12_u32 {
            let data = format!(r#"{{"amount":{}}}"#, round * 100 + account);
            append(&*store, &format!("account-{account}"), "Deposited", &data).await;
        }
    }
    let bounded = RunConfig {
        partitions_cached_max: 2,
        ..config("bounded", PER_ACCOUNT, Mode::OneTime)
    };
    let progress = run_to_end(store.clone(), bounded).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    assert!(progress.partitions_cached <= 2 + 3, "{progress:?}");
    run_to_end(
        store.clone(),
        config("unbounded", PER_ACCOUNT, Mode::OneTime),
    )
    .await;
    for account in 0..12_u32 {
        let partition = format!("account-{account}");
        let sum: u32 = (0..4).map(|round| round * 100 + account).sum();
        let expected = format!(r#"{{"n":4,"sum":{sum}}}"#);
        for name in ["bounded", "unbounded"] {
            assert_eq!(
                state_of(&*store, name, PER_ACCOUNT, &partition)
                    .await
                    .as_deref(),
                Some(expected.as_str()),
                "{name} {partition}"
            );
        }
    }
    // A partition comes back from its checkpoint: `$created` ran once per account.
    let opened = read(&*store, "opened").await;
    let by_bounded = opened
        .iter()
        .filter(|event| {
            String::from_utf8_lossy(&event.metadata).contains(r#""$projection":"bounded""#)
        })
        .count();
    assert_eq!(by_bounded, 12);
    let catalog = read(&*store, "$projections-bounded-partitions").await;
    assert_eq!(catalog.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_streams_matching_keeps_a_state_per_accepted_stream() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    let query = "fromStreamsMatching(function (streamId) {
        return streamId.indexOf('order-') === 0 && streamId !== 'order-3';
    }).when({
        $init: () => ({ n: 0 }),
        $any: (s, e) => { s.n++; }
    })";
    let progress = run_to_end(store.clone(), config("matching", query, Mode::OneTime)).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    let state = |partition: &'static str| {
        let store = store.clone();
        async move { state_of(&*store, "matching", query, partition).await }
    };
    assert_eq!(state("order-1").await.as_deref(), Some(r#"{"n":2}"#));
    assert_eq!(state("order-2").await.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(state("order-3").await, None, "refused by the filter");
    assert_eq!(state("cart-1").await, None, "refused by the filter");
    let partitions: Vec<String> = read(&*store, "$projections-matching-partitions")
        .await
        .iter()
        .map(|event| String::from_utf8_lossy(&event.data).into_owned())
        .collect();
    assert_eq!(partitions, ["order-1", "order-2"]);
}

/// The reference's `when_handling_deleted/with_from_category_foreach_projection` query.
const ON_DELETED: &str = "fromCategory('stream').foreachStream().when({
    $init: function () { return { a: 0 }; },
    type1: function (s, e) { s.a++; },
    type2: function (s, e) { s.a++; },
    $deleted: function (s, e, partition, isSoftDelete) {
        s.deleted = 1;
        if (!isSoftDelete) emit('hard-deletes', 'Deleted', { partition: partition });
    }
}).outputState()";

async fn tombstone(store: &dyn EventStore, stream: &str) {
    store
        .tombstone_stream(&StreamName::new(stream).unwrap(), ExpectedRevision::Any)
        .await
        .expect("tombstone");
}

/// The data of each event of `stream`.
async fn data_of(store: &dyn EventStore, stream: &str) -> Vec<String> {
    read(store, stream)
        .await
        .iter()
        .map(|event| String::from_utf8_lossy(&event.data).into_owned())
        .collect()
}

/// Waits (bounded) until `stream` holds `count` events.
async fn wait_for_events(store: &dyn EventStore, stream: &str, count: usize) {
    for _ in 0..3_000 {
        if read(store, stream).await.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{stream} did not reach {count} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_reaches_the_deleted_handler_of_a_category_source_live() {
    // The reference's `when_running_and_then_other_events_tombstone_ant_other_events`: the
    // results of each partition, the deleted one ending with the `$deleted` handler's.
    let (_dir, store) = open();
    let handle = start(store.clone(), config("test", ON_DELETED, Mode::Continuous));
    append(&*store, "stream-1", "type1", "{}").await;
    append(&*store, "stream-1", "type2", "{}").await;
    append(&*store, "stream-2", "type1", "{}").await;
    append(&*store, "stream-2", "type2", "{}").await;
    wait_for_events(&*store, "$projections-test-stream-2-result", 2).await;
    tombstone(&*store, "stream-1").await;
    // Another category's tombstone is not this projection's.
    append(&*store, "other-1", "type1", "{}").await;
    tombstone(&*store, "other-1").await;
    append(&*store, "stream-2", "type1", "{}").await;
    append(&*store, "stream-2", "type2", "{}").await;
    append(&*store, "stream-3", "type1", "{}").await;
    wait_for_events(&*store, "$projections-test-stream-3-result", 1).await;
    let progress = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap();
    assert_eq!(progress.status, RunStatus::Stopped, "{progress:?}");
    assert_eq!(
        data_of(&*store, "$projections-test-stream-1-result").await,
        [r#"{"a":1}"#, r#"{"a":2}"#, r#"{"a":2,"deleted":1}"#]
    );
    assert_eq!(
        data_of(&*store, "$projections-test-stream-2-result")
            .await
            .last()
            .map(String::as_str),
        Some(r#"{"a":4}"#)
    );
    assert_eq!(
        data_of(&*store, "$projections-test-stream-3-result").await,
        [r#"{"a":1}"#]
    );
    assert_eq!(
        data_of(&*store, "hard-deletes").await,
        [r#"{"partition":"stream-1"}"#]
    );
    assert_eq!(
        state_of(&*store, "test", ON_DELETED, "stream-1")
            .await
            .as_deref(),
        Some(r#"{"a":2,"deleted":1}"#)
    );
    assert_eq!(state_of(&*store, "test", ON_DELETED, "other-1").await, None);

    // A restart goes on after the tombstone: the handler does not run twice.
    append(&*store, "stream-3", "type2", "{}").await;
    let handle = start(store.clone(), config("test", ON_DELETED, Mode::Continuous));
    wait_for_events(&*store, "$projections-test-stream-3-result", 2).await;
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap();
    assert_eq!(
        data_of(&*store, "hard-deletes").await.len(),
        1,
        "one notification"
    );
    assert_eq!(
        data_of(&*store, "$projections-test-stream-1-result")
            .await
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_written_before_the_projection_is_met_in_log_order_on_catch_up() {
    // The reference's `when_running_and_events_are_indexed_including_tombstone`. Strata's
    // category index keeps the tombstoned stream's events, so the partition counts them
    // before its `$deleted` runs (the reference, reading `$ce-` links it can no longer
    // resolve, gives `{"a":0,"deleted":1}`, a case its own suite marks as a regression).
    let (_dir, store) = open();
    append(&*store, "stream-1", "type1", "{}").await;
    append(&*store, "stream-2", "type1", "{}").await;
    append(&*store, "stream-2", "type2", "{}").await;
    append(&*store, "stream-1", "type2", "{}").await;
    tombstone(&*store, "stream-1").await;
    // More events than a read takes, after the tombstone, so the scan and the category
    // meet across reads.
    for _ in 0..5 {
        append(&*store, "stream-2", "type1", "{}").await;
    }
    let progress = run_to_end(store.clone(), config("test", ON_DELETED, Mode::OneTime)).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    assert_eq!(
        data_of(&*store, "$projections-test-stream-1-result").await,
        [r#"{"a":1}"#, r#"{"a":2}"#, r#"{"a":2,"deleted":1}"#]
    );
    assert_eq!(
        state_of(&*store, "test", ON_DELETED, "stream-2")
            .await
            .as_deref(),
        Some(r#"{"a":7}"#)
    );
    assert_eq!(data_of(&*store, "hard-deletes").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_catch_up_with_tombstones_reads_the_category_and_the_tombstones_only() {
    let (_dir, store) = open();
    append(&*store, "stream-1", "type1", "{}").await;
    append(&*store, "stream-2", "type1", "{}").await;
    // The rest of the log: another category, far more events than the projection's.
    for n in 0..600 {
        append(&*store, &format!("noise-{}", n % 7), "type1", "{}").await;
    }
    tombstone(&*store, "stream-1").await;
    tombstone(&*store, "noise-3").await;
    append(&*store, "stream-2", "type2", "{}").await;
    let end = store.last_position().await.unwrap().unwrap();

    // The engine answers from its list of tombstones what a scan of `$all` finds.
    let listed = |events: Vec<RecordedEvent>| {
        events
            .into_iter()
            .map(|event| {
                (
                    event.stream.as_str().to_owned(),
                    event.position,
                    event.event_type,
                )
            })
            .collect::<Vec<_>>()
    };
    for (after, max) in [(None, 10), (None, 1), (Some(Position(0)), 10)] {
        let kept = store.read_tombstones(after, end, max).await.unwrap();
        let scanned = strata_core::read_tombstones_by_scanning(&*store, after, end, max)
            .await
            .unwrap();
        assert_eq!(listed(kept), listed(scanned), "after {after:?}, max {max}");
    }
    let all = listed(store.read_tombstones(None, end, 10).await.unwrap());
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].0, "stream-1");
    assert!(
        store
            .read_tombstones(Some(all[1].1), end, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let counting = WatchedStore::new(store.clone(), usize::MAX);
    // One read takes the whole catch-up (the other tests read 3 events at a time, which
    // reads again what a batch left over).
    let mut whole = config("test", ON_DELETED, Mode::OneTime);
    whole.batch_events = 512;
    let progress = run_to_end(counting.clone(), whole).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    assert_eq!(
        data_of(&*store, "$projections-test-stream-1-result").await,
        [r#"{"a":1}"#, r#"{"a":1,"deleted":1}"#]
    );
    assert_eq!(
        counting.all_reads.load(Ordering::SeqCst),
        0,
        "no scan of $all"
    );
    // The category's 3 events and the 2 tombstones (the other category's passed over).
    assert_eq!(counting.events_read.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_without_foreach_stream_faults_as_the_reference_refuses_it() {
    let (_dir, store) = open();
    seed_orders(&*store).await;
    for query in [
        "fromStreams(['order-1', 'order-2']).when({ $any: (s, e) => s, $deleted: (s) => s })",
        "fromCategory('order').when({ $any: (s, e) => s, $deleted: (s) => s })",
    ] {
        let progress = run_to_end(store.clone(), config("deleted", query, Mode::OneTime)).await;
        assert_eq!(progress.status, RunStatus::Faulted, "{query}");
        let reason = progress.fault.unwrap_or_default();
        assert!(
            reason.contains("Deleted stream notifications are only supported with foreachStream()"),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_each_events_own_fields_as_they_change_and_repeat() {
    // The runner reuses its view's strings and the engine the JavaScript strings of fields
    // that repeat: each event must still show its own fields.
    let (_dir, store) = open();
    append(&*store, "order-1", "Placed", r#"{"n":1}"#).await;
    append(&*store, "order-1", "Placed", r#"{"n":2}"#).await;
    append(&*store, "cart-1", "Added", r#"{"n":3}"#).await;
    append(&*store, "order-1", "Shipped", r#"{"n":4}"#).await;
    let query = "fromAll().when({
        $init: () => ({ seen: [] }),
        $any: (s, e) => {
            s.seen.push([e.streamId, e.eventType, e.category, e.sequenceNumber, e.eventId,
                e.created, e.data.n, e.bodyRaw]);
        }
    })";
    let progress = run_to_end(store.clone(), config("fields", query, Mode::OneTime)).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    let state: serde_json::Value =
        serde_json::from_str(&state_of(&*store, "fields", query, "").await.unwrap()).unwrap();
    let mut expected = Vec::new();
    for stream in ["order-1", "cart-1"] {
        for event in read(&*store, stream).await {
            expected.push((event.position, event));
        }
    }
    expected.sort_by_key(|(position, _)| *position);
    let expected: Vec<serde_json::Value> = expected
        .into_iter()
        .map(|(_, event)| {
            let data: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
            serde_json::json!([
                event.stream.as_str(),
                event.event_type,
                event.stream.as_str().split('-').next().unwrap(),
                event.revision.0,
                event.id.to_string(),
                event.created.to_rfc3339(3),
                data["n"],
                String::from_utf8_lossy(&event.data),
            ])
        })
        .collect();
    assert_eq!(state["seen"], serde_json::Value::Array(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_write_with_a_tombstone_then_a_restart_ends_as_an_uninterrupted_run() {
    // The tombstone scan's cursor and the category's, checkpointed inside reads (3 events
    // per read, a checkpoint every 2), through a failure at every append.
    async fn seed(store: &dyn EventStore) {
        append(store, "stream-1", "type1", "{}").await;
        append(store, "stream-2", "type1", "{}").await;
        append(store, "stream-1", "type2", "{}").await;
        tombstone(store, "stream-1").await;
        append(store, "stream-2", "type2", "{}").await;
        append(store, "other-1", "type1", "{}").await;
        tombstone(store, "other-1").await;
        append(store, "stream-3", "type1", "{}").await;
        append(store, "stream-2", "type1", "{}").await;
    }
    async fn outcome(store: &dyn EventStore) -> Vec<(String, Vec<(String, String, String)>)> {
        let mut streams = Vec::new();
        for stream in [
            "hard-deletes",
            "$projections-test-stream-1-result",
            "$projections-test-stream-2-result",
            "$projections-test-stream-3-result",
            "$projections-test-partitions",
            "$projections-test-emittedstreams",
            "$projections-test-stream-1-checkpoint",
            "$projections-test-stream-2-checkpoint",
            "$projections-test-stream-3-checkpoint",
        ] {
            let events = read(store, stream)
                .await
                .iter()
                .map(|event| {
                    (
                        event.id.to_string(),
                        event.event_type.clone(),
                        String::from_utf8_lossy(&event.data).into_owned(),
                    )
                })
                .collect();
            streams.push((stream.to_owned(), events));
        }
        streams
    }
    let (_dir, reference) = open();
    seed(&*reference).await;
    let counted = WatchedStore::new(reference.clone(), usize::MAX);
    let progress = run_to_end(counted.clone(), config("test", ON_DELETED, Mode::OneTime)).await;
    assert_eq!(progress.status, RunStatus::Completed, "{progress:?}");
    let expected = outcome(&*reference).await;
    assert_eq!(
        expected[0].1.len(),
        1,
        "one hard delete of the category: {expected:?}"
    );
    assert_eq!(
        expected[1].1.last().map(|(_, _, data)| data.as_str()),
        Some(r#"{"a":2,"deleted":1}"#)
    );
    let writes = counted.appends.load(Ordering::SeqCst);
    assert!(writes > 5, "the run writes in several appends ({writes})");
    for fail_at in 1..=writes {
        let (_dir, store) = open();
        seed(&*store).await;
        let failing = WatchedStore::new(store.clone(), fail_at);
        let progress = run_to_end(failing, config("test", ON_DELETED, Mode::OneTime)).await;
        assert_eq!(
            progress.status,
            RunStatus::Faulted,
            "append {fail_at} failed"
        );
        let progress = run_to_end(store.clone(), config("test", ON_DELETED, Mode::OneTime)).await;
        assert_eq!(progress.status, RunStatus::Completed);
        assert_eq!(
            outcome(&*store).await,
            expected,
            "after a failure at append {fail_at}"
        );
    }
}
