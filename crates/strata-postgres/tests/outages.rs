//! The database going away under load: a writer's backend ended mid-commit, a commit
//! whose answer never comes, a PostgreSQL restart. Writers resume, nothing acknowledged
//! is lost, nothing is written twice, and `$all` stays gapless. Tests that stop or
//! reconfigure PostgreSQL use a private server (`support/cluster.rs`), never the shared
//! one; the test on the shared server ends only its own store's writer backend.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::PrivateCluster;
use strata_core::{
    Error, EventId, EventStore, ExpectedRevision, Position, ProposedEvent, ReadAllOptions,
    ReadFrom, ReadStreamOptions, RecordedEvent, StreamName, TOMBSTONE_REVISION,
};
use strata_postgres::{PostgresConfig, PostgresStore};
use support::{TestSchema, test_url};
use tokio::task::JoinHandle;

/// Longest a test waits for something that should happen within seconds.
const WAIT_MAX: Duration = Duration::from_secs(120);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One acknowledged append of one event.
#[derive(Clone, Debug)]
struct Acknowledged {
    stream: StreamName,
    id: EventId,
    position: Position,
}

/// Writers appending one event at a time to a stream each, with exact expected revisions;
/// a failed append is sent again with the same event until it is answered.
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Acknowledged>>>,
    errors: Arc<Mutex<Vec<String>>>,
    writers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(store: &Arc<PostgresStore>, writers: usize) -> Self {
        let load = Self {
            stop: Arc::new(AtomicBool::new(false)),
            acknowledged: Arc::default(),
            errors: Arc::default(),
            writers: Vec::new(),
        };
        let writers = (0..writers)
            .map(|writer| {
                let stream = StreamName::new(format!("load-{writer}")).expect("valid");
                tokio::spawn(write(
                    store.clone(),
                    stream,
                    load.stop.clone(),
                    load.acknowledged.clone(),
                    load.errors.clone(),
                ))
            })
            .collect();
        Self { writers, ..load }
    }

    fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().expect("not poisoned").len()
    }

    fn error_count(&self) -> usize {
        self.errors.lock().expect("not poisoned").len()
    }

    /// Waits until `count` appends in all were acknowledged.
    async fn wait_for_acknowledged(&self, count: usize) {
        wait_until("acknowledged appends", || {
            self.acknowledged_count() >= count
        })
        .await;
    }

    async fn finish(self) -> (Vec<Acknowledged>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            tokio::time::timeout(WAIT_MAX, writer)
                .await
                .expect("the writer stops")
                .expect("the writer did not panic");
        }
        let acknowledged = self.acknowledged.lock().expect("not poisoned").clone();
        let errors = self.errors.lock().expect("not poisoned").clone();
        (acknowledged, errors)
    }
}

async fn write(
    store: Arc<PostgresStore>,
    stream: StreamName,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Acknowledged>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut expected = ExpectedRevision::NoStream;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let event = ProposedEvent::json("Loaded", format!(r#"{{"n":{n}}}"#));
        let started = Instant::now();
        loop {
            match store.append(&stream, expected, vec![event.clone()]).await {
                Ok(result) => {
                    acknowledged
                        .lock()
                        .expect("not poisoned")
                        .push(Acknowledged {
                            stream: stream.clone(),
                            id: event.id,
                            position: result.position,
                        });
                    expected = ExpectedRevision::Exact(result.current_revision.0);
                    break;
                }
                Err(error @ Error::WrongExpectedRevision { .. }) => {
                    panic!("re-sending an append of {stream} conflicts: {error}")
                }
                Err(error) => {
                    errors.lock().expect("not poisoned").push(error.to_string());
                    assert!(
                        started.elapsed() < WAIT_MAX,
                        "an append of {stream} kept failing: {error}"
                    );
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT_MAX, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event of `$all`, paging forwards; a read failing on a connection broken by the
/// outage is tried again (the broken connection is replaced on the next read).
async fn all_events(store: &PostgresStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = ReadFrom::Start;
    let started = Instant::now();
    loop {
        let options = ReadAllOptions {
            from,
            max_count: 1_000,
            ..ReadAllOptions::forwards()
        };
        match store.read_all(options).await {
            Ok(slice) => {
                events.extend(slice.events);
                if slice.is_end {
                    return events;
                }
                from = ReadFrom::At(slice.next_position);
            }
            Err(error) => {
                assert!(started.elapsed() < WAIT_MAX, "$all cannot be read: {error}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// `$all` is gapless from 1, holds no event twice, and holds every acknowledged event at
/// its acknowledged position; each stream's revisions count up from 0 (tombstones aside).
async fn assert_nothing_lost_or_doubled(store: &PostgresStore, acknowledged: &[Acknowledged]) {
    let events = all_events(store).await;
    let positions: Vec<u64> = events.iter().map(|event| event.position.0).collect();
    let gapless: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(positions, gapless, "$all is gapless from 1");
    let ids: HashSet<EventId> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids.len(), events.len(), "no event is stored twice");
    let by_id: HashMap<EventId, &RecordedEvent> =
        events.iter().map(|event| (event.id, event)).collect();
    for append in acknowledged {
        let stored = by_id
            .get(&append.id)
            .unwrap_or_else(|| panic!("acknowledged event {:?} was lost", append.id));
        assert_eq!(stored.position, append.position, "{append:?}");
        assert_eq!(stored.stream, append.stream, "{append:?}");
    }
    let mut next_revision: HashMap<&StreamName, u64> = HashMap::new();
    for event in events.iter().filter(|e| e.revision.0 != TOMBSTONE_REVISION) {
        let next = next_revision.entry(&event.stream).or_default();
        assert_eq!(
            event.revision.0, *next,
            "revisions of {} count up",
            event.stream
        );
        *next += 1;
    }
}

/// A connection to the same database as `config`, for the test's own statements.
async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test connects");
    tokio::spawn(connection);
    client
}

/// The pid of the writer session of the store configured by `config`: the newest session
/// of that name (one the writer left behind may still be listed while it ends).
async fn writer_pid(client: &tokio_postgres::Client, config: &PostgresConfig) -> i32 {
    let name = format!("{} writer", config.application_name);
    let mut pid = None;
    let started = Instant::now();
    while pid.is_none() {
        assert!(started.elapsed() < WAIT_MAX, "no session named {name:?}");
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                 ORDER BY backend_start DESC LIMIT 1",
                &[&name],
            )
            .await
            .expect("reads pg_stat_activity");
        pid = row.map(|row| row.get(0));
    }
    pid.unwrap_or_else(|| unreachable!("the loop ends with a pid"))
}

/// Runs `statement` (an `ALTER SYSTEM`) and makes the server read its settings again.
async fn reconfigure(client: &tokio_postgres::Client, statement: &str) {
    client
        .batch_execute(statement)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reloads the settings");
}

async fn stream_ids(store: &PostgresStore, stream: &StreamName) -> Vec<EventId> {
    store
        .read_stream(stream, ReadStreamOptions::forwards())
        .await
        .expect("reads the stream")
        .into_events()
        .iter()
        .map(|event| event.id)
        .collect()
}

/// The writer's backend is ended while its group's COMMIT is queued behind a row lock:
/// the group was not committed, the writer finds that out on a new connection and
/// commits it there; the appender sees success, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_backend_ended_mid_commit_is_settled_and_tried_again() {
    let schema = TestSchema::new();
    let mut config = schema.config();
    config.application_name = schema.name.clone();
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    let victim = StreamName::new("victim-1").expect("valid");
    let first = ProposedEvent::json("Victim", "{}");
    store
        .append(&victim, ExpectedRevision::NoStream, vec![first.clone()])
        .await
        .expect("appends");
    let load = Load::start(&store, 3);
    load.wait_for_acknowledged(30).await;

    let blocker = admin_client(&test_url()).await;
    blocker
        .batch_execute(&format!(
            "SET search_path TO \"{}\"; BEGIN;
             SELECT 1 FROM streams WHERE stream = 'victim-1' FOR UPDATE;",
            schema.name
        ))
        .await
        .expect("locks the victim's head row");
    let second = ProposedEvent::json("Victim", "{}");
    let appending = {
        let store = store.clone();
        let victim = victim.clone();
        let event = second.clone();
        tokio::spawn(async move {
            store
                .append(&victim, ExpectedRevision::Exact(0), vec![event])
                .await
        })
    };
    // The group inserted its events; its head update waits for the lock, its COMMIT
    // queued behind it.
    let name = format!("{} writer", config.application_name);
    let mut blocked = None;
    let started = Instant::now();
    while blocked.is_none() {
        assert!(
            started.elapsed() < WAIT_MAX,
            "the writer never waited for the row"
        );
        let row = blocker
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .await
            .expect("reads pg_stat_activity");
        blocked = row.map(|row| row.get::<_, i32>(0));
    }
    let blocked = blocked.unwrap_or_else(|| unreachable!("the loop ends with a pid"));
    let ended: bool = blocker
        .query_one("SELECT pg_terminate_backend($1)", &[&blocked])
        .await
        .expect("ends the writer's backend")
        .get(0);
    assert!(ended, "the writer's backend {blocked} was ended");
    blocker.batch_execute("COMMIT").await.expect("unlocks");

    let result = tokio::time::timeout(WAIT_MAX, appending)
        .await
        .expect("the append is answered")
        .expect("the task ends");
    let result = result.expect("a group that did not commit is committed on a new connection");
    assert_eq!(result.current_revision.0, 1);
    assert_ne!(
        writer_pid(&blocker, &config).await,
        blocked,
        "a new session"
    );
    let resumed = load.acknowledged_count();
    load.wait_for_acknowledged(resumed + 30).await;
    let (acknowledged, errors) = load.finish().await;
    assert!(
        errors.is_empty(),
        "the outage was hidden from appenders: {errors:?}"
    );
    assert_nothing_lost_or_doubled(&store, &acknowledged).await;
    assert_eq!(stream_ids(&store, &victim).await, vec![first.id, second.id]);
    store.close().await;
}

/// Every commit hangs after it is durable (synchronous replication to a standby that
/// does not exist): the writer gives up on its session after the statement timeout, ends
/// it, and finds on a new connection that the group was committed, so the caller sees
/// success. The write is a tombstone, which is not idempotent: trying it again instead
/// would answer "stream deleted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_never_comes_is_settled_as_committed() {
    let cluster = PrivateCluster::start();
    let mut config = PostgresConfig::new(cluster.url()).with_schema("outage");
    config.application_name = "outage-test".to_owned();
    config.reader_connections = 1;
    config.statement_timeout = Duration::from_secs(2);
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    let victim = StreamName::new("victim-1").expect("valid");
    store
        .append(
            &victim,
            ExpectedRevision::NoStream,
            vec![ProposedEvent::json("E", "{}")],
        )
        .await
        .expect("appends");
    let load = Load::start(&store, 3);
    load.wait_for_acknowledged(30).await;

    let admin = admin_client(&cluster.url()).await;
    let before = writer_pid(&admin, &config).await;
    reconfigure(
        &admin,
        "ALTER SYSTEM SET synchronous_standby_names = 'strata_absent_standby'",
    )
    .await;
    // Sessions read the new setting when they next go idle: wait for a commit to hang.
    let name = format!("{} writer", config.application_name);
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < WAIT_MAX,
            "no commit waits for the standby"
        );
        let waiting = admin
            .query_opt(
                "SELECT 1 FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event = 'SyncRep'",
                &[&name],
            )
            .await
            .expect("reads pg_stat_activity");
        if waiting.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deleted = tokio::time::timeout(
        WAIT_MAX,
        store.tombstone_stream(&victim, ExpectedRevision::Any),
    )
    .await
    .expect("the tombstone is answered");
    deleted.expect("a group committed without an answer is settled as committed");
    assert_ne!(
        writer_pid(&admin, &config).await,
        before,
        "the writer gave up on its session"
    );
    reconfigure(&admin, "ALTER SYSTEM RESET synchronous_standby_names").await;
    let resumed = load.acknowledged_count();
    load.wait_for_acknowledged(resumed + 30).await;
    let (acknowledged, errors) = load.finish().await;
    assert!(
        errors.is_empty(),
        "committed groups are answered as such: {errors:?}"
    );
    assert_nothing_lost_or_doubled(&store, &acknowledged).await;
    let tombstones = all_events(&store)
        .await
        .iter()
        .filter(|event| event.stream == victim && event.event_type == "$streamDeleted")
        .count();
    assert_eq!(tombstones, 1, "the tombstone is stored once");
    store.close().await;
}

/// PostgreSQL stops (as in a crash) and starts again while four writers append: appends
/// fail meanwhile with errors that say whether anything was written, the writers resume
/// once it is back, and every acknowledged event is in a gapless `$all`, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_load_loses_no_acknowledged_event() {
    let cluster = PrivateCluster::start();
    let mut config = PostgresConfig::new(cluster.url()).with_schema("restart");
    config.application_name = "restart-test".to_owned();
    config.reader_connections = 1;
    config.statement_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(2);
    let store = PostgresStore::open(config).await.expect("opens");
    let load = Load::start(&store, 4);
    load.wait_for_acknowledged(100).await;

    cluster.stop_immediately();
    wait_until("an append to fail", || load.error_count() > 0).await;
    cluster.start_server();
    let resumed = load.acknowledged_count();
    load.wait_for_acknowledged(resumed + 100).await;
    let (acknowledged, errors) = load.finish().await;
    for error in &errors {
        assert!(
            error.contains("nothing was written")
                || error.contains("may or may not have been committed"),
            "an error says what became of the append: {error}"
        );
    }
    assert_nothing_lost_or_doubled(&store, &acknowledged).await;
    store.close().await;
}
