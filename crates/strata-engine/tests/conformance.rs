//! The conformance kit against the embedded engine.

use std::sync::{Arc, Mutex};

use strata_core::Clock;
use strata_engine::{Config, Store};
use tempfile::TempDir;

/// Each store lives in its own temporary directory, removed when the test ends, and keeps
/// its clock when reopened.
#[derive(Default)]
struct EngineBackend {
    dirs: Mutex<Vec<(TempDir, Clock)>>,
}

fn config(clock: Clock) -> Config {
    Config {
        clock,
        ..Config::small_for_tests()
    }
}

#[async_trait::async_trait]
impl strata_core::conformance::Backend for EngineBackend {
    type Store = Store;

    async fn fresh_with_clock(&self, clock: Clock) -> Arc<Store> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path(), config(clock.clone())).expect("a fresh store opens");
        self.dirs
            .lock()
            .expect("no test panicked holding it")
            .push((dir, clock));
        store
    }

    async fn reopen(&self, store: Arc<Store>) -> Arc<Store> {
        let dir = store.data_dir().to_path_buf();
        store.close();
        let clock = self
            .dirs
            .lock()
            .expect("no test panicked holding it")
            .iter()
            .find(|(known, _)| known.path() == dir)
            .map(|(_, clock)| clock.clone())
            .expect("the store was made by this backend");
        Store::open(&dir, config(clock)).expect("the store reopens")
    }
}

strata_core::conformance_tests!(EngineBackend::default());
