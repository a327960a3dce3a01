//! For the crate's own tests against PostgreSQL: a fresh schema of the test database
//! (`STRATA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped when the guard goes.

use crate::config::PostgresConfig;
use crate::schema::drop_schema;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub(crate) fn test_url() -> String {
    std::env::var("STRATA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

pub(crate) struct TestSchema {
    pub(crate) name: String,
}

impl TestSchema {
    pub(crate) fn new() -> Self {
        Self {
            name: format!("strata_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Few reader connections (tests run in parallel); sessions named after the schema,
    /// so a test finds its own backends in `pg_stat_activity`.
    pub(crate) fn config(&self) -> PostgresConfig {
        let mut config = PostgresConfig::new(test_url()).with_schema(self.name.clone());
        config.reader_connections = 1;
        config.application_name = self.name.clone();
        config
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Dropped inside the test's runtime, which cannot be blocked on: use a thread.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            if let Err(error) = runtime.block_on(drop_schema(&test_url(), &name)) {
                eprintln!("cannot drop test schema {name}: {error}");
            }
        });
        let _ = cleanup.join();
    }
}
