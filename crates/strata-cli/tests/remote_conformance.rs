//! The conformance kit on `strata_remote::RemoteStore`: every case runs against a real
//! `strata serve` process (loopback, free port, 32 MiB segments) through the official
//! `kurrentdb` client. Each store is its own server; `reopen` kills the server, as a crash
//! would, and starts a new one on the same data directory.
//!
//! Every case of the kit holds over the wire; none is skipped or weakened.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::sync::{Arc, Mutex};

use strata_remote::RemoteStore;
use support::Server;

/// Starts one server per fresh store and keeps it until the test ends.
#[derive(Default)]
struct ServerBackend {
    servers: Mutex<Vec<Server>>,
}

impl ServerBackend {
    async fn connect(&self, server: Server) -> Arc<RemoteStore> {
        let url = server.url();
        self.servers.lock().expect("servers").push(server);
        RemoteStore::connect_shared(&url)
            .await
            .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
    }
}

#[async_trait::async_trait]
impl strata_core::conformance::Backend for ServerBackend {
    type Store = RemoteStore;

    async fn fresh(&self) -> Arc<RemoteStore> {
        let server = tokio::task::spawn_blocking(Server::start)
            .await
            .expect("server start");
        self.connect(server).await
    }

    async fn reopen(&self, store: Arc<RemoteStore>) -> Arc<RemoteStore> {
        let url = store.url().to_owned();
        drop(store);
        let server = {
            let mut servers = self.servers.lock().expect("servers");
            let index = servers
                .iter()
                .position(|server| server.url() == url)
                .expect("the store's server");
            servers.swap_remove(index)
        };
        let server = tokio::task::spawn_blocking(move || server.restart())
            .await
            .expect("server restart");
        self.connect(server).await
    }
}

strata_core::conformance_tests!(ServerBackend::default());
