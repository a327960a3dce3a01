//! Crypto-shredding on the embedded engine and on PostgreSQL: events of a subject are
//! stored encrypted, read back decrypted; once the subject is forgotten (key stream
//! tombstoned and scavenged) every copy of its events reads as "key forgotten", other
//! subjects still read, and no new event can be encrypted for it.
#![cfg(feature = "shredding")]

use std::path::Path;
use std::sync::Arc;

use strata::shredding::{Decrypted, Shredder};
use strata::{Error, EventStore, ExpectedRevision, ProposedEvent, RecordedEvent, StreamName};
use strata_core::scavenge::ScavengeOptions;
use strata_core::{ContentType, ReadStreamOptions, StreamSlice};

fn name(text: &str) -> StreamName {
    StreamName::new(text).expect("a valid name")
}

async fn read(store: &dyn EventStore, stream: &str) -> Vec<RecordedEvent> {
    match store
        .read_stream(&name(stream), ReadStreamOptions::forwards())
        .await
        .expect("reads")
    {
        StreamSlice::Found { events, .. } => events,
        StreamSlice::NotFound => Vec::new(),
    }
}

/// Writes two events for each of alice and bob; returns what was stored (an "export").
async fn write_subjects<S: EventStore + ?Sized>(
    shredder: &Shredder<S>,
    store: &S,
) -> Vec<RecordedEvent> {
    for subject in ["alice", "bob"] {
        let mut events = Vec::new();
        for i in 0..2 {
            let event = ProposedEvent::json(
                "AddressChanged",
                format!("{{\"subject\":\"{subject}\",\"street\":\"secret street {i}\"}}"),
            );
            events.push(shredder.encrypt(subject, event).await.expect("encrypts"));
        }
        store
            .append(
                &name(&format!("person-{subject}")),
                ExpectedRevision::Any,
                events,
            )
            .await
            .expect("appends");
    }
    let mut stored = read_dyn(store, "person-alice").await;
    stored.extend(read_dyn(store, "person-bob").await);
    stored
}

async fn read_dyn<S: EventStore + ?Sized>(store: &S, stream: &str) -> Vec<RecordedEvent> {
    match store
        .read_stream(&name(stream), ReadStreamOptions::forwards())
        .await
        .expect("reads")
    {
        StreamSlice::Found { events, .. } => events,
        StreamSlice::NotFound => Vec::new(),
    }
}

/// Stored events are ciphertext; they decrypt to what was written; tampering is refused.
async fn check_round_trip<S: EventStore + ?Sized>(
    shredder: &Shredder<S>,
    stored: &[RecordedEvent],
) {
    for event in stored {
        assert!(
            !String::from_utf8_lossy(&event.data).contains("secret street"),
            "stored encrypted"
        );
        assert_eq!(event.content_type, ContentType::Binary);
    }
    let decrypted = shredder
        .decrypt_all(stored.to_vec())
        .await
        .expect("decrypts");
    for (event, clear) in stored.iter().zip(decrypted) {
        let Decrypted::Clear {
            subject,
            event: clear,
        } = clear
        else {
            panic!("decrypted: {clear:?}");
        };
        assert!(event.stream.as_str().ends_with(&subject));
        assert_eq!(clear.content_type, ContentType::Json);
        let text = String::from_utf8(clear.data.to_vec()).expect("text");
        assert!(text.contains("secret street"), "{text}");
        assert!(text.contains(&subject));
    }
    let mut tampered = stored[0].clone();
    let mut data = tampered.data.to_vec();
    let last = data.len() - 1;
    data[last] ^= 1;
    tampered.data = data.into();
    assert!(matches!(
        shredder.decrypt(tampered).await,
        Err(Error::Shredded { .. })
    ));
    let plain = RecordedEvent {
        data: "{}".into(),
        ..stored[0].clone()
    };
    assert!(matches!(
        shredder.decrypt(plain).await,
        Ok(Decrypted::Plain(_))
    ));
}

/// After forgetting alice: her copies read as forgotten, bob's decrypt, nothing new for her.
async fn check_forgotten<S: EventStore + ?Sized>(shredder: &Shredder<S>, export: &[RecordedEvent]) {
    let decrypted = shredder.decrypt_all(export.to_vec()).await.expect("reads");
    for (event, result) in export.iter().zip(decrypted) {
        match (event.stream.as_str(), result) {
            (
                "person-alice",
                Decrypted::KeyForgotten {
                    subject,
                    event: kept,
                },
            ) => {
                assert_eq!(subject, "alice");
                assert_eq!(&kept, event);
            }
            ("person-bob", Decrypted::Clear { .. }) => {}
            (stream, result) => panic!("{stream}: {result:?}"),
        }
    }
    let refused = shredder
        .encrypt("alice", ProposedEvent::json("AddressChanged", "{}"))
        .await;
    assert!(
        matches!(refused, Err(Error::SubjectForgotten { .. })),
        "{refused:?}"
    );
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    let mut found = false;
    for entry in std::fs::read_dir(dir).expect("lists") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found |= files_contain(&path, needle);
        } else {
            let bytes = std::fs::read(&path).expect("reads a file");
            found |= bytes.windows(needle.len()).any(|window| window == needle);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_subject_reads_as_key_forgotten_on_the_engine() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = strata_engine::Config::small_for_tests;
    let store = strata_engine::Store::open(dir.path(), config()).expect("opens");
    let shredder = Shredder::new(store.clone());
    let export = write_subjects(&shredder, &*store).await;
    check_round_trip(&shredder, &export).await;
    let key = read(&*store, "subjectkey-alice").await[0].data.clone();
    assert_eq!(key.len(), 32);
    assert!(files_contain(dir.path(), &key), "the key is on disk before");

    let (key_stream, _) = shredder.forget("alice").await.expect("forgets");
    store.close();
    drop(shredder);
    drop(store);
    let report =
        strata_engine::Store::scavenge_closed(dir.path(), config(), ScavengeOptions::default())
            .expect("scavenges");
    assert!(report.events_removed >= 1, "{report:?}");
    assert!(!files_contain(dir.path(), &key), "the key's bytes are gone");

    let store = strata_engine::Store::open(dir.path(), config()).expect("reopens");
    let shredder = Shredder::new(store.clone());
    check_forgotten(&shredder, &export).await;
    assert_eq!(key_stream.as_str(), "subjectkey-alice");
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_subject_reads_as_key_forgotten_on_postgresql() {
    let url = std::env::var("STRATA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("strata_test_{}", uuid::Uuid::new_v4().simple());
    let config = strata_postgres::PostgresConfig::new(url.clone()).with_schema(schema.clone());
    let store: Arc<strata_postgres::PostgresStore> = strata_postgres::PostgresStore::open(config)
        .await
        .expect("opens");
    let shredder = Shredder::new(store.clone()).with_key_category("keys");
    let export = write_subjects(&shredder, &*store).await;
    check_round_trip(&shredder, &export).await;

    let (key_stream, _) = shredder.forget("alice").await.expect("forgets");
    let report = store
        .forget(&[key_stream], strata_postgres::Vacuum::Full)
        .await
        .expect("removes the key's row");
    assert_eq!(report.events_removed, 1);
    check_forgotten(&shredder, &export).await;
    store.close().await;
    drop(shredder);
    drop(store);
    strata_postgres::drop_schema(&url, &schema)
        .await
        .expect("drops the test schema");
}
