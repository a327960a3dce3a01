//! A server over a fresh engine store, stopped when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_engine::{Config, Store};
use strata_http::HttpOptions;
use strata_server::{ServeConfig, Server};
use tokio::sync::oneshot;

pub struct Running {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    _store: Arc<Store>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Appends `count` JSON events to `stream` through the API; returns their ids.
    pub async fn append(&self, stream: &str, count: usize) -> Vec<String> {
        let ids: Vec<String> = (0..count)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let events: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(index, id)| serde_json::json!({"id": id, "type": "Happened", "data": {"index": index}}))
            .collect();
        let answer = self
            .client
            .post(self.url(&format!("/v1/streams/{stream}")))
            .json(&serde_json::json!({"events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
        ids
    }
}

pub async fn start() -> Running {
    start_with(HttpOptions::default()).await
}

/// A server with users and ACLs on (the built-in `admin` and `ops`, password `changeit`).
pub async fn start_secured() -> Running {
    start_config(ServeConfig {
        security: strata_auth::SecurityOptions::default(),
        ..ServeConfig::default()
    })
    .await
}

pub async fn start_with(http: HttpOptions) -> Running {
    start_config(ServeConfig {
        http,
        ..ServeConfig::default()
    })
    .await
}

async fn start_config(config: ServeConfig) -> Running {
    start_store(config, Maintained::No).await
}

/// A secured server (`admin`, `ops`) whose engine store operators may scavenge.
pub async fn start_scavengeable() -> Running {
    start_store(
        ServeConfig {
            security: strata_auth::SecurityOptions::default(),
            ..ServeConfig::default()
        },
        Maintained::Store,
    )
    .await
}

/// Like [`start_scavengeable`], with each scavenge held at `gate` until the test opens it:
/// a run stays under way for as long as the test needs.
pub async fn start_scavengeable_held(gate: Arc<Gate>) -> Running {
    start_store(
        ServeConfig {
            security: strata_auth::SecurityOptions::default(),
            ..ServeConfig::default()
        },
        Maintained::Held(gate),
    )
    .await
}

/// Holds scavenges until opened.
#[derive(Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// The store's maintenance, each scavenge waiting at the gate first.
struct Held {
    store: Arc<Store>,
    gate: Arc<Gate>,
}

impl strata_core::Maintenance for Held {
    fn scavenge(
        &self,
        options: strata_core::ScavengeOptions,
    ) -> strata_core::Result<strata_core::ScavengeReport> {
        self.gate.wait();
        strata_core::Maintenance::scavenge(&*self.store, options)
    }

    fn checkpoint_indexes(&self) -> strata_core::Result<()> {
        strata_core::Maintenance::checkpoint_indexes(&*self.store)
    }
}

/// What the server scavenges with.
enum Maintained {
    /// Nothing: a store that cannot scavenge.
    No,
    /// The store itself.
    Store,
    /// The store, each scavenge held at the gate first.
    Held(Arc<Gate>),
}

async fn start_store(config: ServeConfig, maintained: Maintained) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let mut server = Server::bind(&ServeConfig {
        bind: vec![Ipv4Addr::LOCALHOST.into()],
        port: 0,
        ..config
    })
    .await
    .unwrap()
    .with_metrics(engine_metrics(&store));
    match maintained {
        Maintained::No => {}
        Maintained::Store => server = server.with_maintenance(store.clone()),
        Maintained::Held(gate) => {
            server = server.with_maintenance(Arc::new(Held {
                store: store.clone(),
                gate,
            }));
        }
    }
    let address = server.local_addrs()[0];
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(Arc::clone(&store), async {
        let _ = stopped.await;
    }));
    Running {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        stop: Some(stop),
        _store: store,
        _dir: dir,
    }
}

/// Metrics the engine feeds as `strata serve` wires them: group commits, appends in flight.
fn engine_metrics(store: &Arc<Store>) -> Arc<strata_http::Metrics> {
    struct Commits(Arc<strata_http::Metrics>);
    impl strata_engine::CommitObserver for Commits {
        fn committed(&self, stats: &strata_engine::CommitStats) {
            self.0
                .record_commit(stats.requests, stats.bytes, stats.sync, stats.flush);
        }
    }
    let metrics = Arc::new(strata_http::Metrics::new());
    assert!(store.observe_commits(Arc::new(Commits(Arc::clone(&metrics)))));
    let weak = Arc::downgrade(store);
    metrics.on_scrape(move |metrics| {
        if let Some(store) = weak.upgrade() {
            metrics.set_appends_in_flight_kib(store.appends_in_flight_kib() as u64);
        }
    });
    metrics
}

/// Reads a streaming body piece by piece, handing out complete records (NDJSON lines or
/// SSE events, by separator).
pub struct Records {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    separator: &'static [u8],
}

impl Records {
    pub fn ndjson(response: reqwest::Response) -> Self {
        Self::new(response, b"\n")
    }

    pub fn sse(response: reqwest::Response) -> Self {
        Self::new(response, b"\n\n")
    }

    fn new(response: reqwest::Response, separator: &'static [u8]) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            separator,
        }
    }

    /// The next record, or `None` when the body ended; panics after 10 s without one.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self
                .buffer
                .windows(self.separator.len())
                .position(|window| window == self.separator)
            {
                let record: Vec<u8> = self.buffer.drain(..at + self.separator.len()).collect();
                return Some(String::from_utf8(record[..at].to_vec()).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("a record within 10 s")?;
            self.buffer.extend_from_slice(&chunk.unwrap());
        }
    }

    pub async fn next_json(&mut self) -> Option<serde_json::Value> {
        let line = self.next().await?;
        Some(serde_json::from_str(&line).unwrap())
    }
}

/// The fields of one SSE event: (`id`, `event`, `data`), comments as event `comment`.
pub fn sse_fields(record: &str) -> (Option<String>, String, String) {
    let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
    for line in record.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = value.to_owned();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        } else if line.starts_with(':') {
            event = "comment".to_owned();
        }
    }
    (id, event, data)
}
