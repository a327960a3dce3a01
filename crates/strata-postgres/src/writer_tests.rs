//! The writer against PostgreSQL, fed directly (below the contract's validation): one
//! request's unstorable value fails only that request, whatever group it shares.

use strata_core::{
    AppendResult, Error, ExpectedRevision, Position, ProposedEvent, Revision, StreamName,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Request, run};
use crate::connect::{Role, connect};
use crate::plan::{Operation, Outcome};
use crate::schema::migrate;
use crate::test_schema::TestSchema;

fn append(stream: &str, expected: ExpectedRevision, events: Vec<ProposedEvent>) -> Operation {
    Operation::Append {
        stream: StreamName::new(stream).expect("a valid stream name"),
        expected,
        events,
    }
}

/// An event type PostgreSQL's `text` cannot hold (the contract refuses it before a
/// backend sees it; this feeds it to the writer anyway).
fn unstorable() -> ProposedEvent {
    ProposedEvent::json("Bad\0Type", "{}")
}

fn good() -> ProposedEvent {
    ProposedEvent::json("Good", "{}")
}

fn appended(outcome: Outcome) -> strata_core::Result<AppendResult> {
    match outcome {
        Outcome::Append(result) => result,
        _ => panic!("an append is answered as an append"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstorable_value_fails_only_its_own_request_in_a_group() {
    let schema = TestSchema::new();
    let config = schema.config();
    let mut client = connect(&config, Role::Migration, None)
        .await
        .expect("connects");
    migrate(&mut client, &config).await.expect("migrates");
    let operations = vec![
        append("good-1", ExpectedRevision::NoStream, vec![good()]),
        append("bad-1", ExpectedRevision::Any, vec![unstorable()]),
        append("good-2", ExpectedRevision::NoStream, vec![good(), good()]),
        // Depends on the first request of the same group.
        append("good-1", ExpectedRevision::Exact(0), vec![good()]),
        // Atomic: its valid first event must not be stored either.
        append(
            "bad-2",
            ExpectedRevision::NoStream,
            vec![good(), unstorable()],
        ),
        append("good-3", ExpectedRevision::NoStream, vec![good()]),
    ];
    let ids: Vec<Vec<_>> = operations
        .iter()
        .map(|operation| match operation {
            Operation::Append { events, .. } => events.iter().map(|event| event.id).collect(),
            _ => Vec::new(),
        })
        .collect();
    // Every request is queued before the writer starts, so they form one group.
    let (sender, receiver) = mpsc::channel(operations.len());
    let mut replies = Vec::new();
    for operation in operations {
        let (reply, answer) = oneshot::channel();
        sender
            .try_send(Request {
                operation,
                reply,
                queued: None,
            })
            .unwrap_or_else(|_| panic!("the queue has room"));
        replies.push(answer);
    }
    let log_end = watch::Sender::new(Position(1));
    let writer = tokio::spawn(run(
        config.clone(),
        receiver,
        log_end.clone(),
        crate::observe::Observers::default(),
    ));
    let mut results = Vec::new();
    for answer in replies {
        results.push(appended(answer.await.expect("every request is answered")));
    }
    for (index, result) in results.iter().enumerate() {
        match (index, result) {
            (1 | 4, Err(Error::InvalidArgument { reason })) => {
                assert!(reason.contains("PostgreSQL cannot store"), "{reason}");
                assert!(reason.contains("nothing was written"), "{reason}");
            }
            (1 | 4, other) => panic!("request {index}: wanted a refusal, got {other:?}"),
            (_, Ok(_)) => {}
            (_, Err(error)) => panic!("request {index} failed with the bad one: {error}"),
        }
    }
    let next = results[3].as_ref().expect("checked above");
    assert_eq!(
        next.current_revision,
        Revision(1),
        "planned after request 0"
    );

    // The writer goes on: a later group commits.
    let (reply, answer) = oneshot::channel();
    sender
        .send(Request {
            operation: append("after-1", ExpectedRevision::NoStream, vec![good()]),
            reply,
            queued: None,
        })
        .await
        .unwrap_or_else(|_| panic!("the writer runs"));
    appended(answer.await.expect("answered")).expect("a later append commits");
    drop(sender);
    writer.await.expect("the writer ends with its queue");

    let rows = client
        .query(
            "SELECT position, event_id FROM events ORDER BY position",
            &[],
        )
        .await
        .expect("reads the log");
    let positions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let expected_positions: Vec<i64> = (1..=rows.len() as i64).collect();
    assert_eq!(positions, expected_positions, "positions stay gapless");
    let stored: Vec<uuid::Uuid> = rows.iter().map(|row| row.get(1)).collect();
    let wanted: Vec<uuid::Uuid> = [0, 2, 3, 5]
        .iter()
        .flat_map(|&index| ids[index].iter().map(|id| id.0))
        .collect();
    assert_eq!(
        &stored[..wanted.len()],
        &wanted[..],
        "the good requests, in order"
    );
    assert_eq!(
        stored.len(),
        wanted.len() + 1,
        "and the later append, nothing else"
    );
    assert_eq!(*log_end.borrow(), Position(rows.len() as u64 + 1));
}
