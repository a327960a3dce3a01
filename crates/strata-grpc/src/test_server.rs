//! A gRPC server over a fresh engine store on a loopback port, for the crate's tests.

use std::net::SocketAddr;
use std::sync::Arc;

use strata_core::{EventStore, ReadAllOptions, RecordedEvent};
use strata_engine::{Config, Store};
use tonic::transport::{Channel, Server};

use crate::{Advertised, GrpcOptions};

pub(crate) struct Running<S: EventStore = Store> {
    pub(crate) store: Arc<S>,
    pub(crate) channel: Channel,
    pub(crate) address: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Serves a fresh engine store with `config`.
pub(crate) async fn serve(config: Config) -> Running {
    serve_with(config, |options| options).await
}

/// Serves a fresh engine store with `config` and the options `adjust` makes.
pub(crate) async fn serve_with(
    config: Config,
    adjust: impl FnOnce(GrpcOptions) -> GrpcOptions,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config).unwrap();
    serve_store(store, dir, adjust).await
}

/// Serves `store` (kept in `dir`) with the options `adjust` makes.
pub(crate) async fn serve_store<S: EventStore>(
    store: Arc<S>,
    dir: tempfile::TempDir,
    adjust: impl FnOnce(GrpcOptions) -> GrpcOptions,
) -> Running<S> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let options = adjust(GrpcOptions::new(Advertised::new(
        "127.0.0.1",
        address.port(),
    )));
    let routes = crate::services_with(Arc::clone(&store), options).routes;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming),
    );
    let channel = channel_to(&format!("http://{address}")).await;
    Running {
        store,
        channel,
        address,
        _dir: dir,
    }
}

pub(crate) async fn channel_to(uri: &str) -> Channel {
    Channel::from_shared(uri.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Every event of `$all`.
pub(crate) async fn all_events<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut options = ReadAllOptions::forwards();
    loop {
        let slice = store.read_all(options.clone()).await.unwrap();
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        options = options.from_position(slice.next_position);
    }
}
