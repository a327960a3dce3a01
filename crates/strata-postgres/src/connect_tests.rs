//! Sessions against PostgreSQL: their settings reach the server, and a session that hangs
//! inside a transaction loses the write lock to the other nodes.

use std::time::Duration;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};

use super::{Role, connect};
use crate::schema::LOCK_CLASS_WRITE;
use crate::store::PostgresStore;
use crate::test_schema::TestSchema;

/// Longest a test waits for something that should happen within seconds.
const WAIT_MAX: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_carry_their_name_keepalives_and_timeouts() {
    let schema = TestSchema::new();
    let mut config = schema.config();
    config.statement_timeout = Duration::from_secs(7);
    config.idle_in_transaction_timeout = Duration::from_secs(3);
    let client = connect(&config, Role::Reader, None)
        .await
        .expect("connects");
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one("SELECT current_setting($1)", &[&name])
                .await
                .unwrap_or_else(|error| panic!("reads {name}: {error}"));
            row.get::<_, String>(0)
        }
    };
    assert_eq!(
        setting("application_name").await,
        format!("{} reader", schema.name)
    );
    assert_eq!(setting("statement_timeout").await, "14s");
    assert_eq!(setting("idle_in_transaction_session_timeout").await, "3s");
    assert_eq!(setting("tcp_keepalives_idle").await, "10");
    assert_eq!(setting("tcp_keepalives_interval").await, "5");
    assert_eq!(setting("tcp_keepalives_count").await, "3");
}

/// A node that stops (here: a session that takes the write lock and then does nothing)
/// is ended by PostgreSQL, and the other nodes write again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_idle_inside_a_transaction_loses_the_write_lock() {
    let schema = TestSchema::new();
    let mut config = schema.config();
    config.idle_in_transaction_timeout = Duration::from_millis(500);
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    let hung = connect(&config, Role::Writer, None)
        .await
        .expect("connects");
    hung.batch_execute("BEGIN").await.expect("begins");
    hung.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS_WRITE, &config.schema],
    )
    .await
    .expect("takes the write lock");
    let stream = StreamName::new("after-the-hang-1").expect("valid");
    let appended = tokio::time::timeout(
        WAIT_MAX,
        store.append(
            &stream,
            ExpectedRevision::NoStream,
            vec![ProposedEvent::json("E", "{}")],
        ),
    )
    .await
    .expect("the other node writes once the hung session is ended");
    appended.expect("the append commits");
    let ended = hung.batch_execute("COMMIT").await;
    assert!(ended.is_err(), "PostgreSQL ended the idle session");
    store.close().await;
}
