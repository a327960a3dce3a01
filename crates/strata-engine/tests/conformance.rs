//! The conformance kit against the embedded engine.

use std::sync::Arc;

use strata_engine::{Config, Store};

/// Each store lives in its own temporary directory, removed when the test process ends.
struct EngineBackend;

#[async_trait::async_trait]
impl strata_core::conformance::Backend for EngineBackend {
    type Store = Store;

    async fn fresh(&self) -> Arc<Store> {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        Store::open(&dir, Config::small_for_tests()).expect("a fresh store opens")
    }
}
