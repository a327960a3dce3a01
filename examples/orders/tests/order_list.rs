//! The order list against PostgreSQL (STRATA_TEST_POSTGRES_URL, default
//! postgres://postgres@127.0.0.1:5432/test): the demo's rows, exactly-once after a kill,
//! and a refused event that stops the projection with nothing of its batch kept.

use std::sync::Arc;
use std::time::Duration;

use orders::order::{Order, OrderCommand, OrderLine};
use orders::order_list::{ORDER_LIST_PROJECTION, OrderList, OrderRow, order_rows};
use orders::{connect, demo, quote_identifier};
use strata::{
    Error, EventStore, ExpectedRevision, ProjectionSource, ProposedEvent, Repository,
    SqlProjectionRunner, StreamName,
};
use strata_engine::{Config, Store};

fn postgres_url() -> String {
    std::env::var("STRATA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| orders::POSTGRES_URL_DEFAULT.to_owned())
}

/// A schema of its own for one test, dropped at the end.
struct TestSchema {
    name: String,
}

impl TestSchema {
    fn new() -> Self {
        let name = format!("orders_test_{}", uuid::Uuid::new_v4().simple());
        Self { name }
    }

    async fn client(&self) -> tokio_postgres::Client {
        connect(&postgres_url(), &self.name)
            .await
            .expect("PostgreSQL must be running for these tests (scripts/ensure-postgres.sh)")
    }

    async fn runner(&self, store: &Arc<Store>) -> SqlProjectionRunner<OrderList, Store> {
        SqlProjectionRunner::load(
            store.clone(),
            self.client().await,
            ORDER_LIST_PROJECTION,
            ProjectionSource::Category("order".to_owned()),
            OrderList::default(),
        )
        .await
        .expect("runner loads")
    }

    async fn rows(&self) -> Vec<OrderRow> {
        order_rows(&self.client().await).await.expect("rows")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let statement = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_identifier(&self.name)
        );
        // A thread of its own: the test's runtime may be gone or busy.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&statement).await;
                }
            });
        })
        .join();
    }
}

fn open_store(dir: &tempfile::TempDir) -> Arc<Store> {
    Store::open(dir.path(), Config::small_for_tests()).expect("store opens")
}

fn row<'a>(rows: &'a [OrderRow], order_id: &str) -> &'a OrderRow {
    rows.iter()
        .find(|row| row.order_id == order_id)
        .unwrap_or_else(|| panic!("order {order_id} in {rows:?}"))
}

#[tokio::test]
async fn the_demo_lists_each_order_as_the_rules_left_it() {
    let schema = TestSchema::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    let applied = demo::run(store.clone(), schema.client().await)
        .await
        .expect("demo runs");
    assert_eq!(applied, 11, "11 commands are accepted by the rules");
    let rows = schema.rows().await;
    assert_eq!(rows.len(), 4);
    let shipped = row(&rows, "1001");
    assert_eq!(
        (
            shipped.status.as_str(),
            shipped.total,
            shipped.paid,
            shipped.events
        ),
        ("shipped", 3_097, 3_097, 3)
    );
    assert_eq!(shipped.carrier.as_deref(), Some("parcel-post"));
    let cancelled_unpaid = row(&rows, "1002");
    assert_eq!(
        (cancelled_unpaid.status.as_str(), cancelled_unpaid.paid),
        ("cancelled", 0)
    );
    let refunded = row(&rows, "1003");
    assert_eq!(
        (
            refunded.status.as_str(),
            refunded.total,
            refunded.paid,
            refunded.events
        ),
        ("cancelled", 31_600, 0, 3)
    );
    assert_eq!(refunded.cancel_reason.as_deref(), Some("delivery too late"));
    assert_eq!(
        row(&rows, "1004").status,
        "shipped",
        "a shipped order cannot be cancelled"
    );
}

#[tokio::test]
async fn the_demo_runs_with_its_events_in_postgresql_too() {
    let events_schema = TestSchema::new();
    let read_model_schema = TestSchema::new();
    let config =
        strata_postgres::PostgresConfig::new(postgres_url()).with_schema(&events_schema.name);
    let store = strata_postgres::PostgresStore::open(config)
        .await
        .expect("the PostgreSQL store opens");
    let applied = demo::run(store.clone(), read_model_schema.client().await)
        .await
        .expect("demo runs");
    assert_eq!(applied, 11);
    let rows = read_model_schema.rows().await;
    assert_eq!(rows.len(), 4);
    assert_eq!(row(&rows, "1003").status, "cancelled");
    assert_eq!(row(&rows, "1004").status, "shipped");
    store.close().await;
}

/// Places order `n` and moves it along a path chosen by `n`: 1 to 3 events.
async fn write_order(orders: &Repository<Order, Store>, n: u32) -> u64 {
    let id = format!("{n:05}");
    let unit_price = 100 + u64::from(n);
    let place = OrderCommand::Place {
        customer: format!("customer-{}", n % 7),
        lines: vec![OrderLine {
            sku: format!("sku-{}", n % 5),
            quantity: 1 + n % 3,
            unit_price,
        }],
    };
    orders.execute(&id, &place).await.expect("placed");
    let total = unit_price * u64::from(1 + n % 3);
    let mut events = 1;
    if !n.is_multiple_of(4) {
        orders
            .execute(&id, &OrderCommand::Pay { amount: total })
            .await
            .expect("paid");
        events += 1;
    }
    let last = match n % 3 {
        0 => OrderCommand::Cancel {
            reason: format!("reason {n}"),
        },
        _ => OrderCommand::Ship {
            carrier: "post".to_owned(),
        },
    };
    if orders.execute(&id, &last).await.is_ok() {
        events += 1;
    }
    events
}

#[tokio::test]
async fn a_projection_killed_mid_run_resumes_to_the_same_rows_as_a_rebuild() {
    let schema = TestSchema::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    let orders = Repository::<Order, Store>::new(store.clone());

    let mut follower = schema.runner(&store).await.with_batch_events(7);
    let following = tokio::spawn(async move { follower.follow(std::future::pending()).await });
    let mut events_written = 0;
    for n in 0..150 {
        events_written += write_order(&orders, n).await;
    }
    // Kill the follower once it has committed some rows but not all: mid-run.
    let observer = schema.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = order_rows(&observer).await.expect("rows");
        if !rows.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower committed nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    following.abort();
    assert!(following.await.expect_err("aborted").is_cancelled());
    for n in 150..300 {
        events_written += write_order(&orders, n).await;
    }

    let mut restarted = schema.runner(&store).await.with_batch_events(7);
    restarted
        .catch_up()
        .await
        .expect("restarted runner catches up");
    let resumed = schema.rows().await;

    let rebuild_schema = TestSchema::new();
    let mut rebuild = rebuild_schema.runner(&store).await;
    assert_eq!(rebuild.catch_up().await.expect("rebuild"), events_written);
    let rebuilt = rebuild_schema.rows().await;

    assert_eq!(resumed.len(), 300);
    assert_eq!(resumed, rebuilt, "resumed rows equal a rebuild from zero");
    let events_in_rows: i64 = resumed.iter().map(|row| row.events).sum();
    assert_eq!(
        u64::try_from(events_in_rows).expect("positive"),
        events_written,
        "every event applied exactly once"
    );
    assert_eq!(restarted.position(), rebuild.position());
}

#[tokio::test]
async fn a_refused_event_stops_the_projection_with_nothing_of_its_batch_kept() {
    let schema = TestSchema::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    let orders = Repository::<Order, Store>::new(store.clone());
    for n in 0..3 {
        write_order(&orders, n).await;
    }
    let stray = StreamName::new("order-stray").expect("name");
    store
        .append(
            &stray,
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Refunded", r#"{"amount": 5}"#)],
        )
        .await
        .expect("append");
    for n in 3..5 {
        write_order(&orders, n).await;
    }

    let mut runner = schema.runner(&store).await;
    match runner.catch_up().await {
        Err(Error::ProjectionFailed {
            stream, event_type, ..
        }) => {
            assert_eq!(stream, stray);
            assert_eq!(event_type, "Refunded");
        }
        other => panic!("expected the projection to stop at the stray event, got {other:?}"),
    }
    assert!(
        schema.rows().await.is_empty(),
        "the failed batch left no row"
    );
    assert_eq!(runner.position(), None, "the checkpoint did not move");

    let mut one_by_one = schema.runner(&store).await.with_batch_events(1);
    assert!(one_by_one.catch_up().await.is_err());
    let rows = schema.rows().await;
    assert_eq!(rows.len(), 3, "events before the stray one are committed");
    let before_stray = one_by_one.position().expect("checkpoint moved");
    let stray_position = store
        .read_stream(&stray, strata_core::ReadStreamOptions::forwards())
        .await
        .expect("read")
        .into_events()[0]
        .position;
    assert!(before_stray < stray_position);
}

#[tokio::test]
async fn a_second_runner_of_the_same_projection_is_refused() {
    let schema = TestSchema::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    let orders = Repository::<Order, Store>::new(store.clone());
    write_order(&orders, 1).await;
    let mut first = schema.runner(&store).await;
    let mut second = schema.runner(&store).await;
    first.catch_up().await.expect("first catches up");
    let rows = schema.rows().await;
    write_order(&orders, 2).await;
    assert!(
        second.catch_up().await.is_err(),
        "the second runner must not write"
    );
    assert_eq!(schema.rows().await, rows);
    first.catch_up().await.expect("the first goes on");
    assert_eq!(schema.rows().await.len(), 2);
}
