//! The append queue's byte budget: appenders wait once queued bytes reach it, and go on
//! when the writer frees room; an append larger than the whole budget still goes.

use std::time::Duration;

use strata_core::{Bytes, EventStore, ExpectedRevision, ProposedEvent, StreamName};

use super::{PostgresStore, QUEUE_PERMIT_BYTES, queue_permits, queued_bytes};
use crate::connect::{Role, connect};
use crate::plan::Operation;
use crate::schema::LOCK_CLASS_WRITE;
use crate::test_schema::TestSchema;

const WAIT_MAX: Duration = Duration::from_secs(60);
const EVENT_DATA_BYTES: usize = 8 * 1024;
const BUDGET_BYTES: usize = 64 * 1024;
const APPENDERS: usize = 20;

fn sized_event(data_bytes: usize) -> ProposedEvent {
    ProposedEvent::binary("Sized", Bytes::from(vec![7u8; data_bytes]))
}

#[test]
fn empty_events_are_not_free() {
    let operation = Operation::Append {
        stream: StreamName::new("s-1").expect("valid"),
        expected: ExpectedRevision::Any,
        events: vec![ProposedEvent::binary("E", Bytes::new()); 1_000],
    };
    assert!(
        queued_bytes(&operation) >= 100_000,
        "a fixed cost per event"
    );
    assert_eq!(queue_permits(0), 1, "every write takes a permit");
    assert_eq!(queue_permits(QUEUE_PERMIT_BYTES + 1), 2, "rounded up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appenders_wait_while_queued_bytes_are_at_the_budget() {
    let schema = TestSchema::new();
    let mut config = schema.config();
    config.queued_append_bytes_max = BUDGET_BYTES;
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    // Another session holds the write lock: the writer cannot commit, the queue fills.
    let blocker = connect(&config, Role::Migration, None)
        .await
        .expect("connects");
    blocker
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&LOCK_CLASS_WRITE, &config.schema],
        )
        .await
        .expect("takes the write lock");
    let mut appenders = Vec::new();
    for index in 0..APPENDERS {
        let store = store.clone();
        appenders.push(tokio::spawn(async move {
            let stream = StreamName::new(format!("sized-{index}")).expect("valid");
            store
                .append(
                    &stream,
                    ExpectedRevision::NoStream,
                    vec![sized_event(EVENT_DATA_BYTES)],
                )
                .await
        }));
    }
    let one_append = queue_permits(EVENT_DATA_BYTES + "Sized".len() + 128);
    let budget = queue_permits(BUDGET_BYTES);
    let fits = budget / one_append;
    tokio::time::timeout(WAIT_MAX, async {
        while store.queued_kib.available_permits() >= one_append {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the queued appends fill the budget");
    let queued = store
        .requests
        .lock()
        .as_ref()
        .map_or(0, |sender| sender.max_capacity() - sender.capacity());
    assert!(
        queued <= fits,
        "{queued} appends queued, {fits} fit the budget"
    );
    assert!(
        appenders.iter().all(|appender| !appender.is_finished()),
        "nothing commits while the lock is held"
    );
    blocker
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&LOCK_CLASS_WRITE, &config.schema],
        )
        .await
        .expect("releases the write lock");
    for appender in appenders {
        tokio::time::timeout(WAIT_MAX, appender)
            .await
            .expect("the waiting appenders go on")
            .expect("the task ends")
            .expect("the append commits");
    }
    assert_eq!(
        store.queued_kib.available_permits(),
        budget,
        "every permit is given back"
    );

    // An append larger than the whole budget waits for all of it, then goes.
    let large = StreamName::new("larger-than-the-budget-1").expect("valid");
    let append = store.append(
        &large,
        ExpectedRevision::NoStream,
        vec![sized_event(4 * BUDGET_BYTES)],
    );
    tokio::time::timeout(WAIT_MAX, append)
        .await
        .expect("a large append does not wait forever")
        .expect("it commits");
    store.close().await;
}
