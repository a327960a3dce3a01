//! A counter aggregate and a store wrapper that counts the events loads read (and can run
//! another writer's work just before an append).

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata::{Aggregate, DomainEvent};
use strata_core::{
    AllSlice, AppendResult, DeleteResult, Error, ExpectedRevision, Limits, Position, ProposedEvent,
    ReadAllOptions, ReadStreamOptions, Result, StreamName, StreamSlice, StreamState,
};
use strata_engine::{Config, Store};
use tokio::sync::watch;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    pub value: u64,
    pub additions: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum CounterEvent {
    Added { by: u64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> &'static str {
        "Added"
    }

    fn schema_version(&self) -> u32 {
        2
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cannot add zero")]
pub struct AddZero;

impl Aggregate for Counter {
    const CATEGORY: &'static str = "counter";
    type Command = u64;
    type Event = CounterEvent;
    type Error = AddZero;

    fn handle(&self, by: &u64) -> Result<Vec<CounterEvent>, AddZero> {
        if *by == 0 {
            return Err(AddZero);
        }
        Ok(vec![CounterEvent::Added { by: *by }])
    }

    fn apply(&mut self, event: &CounterEvent) {
        let CounterEvent::Added { by } = event;
        self.value += by;
        self.additions += 1;
    }
}

/// Work run once, just before the next append goes to the store.
pub type BeforeAppend = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The embedded engine, counting the events read from non-system streams, and able to
/// refuse every append as a conflict or to let another writer go first.
pub struct CountingStore {
    pub inner: Arc<Store>,
    pub events_read: AtomicU64,
    pub refuse_appends: AtomicBool,
    pub before_next_append: Mutex<Option<BeforeAppend>>,
}

impl CountingStore {
    pub fn open(dir: &std::path::Path) -> Arc<Self> {
        Arc::new(Self {
            inner: Store::open(dir, Config::small_for_tests()).expect("open store"),
            events_read: AtomicU64::new(0),
            refuse_appends: AtomicBool::new(false),
            before_next_append: Mutex::new(None),
        })
    }

    pub fn take_events_read(&self) -> u64 {
        self.events_read.swap(0, Ordering::SeqCst)
    }
}

#[async_trait]
impl strata_core::EventStore for CountingStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        let before = self.before_next_append.lock().expect("hook").take();
        if let Some(before) = before {
            before.await;
        }
        if self.refuse_appends.load(Ordering::SeqCst) {
            return Err(Error::WrongExpectedRevision {
                stream: stream.clone(),
                expected,
                actual: StreamState::NoStream,
            });
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        let slice = self.inner.read_stream(stream, options).await?;
        if let StreamSlice::Found { events, .. } = &slice
            && !stream.is_system()
        {
            self.events_read
                .fetch_add(events.len() as u64, Ordering::SeqCst);
        }
        Ok(slice)
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        self.inner.read_all(options).await
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        self.inner.stream_state(stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.inner.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.inner.tombstone_stream(stream, expected).await
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        self.inner.last_position().await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }
}
