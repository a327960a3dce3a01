//! A group whose store fails (a PostgreSQL session terminated, the server restarting) stops
//! delivering and refuses consumers; once the store answers again the manager's supervisor
//! starts it again from its checkpoint, without a restart of the node or a leadership
//! change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_core::system_streams::{IndexKey, IndexSlice};
use strata_core::{
    AllSlice, AppendResult, DeleteResult, Error, EventId, EventStore, ExpectedRevision, Limits,
    Position, ProposedEvent, ReadAllOptions, ReadStreamOptions, StreamName, StreamSlice,
    StreamState,
};
use strata_engine::{Config, Store};
use strata_persistent::{
    ConsumerOptions, GroupSettings, PersistentSubscriptions, SUPERVISE_INTERVAL, StartFrom,
    SubscriptionSource,
};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);

/// The engine behind a switch: while `down`, every read and append fails as a store whose
/// server went away would.
struct OutageStore {
    inner: Arc<Store>,
    down: AtomicBool,
}

impl OutageStore {
    fn check(&self) -> strata_core::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::io(
                "reading from the store",
                std::io::Error::other("the store's server went away"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for OutageStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> strata_core::Result<AppendResult> {
        self.check()?;
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> strata_core::Result<StreamSlice> {
        self.check()?;
        self.inner.read_stream(stream, options).await
    }
    async fn read_all(&self, options: ReadAllOptions) -> strata_core::Result<AllSlice> {
        self.check()?;
        self.inner.read_all(options).await
    }
    async fn read_index(
        &self,
        key: &IndexKey,
        options: ReadStreamOptions,
    ) -> strata_core::Result<IndexSlice> {
        self.check()?;
        self.inner.read_index(key, options).await
    }
    async fn stream_state(&self, stream: &StreamName) -> strata_core::Result<StreamState> {
        self.check()?;
        self.inner.stream_state(stream).await
    }
    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.check()?;
        self.inner.delete_stream(stream, expected).await
    }
    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.check()?;
        self.inner.tombstone_stream(stream, expected).await
    }
    async fn last_position(&self) -> strata_core::Result<Option<Position>> {
        self.check()?;
        self.inner.last_position().await
    }
    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }
}

async fn append(store: &dyn EventStore, count: usize) -> Vec<EventId> {
    let events: Vec<ProposedEvent> = (0..count)
        .map(|index| ProposedEvent::json("Counted", format!("{{\"n\":{index}}}")))
        .collect();
    let ids = events.iter().map(|event| event.id).collect();
    store
        .append(
            &StreamName::new("ledger").unwrap(),
            ExpectedRevision::Any,
            events,
        )
        .await
        .unwrap();
    ids
}

fn options() -> ConsumerOptions {
    ConsumerOptions {
        buffer_size: 10,
        name: String::new(),
    }
}

#[tokio::test]
async fn a_group_whose_store_failed_resumes_from_its_checkpoint_once_the_store_answers() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let store = Arc::new(OutageStore {
        inner: Arc::clone(&inner),
        down: AtomicBool::new(false),
    });
    let subscriptions = Arc::new(PersistentSubscriptions::new(Arc::clone(&store)));
    let supervisor = subscriptions.supervise();
    let source = SubscriptionSource::Stream(StreamName::new("ledger").unwrap());
    let settings = GroupSettings {
        start_from: StartFrom::Start,
        min_checkpoint_count: 1,
        max_checkpoint_count: 1,
        checkpoint_after_ms: 0,
        ..GroupSettings::default()
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    let mut consumer = subscriptions
        .connect(&source, "g", options())
        .await
        .unwrap();
    append(&*store, 3).await;
    for _ in 0..3 {
        let event = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap()
            .unwrap();
        consumer.ack(vec![event.ack_id()]).await.unwrap();
    }
    // Let the checkpoint of the three acks land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The store goes away; events written meanwhile (by another node, say) make the group
    // read, and fail.
    store.down.store(true, Ordering::SeqCst);
    let written_during_the_outage = append(&*inner, 4).await;
    let ended = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
    assert!(ended.is_err(), "the consumer is dropped: {ended:?}");
    let refused = subscriptions.connect(&source, "g", options()).await;
    assert!(
        refused.is_err(),
        "a failed group refuses consumers while its store is down"
    );

    // The store answers again: within a few supervisor rounds the group takes consumers and
    // delivers what was written since its checkpoint, and nothing before it.
    store.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + SUPERVISE_INTERVAL * 5;
    let mut consumer = loop {
        match subscriptions.connect(&source, "g", options()).await {
            Ok(consumer) => break consumer,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the group did not resume: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut delivered = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap()
            .unwrap();
        delivered.push(event.event_or_link().id);
        consumer.ack(vec![event.ack_id()]).await.unwrap();
    }
    assert_eq!(delivered, written_during_the_outage);
    let extra = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(extra.is_err(), "nothing else is delivered: {extra:?}");
    supervisor.abort();
}
