//! Conditional (DCB) appends from two stores (nodes) on one schema: the check runs under
//! the schema's write lock, which every node's writer takes, so of the conditional appends
//! racing on one query exactly one wins, whichever node each is sent to, and appends with
//! their own queries all succeed.

mod support;

use strata_postgres::PostgresStore;
use support::TestSchema;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_let_exactly_one_overlapping_conditional_append_win() {
    let schema = TestSchema::new();
    let first = PostgresStore::open(schema.config()).await.expect("opens");
    let second = PostgresStore::open(schema.config()).await.expect("opens");
    strata_core::conformance::dcb_concurrent_rounds(&first, &second, "nodes").await;
    first.close().await;
    second.close().await;
}
