//! The conformance kit on `strata_remote::RemoteStore`: every case runs against a real
//! `strata serve` process (loopback, free port, 32 MiB segments) through the official
//! `kurrentdb` client. Each store is its own server; `reopen` kills the server, as a crash
//! would, and starts a new one on the same data directory. The cases that move time need
//! the server's clock in the test's hands: they run against the same server code started
//! inside the test process, over a store on the test's clock.
//!
//! Every case of the kit holds over the wire; none is skipped or weakened, except the
//! multi-stream appends: the official Rust client cannot send them, so here those cases
//! check that `RemoteStore` refuses them with `Unsupported` and writes nothing
//! (tests/python/test_multi_append.py drives them over the wire).
//!
//! A new server's `$all` begins with the events that create its built-in users, as
//! KurrentDB's does; the cases see each store as `LogFrom` its handover: `$all` and the
//! index streams from there on.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::sync::{Arc, Mutex};

use strata_core::Clock;
use strata_core::conformance::LogFrom;
use strata_remote::RemoteStore;
use support::{PostgresSchema, Server, postgres_url};
use tempfile::TempDir;

/// Starts one server per fresh store and keeps it until the test ends.
#[derive(Default)]
struct ServerBackend {
    servers: Mutex<Vec<Server>>,
    in_process: Mutex<Vec<InProcessServer>>,
}

/// A server running inside the test process; it stops when this is dropped.
struct InProcessServer {
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: TempDir,
    _schema: Option<PostgresSchema>,
}

/// Serves `store` on a free loopback port inside this process; returns its URL.
async fn serve_in_process<S: strata_core::EventStore>(
    store: Arc<S>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = strata_server::ServeConfig {
        bind: vec![std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)],
        port: 0,
        tls: None,
        ..strata_server::ServeConfig::default()
    };
    let mut server = strata_server::Server::bind(&config)
        .await
        .expect("bind a free port");
    // The built-in users exist before a client connects, as with `strata serve`.
    let shared: Arc<dyn strata_core::EventStore> = store.clone();
    server.secure(shared).await.expect("built-in users");
    let address = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(store, async move {
        let _ = stopped.await;
    }));
    (format!("kdb://{address}?tls=false"), stop)
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

/// `store` seen from its current end.
async fn handed_over(store: Arc<RemoteStore>) -> Arc<LogFrom<RemoteStore>> {
    Arc::new(
        LogFrom::at_end(store)
            .await
            .expect("the store's last position"),
    )
}

#[async_trait::async_trait]
impl strata_core::conformance::Backend for ServerBackend {
    type Store = LogFrom<RemoteStore>;

    /// The official Rust client (kurrentdb 1.2) has no multi-stream append, so
    /// `RemoteStore` refuses it; the Python client's tests send it over the wire.
    fn multi_append(&self) -> bool {
        false
    }

    async fn fresh(&self) -> Arc<LogFrom<RemoteStore>> {
        let server = tokio::task::spawn_blocking(Server::start)
            .await
            .expect("server start");
        handed_over(self.connect(server).await).await
    }

    /// The server code in this process over a store on `clock` (PostgreSQL when
    /// `STRATA_TEST_STORE=postgres`, else the engine).
    async fn fresh_with_clock(&self, clock: Clock) -> Arc<LogFrom<RemoteStore>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let on_postgres = std::env::var("STRATA_TEST_STORE").is_ok_and(|store| store == "postgres");
        let (url, stop, schema) = if on_postgres {
            let schema = PostgresSchema::new();
            let mut config =
                strata_postgres::PostgresConfig::new(postgres_url()).with_schema(&schema.name);
            config.clock = clock;
            let store = strata_postgres::PostgresStore::open(config)
                .await
                .expect("a fresh PostgreSQL store");
            let (url, stop) = serve_in_process(store).await;
            (url, stop, Some(schema))
        } else {
            let config = strata_engine::Config {
                clock,
                ..strata_engine::Config::small_for_tests()
            };
            let store = strata_engine::Store::open(dir.path(), config).expect("a fresh store");
            let (url, stop) = serve_in_process(store).await;
            (url, stop, None)
        };
        self.in_process
            .lock()
            .expect("in-process servers")
            .push(InProcessServer {
                _stop: stop,
                _dir: dir,
                _schema: schema,
            });
        let store = RemoteStore::connect_shared(&url)
            .await
            .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
        handed_over(store).await
    }

    async fn reopen(&self, store: Arc<LogFrom<RemoteStore>>) -> Arc<LogFrom<RemoteStore>> {
        let url = store.inner().url().to_owned();
        let start = store.start();
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
        Arc::new(LogFrom::from_position(self.connect(server).await, start))
    }
}

strata_core::conformance_tests!(ServerBackend::default());

/// A `$all` read that reaches the end continues from just after its last event, a place
/// no record starts at; reading from there works both ways (the adapter asks the server
/// from the event before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_just_after_the_last_event_work_both_ways() {
    use strata_core::conformance::Backend as _;
    use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, StreamName};

    let backend = ServerBackend::default();
    let store = backend.fresh().await;
    let stream = StreamName::new("after-1").expect("name");
    let batch = (0..3)
        .map(|n| ProposedEvent::json("T", format!("{{\"n\":{n}}}")))
        .collect();
    store
        .append(&stream, ExpectedRevision::NoStream, batch)
        .await
        .expect("append");
    let first = store
        .read_all(ReadAllOptions::forwards())
        .await
        .expect("read");
    assert!(first.is_end);
    let positions: Vec<_> = first.events.iter().map(|event| event.position).collect();
    assert_eq!(positions.len(), 3);
    assert_eq!(
        first.next_position.0,
        positions[2].0 + 1,
        "just after the last"
    );

    let nothing_yet = store
        .read_all(ReadAllOptions::forwards().from_position(first.next_position))
        .await
        .expect("read from just after");
    assert!(nothing_yet.events.is_empty() && nothing_yet.is_end);

    let later = store
        .append(
            &stream,
            ExpectedRevision::Exact(2),
            vec![ProposedEvent::json("T", "{}")],
        )
        .await
        .expect("append");
    let next = store
        .read_all(ReadAllOptions::forwards().from_position(first.next_position))
        .await
        .expect("read the new event");
    let next_positions: Vec<_> = next.events.iter().map(|event| event.position).collect();
    assert_eq!(next_positions, [later.position], "exactly the event after");

    let older = store
        .read_all(ReadAllOptions::backwards().from_position(first.next_position))
        .await
        .expect("read backwards from just after");
    let older_positions: Vec<_> = older.events.iter().map(|event| event.position).collect();
    assert_eq!(older_positions, [positions[2], positions[1], positions[0]]);
    assert!(older.is_end);
}
