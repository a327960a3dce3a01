//! Scavenging and forgetting on PostgreSQL: each retention rule leaves exactly the events a
//! read can still return (plus every stream's last event and the tombstones), at their old
//! positions; `$all`, stream reads, index reads and subscriptions agree; the tables shrink;
//! a scavenge under appends and a live subscription loses nothing; a forgotten stream's
//! payload leaves the table files.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_core::scavenge::ScavengeOptions;
use strata_core::{
    EventStore, ExpectedRevision, ManualClock, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, StreamMetadata, StreamName, StreamSlice, SubscribeFrom, SubscriptionItem,
    Timestamp, subscribe_to_all,
};
use strata_postgres::{PostgresScavenge, PostgresStore, Vacuum};
use support::{TestSchema, test_url};

/// Incompressible bytes (so the tables' sizes follow the payloads), `len` long.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

fn name(text: &str) -> StreamName {
    StreamName::new(text).expect("a valid name")
}

async fn append_many(store: &PostgresStore, stream: &str, count: u64, seed: u64) {
    let events: Vec<ProposedEvent> = (0..count)
        .map(|i| ProposedEvent::binary("Filled", noise(seed * 1_000 + i, 1_500)))
        .collect();
    store
        .append(&name(stream), ExpectedRevision::Any, events)
        .await
        .expect("appends");
}

async fn set_metadata(store: &PostgresStore, stream: &str, metadata: StreamMetadata) {
    store
        .set_stream_metadata(&name(stream), ExpectedRevision::Any, &metadata)
        .await
        .expect("sets metadata");
}

async fn read_all(store: &PostgresStore, forwards: bool) -> Vec<RecordedEvent> {
    let mut options = if forwards {
        ReadAllOptions::forwards()
    } else {
        ReadAllOptions::backwards()
    }
    .max_count(37);
    let mut events = Vec::new();
    loop {
        let slice = store.read_all(options.clone()).await.expect("reads $all");
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        options = options.from_position(slice.next_position);
    }
}

async fn read_stream(store: &PostgresStore, stream: &str) -> Option<Vec<RecordedEvent>> {
    match store
        .read_stream(&name(stream), ReadStreamOptions::forwards())
        .await
    {
        Ok(StreamSlice::Found { events, .. }) => Some(events),
        Ok(StreamSlice::NotFound) | Err(strata_core::Error::StreamDeleted { .. }) => None,
        Err(error) => panic!("reading {stream}: {error}"),
    }
}

/// Every event of a subscription from `from` until it is caught up.
async fn subscribe_until_caught_up(
    store: &Arc<PostgresStore>,
    from: SubscribeFrom<strata_core::Position>,
) -> Vec<RecordedEvent> {
    let mut subscription = subscribe_to_all(store.clone(), from, None, 64);
    let mut events = Vec::new();
    loop {
        match subscription.next().await.expect("the subscription goes on") {
            Ok(SubscriptionItem::Event(event)) => events.push(event),
            Ok(SubscriptionItem::CaughtUp) => return events,
            Ok(SubscriptionItem::Checkpoint(_)) => {}
            Err(error) => panic!("subscription failed: {error}"),
        }
    }
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.position.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retention_rule_leaves_exactly_the_survivors_and_smaller_tables() {
    let schema = TestSchema::new();
    let clock = ManualClock::starting_at(Timestamp(1_700_000_000_000_000_000));
    let mut config = schema.config();
    config.clock = clock.clock();
    let store = PostgresStore::open(config).await.expect("opens");

    // Each rule on its own stream, 60 events each; the old part of `age-1` expires.
    for (seed, stream) in ["tb-1", "count-1", "soft-1", "tomb-1", "keep-1"]
        .iter()
        .enumerate()
    {
        append_many(&store, stream, 60, seed as u64).await;
    }
    append_many(&store, "age-1", 40, 10).await;
    clock.advance(Duration::from_secs(3_600));
    append_many(&store, "age-1", 20, 11).await;
    set_metadata(
        &store,
        "tb-1",
        StreamMetadata {
            truncate_before: Some(45),
            ..StreamMetadata::default()
        },
    )
    .await;
    for max_count in [30, 20, 8] {
        // Three metadata events: the first two are superseded.
        set_metadata(
            &store,
            "count-1",
            StreamMetadata {
                max_count: Some(max_count),
                ..StreamMetadata::default()
            },
        )
        .await;
    }
    set_metadata(
        &store,
        "age-1",
        StreamMetadata {
            max_age: Some(Duration::from_secs(1_800)),
            ..StreamMetadata::default()
        },
    )
    .await;
    store
        .delete_stream(&name("soft-1"), ExpectedRevision::Any)
        .await
        .expect("soft-deletes");
    store
        .tombstone_stream(&name("tomb-1"), ExpectedRevision::Any)
        .await
        .expect("tombstones");

    let streams = ["tb-1", "count-1", "age-1", "soft-1", "tomb-1", "keep-1"];
    let mut reads_before = Vec::new();
    for stream in streams {
        reads_before.push(read_stream(&store, stream).await);
    }
    let all_before = read_all(&store, true).await;
    let ce_count_before = read_stream(&store, "$ce-count").await.expect("$ce-count");
    assert_eq!(
        ce_count_before.len(),
        60,
        "index reads return removable events until a scavenge"
    );

    // What may stay: what reads return, each stream's last event, the tombstone, the last
    // event of each metadata stream.
    let survives = |event: &RecordedEvent| -> bool {
        let revision = event.revision.0;
        match event.stream.as_str() {
            "tb-1" => revision >= 45,
            "count-1" => revision >= 52,
            "age-1" => revision >= 40,
            "soft-1" => revision == 59,
            "tomb-1" => revision == strata_core::TOMBSTONE_REVISION,
            "keep-1" => true,
            "$$count-1" => revision == 2,
            "$$tb-1" | "$$age-1" | "$$soft-1" => revision == 0,
            other => panic!("unexpected stream {other}"),
        }
    };
    let expected: Vec<RecordedEvent> = all_before.iter().filter(|e| survives(e)).cloned().collect();
    let removed = (all_before.len() - expected.len()) as u64;
    assert_eq!(removed, 45 + 52 + 40 + 59 + 60 + 2);

    let (entries_before, orphans_before) = index_entries_of(&schema.name).await;
    assert_eq!(orphans_before, 0);
    let report = store
        .scavenge_with(
            ScavengeOptions::default(),
            PostgresScavenge {
                vacuum: Vacuum::Full,
                batch_rows: 25,
                streams: None,
            },
        )
        .await
        .expect("scavenges");
    assert_eq!(report.events_removed, removed);
    assert!(!report.stopped);
    assert!(report.frame_bytes_removed >= removed.saturating_sub(2) * 1_500);
    // 256 × 1.5 KB went; the tables must have shrunk by at least half of that.
    assert!(
        report.allocated_bytes_after + 150_000 < report.allocated_bytes_before,
        "{report:?}"
    );

    // Reads return what they returned before; `$all` exactly the survivors, both ways,
    // at their old positions and unchanged.
    for (stream, before) in streams.iter().zip(&reads_before) {
        assert_eq!(&read_stream(&store, stream).await, before, "{stream}");
    }
    assert_eq!(read_all(&store, true).await, expected);
    let mut backwards = read_all(&store, false).await;
    backwards.reverse();
    assert_eq!(backwards, expected);
    // Index reads skip what went.
    let ce_count = read_stream(&store, "$ce-count").await.expect("$ce-count");
    assert_eq!(ce_count.len(), 8);
    let ce_tomb = read_stream(&store, "$ce-tomb").await.unwrap_or_default();
    assert!(ce_tomb.is_empty(), "{ce_tomb:?}");
    // The removed events' index entries went, but for each key's newest one.
    let (entries_after, orphans_after) = index_entries_of(&schema.name).await;
    assert_eq!(orphans_after, 0);
    assert!(
        entries_after + 200 <= entries_before,
        "{entries_before} -> {entries_after}"
    );

    // Subscriptions from the start and from a removed position see exactly the survivors.
    assert_eq!(
        subscribe_until_caught_up(&store, SubscribeFrom::Start).await,
        expected
    );
    let removed_position = all_before
        .iter()
        .find(|event| event.stream.as_str() == "tb-1")
        .expect("tb-1 had events")
        .position;
    let after_removed: Vec<RecordedEvent> = expected
        .iter()
        .filter(|event| event.position > removed_position)
        .cloned()
        .collect();
    assert_eq!(
        subscribe_until_caught_up(&store, SubscribeFrom::After(removed_position)).await,
        after_removed
    );

    // A second run finds nothing; appends go on at the right revisions.
    let again = store
        .scavenge(ScavengeOptions::default())
        .await
        .expect("runs again");
    assert_eq!(again.events_removed, 0);
    let appended = store
        .append(
            &name("count-1"),
            ExpectedRevision::Exact(59),
            vec![ProposedEvent::json("After", "{}")],
        )
        .await
        .expect("appends after the scavenge");
    assert_eq!(appended.current_revision.0, 60);
    assert!(appended.position.0 > all_before.last().expect("events").position.0);
    let revived = store
        .append(
            &name("soft-1"),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Back", "{}")],
        )
        .await
        .expect("revives");
    assert_eq!(revived.current_revision.0, 60);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scavenge_under_appends_and_a_live_subscription_misses_nothing() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    for i in 0..20 {
        append_many(&store, &format!("old-{i}"), 40, i).await;
        set_metadata(
            &store,
            &format!("old-{i}"),
            StreamMetadata {
                max_count: Some(5),
                ..StreamMetadata::default()
            },
        )
        .await;
    }
    let end_before = store
        .last_position()
        .await
        .expect("reads")
        .expect("events")
        .0;
    let mut subscription = subscribe_to_all(store.clone(), SubscribeFrom::Start, None, 64);

    // Four appenders while the scavenge deletes in batches of 30 rows, throttled.
    let appenders: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..60 {
                    let event = ProposedEvent::json("Live", format!("{{\"i\":{i}}}"));
                    ids.push(event.id);
                    store
                        .append(
                            &name(&format!("live-{writer}")),
                            ExpectedRevision::Any,
                            vec![event],
                        )
                        .await
                        .expect("appends during the scavenge");
                }
                ids
            })
        })
        .collect();
    let report = store
        .scavenge_with(
            ScavengeOptions {
                throttle_percent: 50,
                ..ScavengeOptions::default()
            },
            PostgresScavenge {
                vacuum: Vacuum::Plain,
                batch_rows: 30,
                streams: None,
            },
        )
        .await
        .expect("scavenges");
    assert_eq!(report.events_removed, 20 * 35);
    let mut live_ids = HashSet::new();
    for appender in appenders {
        live_ids.extend(appender.await.expect("appender ends"));
    }
    let end = store
        .last_position()
        .await
        .expect("reads")
        .expect("events")
        .0;

    // The subscription delivers positions strictly increasing, every live event once.
    let mut seen = Vec::new();
    while seen.last().is_none_or(|&position| position < end) {
        let event = tokio::time::timeout(Duration::from_secs(60), subscription.next_event())
            .await
            .expect("the subscription keeps delivering")
            .expect("not ended")
            .expect("no error");
        if event.stream.as_str().starts_with("live-") {
            assert!(live_ids.remove(&event.id), "delivered once: {event:?}");
        }
        seen.push(event.position.0);
    }
    assert!(live_ids.is_empty(), "{} live events missed", live_ids.len());
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order");

    // Afterwards `$all` holds exactly the survivors of the old streams and every live event.
    let all = read_all(&store, true).await;
    let old: Vec<_> = all
        .iter()
        .filter(|event| event.position.0 <= end_before && event.stream.as_str().starts_with("old-"))
        .collect();
    assert_eq!(old.len(), 20 * 5);
    assert!(old.iter().all(|event| event.revision.0 >= 35));
    let live = all
        .iter()
        .filter(|e| e.stream.as_str().starts_with("live-"))
        .count();
    assert_eq!(live, 240);
    let distinct: BTreeSet<u64> = positions(&all).into_iter().collect();
    assert_eq!(distinct.len(), all.len());
    store.close().await;
}

/// The schema's index entries, and how many of them point at no event without being
/// their key's newest entry (the scavenge deletes those; the newest stays).
async fn index_entries_of(schema: &str) -> (i64, i64) {
    let (client, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let row = client
        .query_one(
            &format!(
                "SELECT count(*),
                     count(*) FILTER (WHERE e.position IS NULL AND i.revision < t.top)
                 FROM \"{schema}\".index_entries i
                 LEFT JOIN \"{schema}\".events e ON e.position = i.position
                 JOIN (SELECT kind, key, max(revision) AS top
                       FROM \"{schema}\".index_entries GROUP BY kind, key) t
                     ON t.kind = i.kind AND t.key = i.key"
            ),
            &[],
        )
        .await
        .expect("counts index entries");
    (row.get(0), row.get(1))
}

/// Bytes of every file of the schema's tables, their TOAST tables and every index, after a
/// checkpoint (so the pages are on disk): the test server runs as the `postgres`
/// superuser, which may read them with `pg_read_binary_file`.
async fn relation_files_contain(schema: &str, marker: &[u8]) -> bool {
    let (client, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoints");
    let rows = client
        .query(
            "WITH own AS (SELECT c.oid, c.reltoastrelid FROM pg_class c
                          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1),
                  toast AS (SELECT reltoastrelid AS oid FROM own WHERE reltoastrelid <> 0),
                  toast_index AS (SELECT indexrelid AS oid FROM pg_index
                                  WHERE indrelid IN (SELECT oid FROM toast))
             SELECT pg_relation_filepath(oid) FROM
                 (SELECT oid FROM own UNION SELECT oid FROM toast UNION SELECT oid FROM toast_index) r
             WHERE pg_relation_filepath(oid) IS NOT NULL",
            &[&schema],
        )
        .await
        .expect("lists the relations");
    assert!(
        rows.len() >= 6,
        "tables, indexes and TOAST found: {}",
        rows.len()
    );
    for row in rows {
        let path: String = row.get(0);
        let bytes: Vec<u8> = client
            .query_one("SELECT pg_read_binary_file($1)", &[&path])
            .await
            .expect("reads the relation's file")
            .get(0);
        if bytes.windows(marker.len()).any(|window| window == marker) {
            return true;
        }
    }
    false
}

/// A session whose transaction began before the forget (here: another application's
/// long read) keeps a snapshot that may still see the deleted rows; `VACUUM FULL` would
/// copy them into the new table files. The forget waits for it to end first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_waits_for_older_transactions_and_then_leaves_no_byte() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    let (older, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    forget_while_an_older_snapshot_is_open(&store, &schema, older).await;
}

/// Appends ten events naming a fresh marker to `person-1`, opens a snapshot on `older`
/// (another session) and ends it half a second later, and meanwhile forgets the stream
/// with `VACUUM FULL`: no byte of the marker may be left in the schema's table files.
async fn forget_while_an_older_snapshot_is_open(
    store: &PostgresStore,
    schema: &TestSchema,
    older: tokio_postgres::Client,
) {
    let marker = format!("forget-me-{}", uuid::Uuid::new_v4().simple());
    let events: Vec<ProposedEvent> = (0..10)
        .map(|i| {
            ProposedEvent::json(
                "PersonNamed",
                format!("{{\"name\":\"{marker}\",\"i\":{i}}}"),
            )
        })
        .collect();
    store
        .append(&name("person-1"), ExpectedRevision::NoStream, events)
        .await
        .expect("appends");
    older
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .expect("an older snapshot");
    let ending = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        older.batch_execute("COMMIT").await.expect("ends");
    });
    let report = store
        .forget(&[name("person-1")], Vacuum::Full)
        .await
        .expect("forgets");
    ending.await.expect("the older transaction ended");
    assert_eq!(report.events_removed, 10);
    assert!(!relation_files_contain(&schema.name, marker.as_bytes()).await);
    store.close().await;
}

/// The same wait when the store's role is no superuser (nor `pg_read_all_stats`): for
/// another role's session, `pg_stat_activity.xact_start` then reads NULL (its
/// `backend_xmin` does not), so a wait on `xact_start` saw no older transaction, `VACUUM
/// FULL` ran at once and copied the rows that session's snapshot may still see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_as_an_unprivileged_role_waits_for_another_roles_older_transaction() {
    const ROLE: &str = "strata_test_unprivileged";
    let (admin, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                     CREATE ROLE {ROLE} LOGIN;
                 END IF;
                 EXECUTE format('GRANT CREATE ON DATABASE %I TO {ROLE}', current_database());
             END $$"
        ))
        .await
        .expect("an unprivileged role");
    let url = test_url().replacen("://postgres@", &format!("://{ROLE}@"), 1);
    assert_ne!(url, test_url(), "the test URL names the postgres user");
    let schema = TestSchema::new();
    let mut config = schema.config();
    config.url = url;
    let store = PostgresStore::open(config).await.expect("opens");
    forget_while_an_older_snapshot_is_open(&store, &schema, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_stream_leaves_no_byte_of_its_events_in_the_table_files() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    let marker = format!("forget-me-{}", uuid::Uuid::new_v4().simple());
    let events: Vec<ProposedEvent> = (0..30)
        .map(|i| {
            ProposedEvent::json(
                "PersonNamed",
                format!("{{\"name\":\"{marker}\",\"i\":{i}}}"),
            )
            .with_metadata(format!("{{\"note\":\"{marker}\"}}"))
        })
        .collect();
    store
        .append(&name("person-1"), ExpectedRevision::NoStream, events)
        .await
        .expect("appends");
    append_many(&store, "person-2", 10, 3).await;
    assert!(
        relation_files_contain(&schema.name, marker.as_bytes()).await,
        "the marker is found before (else the search could not fail)"
    );

    let report = store
        .forget(&[name("person-1")], Vacuum::Full)
        .await
        .expect("forgets");
    assert_eq!(report.events_removed, 30);
    assert!(!relation_files_contain(&schema.name, marker.as_bytes()).await);
    assert!(read_stream(&store, "person-1").await.is_none());
    assert_eq!(
        read_stream(&store, "person-2").await.map(|e| e.len()),
        Some(10)
    );
    let all = read_all(&store, true).await;
    assert_eq!(all.len(), 11, "person-2 and the tombstone");
    // Forgetting again (already tombstoned) is fine and removes nothing more.
    let again = store
        .forget(&[name("person-1")], Vacuum::None)
        .await
        .expect("forgets again");
    assert_eq!(again.events_removed, 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scavenge_at_a_time_per_schema_and_bad_settings_are_refused() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    let refused = store
        .scavenge_with(
            ScavengeOptions::default(),
            PostgresScavenge {
                batch_rows: 0,
                ..PostgresScavenge::default()
            },
        )
        .await;
    assert!(matches!(
        refused,
        Err(strata_core::Error::InvalidArgument { .. })
    ));
    // Another session holding the scavenge lock (another node's scavenge).
    let (client, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_advisory_lock(1398034948, hashtext($1))",
            &[&schema.name],
        )
        .await
        .expect("locks");
    let busy = store.scavenge(ScavengeOptions::default()).await;
    match busy {
        Err(strata_core::Error::InvalidArgument { reason }) => {
            assert!(reason.contains("already running"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(client);
    store.close().await;
}

/// The estimate automatic scavenging compares with `min_reclaimable_bytes`: exact while no
/// stream has more than 64 removable rows, sampled (within 10%) beyond, and 0 once a
/// scavenge has removed everything it counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reclaimable_estimate_matches_what_a_scavenge_removes_and_is_zero_after_it() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    append_many(&store, "keep-1", 50, 1).await;
    assert_eq!(
        store.estimate_reclaimable_bytes().await.expect("estimates"),
        0
    );
    let settings = PostgresScavenge {
        vacuum: Vacuum::None,
        batch_rows: 25,
        ..PostgresScavenge::default()
    };

    // At most 64 removable rows per stream: every one is read, the estimate is exact.
    append_many(&store, "tomb-1", 40, 2).await;
    store
        .tombstone_stream(&name("tomb-1"), ExpectedRevision::Any)
        .await
        .expect("tombstones");
    append_many(&store, "tb-1", 60, 3).await;
    set_metadata(
        &store,
        "tb-1",
        StreamMetadata {
            truncate_before: Some(20),
            ..StreamMetadata::default()
        },
    )
    .await;
    set_metadata(
        &store,
        "tb-1",
        StreamMetadata {
            truncate_before: Some(50),
            ..StreamMetadata::default()
        },
    )
    .await;
    let exact = store.estimate_reclaimable_bytes().await.expect("estimates");
    // What automatic scavenging calls (from a blocking thread): the same estimate.
    let held = Arc::clone(&store);
    let through_maintenance = tokio::task::spawn_blocking(move || {
        strata_core::Maintenance::reclaimable_bytes_estimate(&*held)
    })
    .await
    .expect("the blocking task ends")
    .expect("estimates");
    assert_eq!(through_maintenance, exact);
    let report = store
        .scavenge_with(ScavengeOptions::default(), settings.clone())
        .await
        .expect("scavenges");
    // 40 + 50 events of 1,500 bytes, and the superseded metadata event.
    assert_eq!(report.events_removed, 91);
    assert_eq!(exact, report.frame_bytes_removed);
    assert_eq!(
        store.estimate_reclaimable_bytes().await.expect("estimates"),
        0
    );

    // 1,900 removable rows of varied sizes in one stream: 64 of them are read.
    let events: Vec<ProposedEvent> = (0..2_000u64)
        .map(|i| {
            let len = 200 + usize::try_from(i * 7_919 % 1_601).expect("small");
            ProposedEvent::binary("Sized", noise(i, len))
        })
        .collect();
    store
        .append(&name("count-1"), ExpectedRevision::Any, events)
        .await
        .expect("appends");
    set_metadata(
        &store,
        "count-1",
        StreamMetadata {
            max_count: Some(100),
            ..StreamMetadata::default()
        },
    )
    .await;
    let sampled = store.estimate_reclaimable_bytes().await.expect("estimates");
    let report = store
        .scavenge_with(ScavengeOptions::default(), settings.clone())
        .await
        .expect("scavenges");
    assert_eq!(report.events_removed, 1_900);
    let removed = report.frame_bytes_removed;
    assert!(
        sampled.abs_diff(removed) * 10 < removed,
        "estimated {sampled} bytes, the scavenge removed {removed}"
    );
    assert_eq!(
        store.estimate_reclaimable_bytes().await.expect("estimates"),
        0
    );
    store.close().await;
}
