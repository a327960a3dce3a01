//! The conformance kit against PostgreSQL: each store in its own new schema of the test
//! database (`STRATA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped when the test ends.

mod support;

use std::sync::{Arc, Mutex};

use strata_postgres::PostgresStore;
use support::TestSchema;

/// The schemas this backend created; each is dropped with it.
#[derive(Default)]
struct PostgresBackend {
    schemas: Mutex<Vec<TestSchema>>,
}

#[async_trait::async_trait]
impl strata_core::conformance::Backend for PostgresBackend {
    type Store = PostgresStore;

    async fn fresh_with_clock(&self, clock: strata_core::Clock) -> Arc<PostgresStore> {
        let schema = TestSchema::new();
        let mut config = schema.config();
        config.clock = clock;
        self.schemas
            .lock()
            .expect("no test panicked holding it")
            .push(schema);
        PostgresStore::open(config)
            .await
            .unwrap_or_else(|error| panic!("a fresh store opens: {error}"))
    }

    async fn reopen(&self, store: Arc<PostgresStore>) -> Arc<PostgresStore> {
        let config = store.config().clone();
        store.close().await;
        drop(store);
        PostgresStore::open(config)
            .await
            .unwrap_or_else(|error| panic!("the store reopens: {error}"))
    }
}

strata_core::conformance_tests!(PostgresBackend::default());
