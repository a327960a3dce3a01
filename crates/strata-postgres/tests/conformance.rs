//! The conformance kit against PostgreSQL: each store in its own new schema of the test
//! database (`STRATA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped when the test ends.

use std::sync::{Arc, Mutex};

use strata_postgres::{PostgresConfig, PostgresStore, drop_schema};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn test_url() -> String {
    std::env::var("STRATA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The schemas this backend created; dropped with it.
#[derive(Default)]
struct PostgresBackend {
    schemas: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl strata_core::conformance::Backend for PostgresBackend {
    type Store = PostgresStore;

    async fn fresh(&self) -> Arc<PostgresStore> {
        let schema = format!("strata_test_{}", uuid::Uuid::new_v4().simple());
        self.schemas
            .lock()
            .expect("no test panicked holding it")
            .push(schema.clone());
        let config = PostgresConfig::new(test_url()).with_schema(schema);
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

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap_or_else(|p| p.into_inner()));
        // Dropped inside the test's runtime, which cannot be blocked on: use a thread.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            runtime.block_on(async {
                for schema in schemas {
                    if let Err(error) = drop_schema(&test_url(), &schema).await {
                        eprintln!("cannot drop test schema {schema}: {error}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

strata_core::conformance_tests!(PostgresBackend::default());
