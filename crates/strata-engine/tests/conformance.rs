//! The conformance kit against the embedded engine.

use std::sync::{Arc, Mutex};

use strata_engine::{Config, Store};
use tempfile::TempDir;

/// Each store lives in its own temporary directory, removed when the test ends.
#[derive(Default)]
struct EngineBackend {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait::async_trait]
impl strata_core::conformance::Backend for EngineBackend {
    type Store = Store;

    async fn fresh(&self) -> Arc<Store> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store =
            Store::open(dir.path(), Config::small_for_tests()).expect("a fresh store opens");
        self.dirs
            .lock()
            .expect("no test panicked holding it")
            .push(dir);
        store
    }

    async fn reopen(&self, store: Arc<Store>) -> Arc<Store> {
        let dir = store.data_dir().to_path_buf();
        store.close();
        Store::open(&dir, Config::small_for_tests()).expect("the store reopens")
    }
}

strata_core::conformance_tests!(EngineBackend::default());
