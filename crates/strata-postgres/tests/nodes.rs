//! Several stores (nodes) on one schema: `$all` stays gapless and in one commit order, and
//! every node's subscribers see every node's events, woken by notifications.

mod support;

use std::sync::Arc;
use std::time::Duration;

use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, RecordedEvent, StreamName, SubscribeFrom,
    subscribe_to_all,
};
use strata_postgres::PostgresStore;
use support::TestSchema;

const NODES: usize = 3;
const WRITERS_PER_NODE: usize = 4;
const APPENDS_PER_WRITER: usize = 25;
const WAIT_MAX: Duration = Duration::from_secs(30);

async fn collect(mut subscription: strata_core::Subscription, count: usize) -> Vec<RecordedEvent> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let event = tokio::time::timeout(WAIT_MAX, subscription.next_event())
            .await
            .expect("the subscriber keeps receiving")
            .expect("the subscription is open")
            .expect("no subscription error");
        events.push(event);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_every_node_see_one_gapless_order() {
    let schema = TestSchema::new();
    let mut nodes: Vec<Arc<PostgresStore>> = Vec::new();
    for _ in 0..NODES {
        // No poll after the first: only LISTEN/NOTIFY can tell a node of another's commits.
        let mut config = schema.config();
        config.poll_interval = Duration::from_secs(3_600);
        nodes.push(PostgresStore::open(config).await.expect("opens"));
    }
    let total = NODES * WRITERS_PER_NODE * APPENDS_PER_WRITER;
    let subscribers: Vec<_> = nodes
        .iter()
        .map(|node| {
            let subscription = subscribe_to_all(node.clone(), SubscribeFrom::Start, None, 64);
            tokio::spawn(collect(subscription, total))
        })
        .collect();
    let mut writers = Vec::new();
    for (node_index, node) in nodes.iter().enumerate() {
        for writer in 0..WRITERS_PER_NODE {
            let node = node.clone();
            writers.push(tokio::spawn(async move {
                let stream = StreamName::new(format!("node{node_index}-writer{writer}")).unwrap();
                for n in 0..APPENDS_PER_WRITER {
                    let event = ProposedEvent::json("Written", format!(r#"{{"n":{n}}}"#));
                    node.append(&stream, ExpectedRevision::Any, vec![event])
                        .await
                        .expect("the append succeeds");
                }
            }));
        }
    }
    for writer in writers {
        writer.await.expect("the writer finishes");
    }
    let mut orders = Vec::new();
    for subscriber in subscribers {
        orders.push(subscriber.await.expect("the subscriber finishes"));
    }
    let positions: Vec<u64> = orders[0].iter().map(|event| event.position.0).collect();
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(positions, expected, "positions are gapless from 1");
    for order in &orders[1..] {
        let ids: Vec<_> = order
            .iter()
            .map(|event| (event.position, event.id))
            .collect();
        let first: Vec<_> = orders[0]
            .iter()
            .map(|event| (event.position, event.id))
            .collect();
        assert_eq!(ids, first, "every node sees the same order");
    }
    for node in nodes {
        node.close().await;
    }
}
