//! `/connectors` over a secured server: who may manage connectors, secrets never echoed,
//! errors as problems, the KurrentDB-shaped create, and the OpenAPI document. The sink is
//! an HTTP webhook served by the test.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use strata_engine::{Config, Store};
use strata_server::{ServeConfig, Server};

const SECRET: &str = "hook-signing-key-not-shown";

struct Running {
    base: String,
    client: reqwest::Client,
    security: Arc<strata_auth::Security>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .basic_auth("ops", Some("changeit"))
    }
}

/// A secured server (users `admin`/`ops`, password `changeit`) with connectors mounted as
/// `strata serve` mounts them.
async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let mut server = Server::bind(&ServeConfig {
        bind: vec![Ipv4Addr::LOCALHOST.into()],
        port: 0,
        security: strata_auth::SecurityOptions::default(),
        ..ServeConfig::default()
    })
    .await
    .unwrap();
    let shared: Arc<dyn strata_core::EventStore> = store.clone();
    let security = server.secure(Arc::clone(&shared)).await.unwrap();
    let connectors = Arc::new(strata_connectors::Connectors::open(shared).await.unwrap());
    let (_running, running) = tokio::sync::watch::channel(Some(connectors));
    let routes = strata_http::connectors_router(
        running,
        Arc::clone(&security),
        server.http_options().clone(),
    );
    server = server.with_routes(routes);
    let address = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(store, async {
        let _ = stopped.await;
    }));
    Running {
        base: format!("http://{address}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        security,
        _stop: stop,
        _dir: dir,
    }
}

/// A webhook answering 204 to every POST (and to the HEAD create sends); counts events.
async fn webhook(received: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let received = Arc::clone(&received);
            async move {
                received.fetch_add(1, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }
        })
        .head(|| async { StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hook")
}

async fn problem(answer: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(answer.status(), status);
    assert_eq!(
        answer.headers()["content-type"],
        "application/problem+json",
        "errors are problems"
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["type"], format!("https://strata.dev/problems/{kind}"));
    body["detail"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_are_managed_by_operators_without_echoing_secrets() {
    let server = start().await;
    let received = Arc::new(AtomicUsize::new(0));
    let hook = webhook(Arc::clone(&received)).await;
    let body = json!({
        "source": {"kind": "stream", "stream": "orders-1"},
        "sink": {"type": "http", "url": hook, "signing_key": SECRET,
                 "headers": {"Authorization": "Bearer also-secret"}},
    });

    // Who may: anonymous 401, a plain user 403, ops and admin yes.
    let anonymous = server
        .client
        .get(format!("{}/connectors", server.base))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401, "unauthenticated").await;
    server
        .security
        .create_user("reader", "Reader", &[], "pw-reader")
        .await
        .unwrap();
    let reader = server
        .client
        .post(format!("{}/connectors/hooked", server.base))
        .basic_auth("reader", Some("pw-reader"))
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(reader, 403, "access-denied").await;

    // Create in KurrentDB's shape: the id from the path.
    let created = server
        .request(reqwest::Method::POST, "/connectors/hooked")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/connectors/hooked");
    let text = created.text().await.unwrap();
    assert!(
        !text.contains(SECRET) && !text.contains("also-secret"),
        "{text}"
    );
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["id"], "hooked");
    assert_eq!(created["definition"]["sink"]["signing_key"], "***");

    // Events flow; show reports progress and lag; list and show never echo secrets.
    let append = server
        .client
        .post(format!("{}/v1/streams/orders-1", server.base))
        .basic_auth("admin", Some("changeit"))
        .json(&json!({"events": [{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(append.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let shown: Value = server
            .request(reqwest::Method::GET, "/connectors/hooked")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The counter moves when the sink answers, the cursor just after.
        if shown["counters"]["published"] == 2 && shown["position"] == 1 {
            break shown;
        }
        assert!(Instant::now() < deadline, "{shown:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(received.load(Ordering::Relaxed), 2);
    assert_eq!(
        shown["position"], 1,
        "a stream source's cursor is a revision"
    );
    assert_eq!(shown["lag_events"], 0);
    assert_eq!(shown["state"], "running");
    let listed = server
        .request(reqwest::Method::GET, "/connectors")
        .basic_auth("admin", Some("changeit"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("hooked") && !listed.contains(SECRET),
        "{listed}"
    );

    // Refusals.
    let again = server
        .request(reqwest::Method::POST, "/connectors/hooked")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(again, 409, "connector-exists").await;
    let mismatch = server
        .request(reqwest::Method::POST, "/connectors/other")
        .json(&json!({"id": "hooked", "source": body["source"], "sink": body["sink"]}))
        .send()
        .await
        .unwrap();
    let detail = problem(mismatch, 400, "invalid-request").await;
    assert!(detail.contains("id"), "{detail}");
    let bad_template = server
        .request(reqwest::Method::POST, "/connectors")
        .json(&json!({"id": "templ", "source": {"kind": "all"},
                      "sink": {"type": "nats", "url": "nats://127.0.0.1:4222", "subject": "a.{nope}"}}))
        .send()
        .await
        .unwrap();
    let detail = problem(bad_template, 400, "invalid-connector").await;
    assert!(detail.contains("nope"), "{detail}");
    let text_body = server
        .request(reqwest::Method::POST, "/connectors")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(text_body, 415, "unsupported-media-type").await;
    let bad_reset = server
        .request(reqwest::Method::POST, "/connectors/hooked/reset")
        .json(&json!({"from": "middle"}))
        .send()
        .await
        .unwrap();
    problem(bad_reset, 400, "malformed-json").await;
    let bad_settings = server
        .request(reqwest::Method::PUT, "/connectors/hooked/settings")
        .json(&json!({"batch_events_max": 0}))
        .send()
        .await
        .unwrap();
    problem(bad_settings, 400, "invalid-connector").await;
    // A transform that does not compile is refused with the reason; a good one is kept.
    let bad_transform = server
        .request(reqwest::Method::PUT, "/connectors/hooked/transform")
        .json(&json!({"transform": "(e) => {"}))
        .send()
        .await
        .unwrap();
    let detail = problem(bad_transform, 400, "invalid-connector").await;
    assert!(
        detail.contains("the transform does not compile"),
        "{detail}"
    );
    let good_transform = server
        .request(reqwest::Method::PUT, "/connectors/hooked/transform")
        .json(&json!({"transform": "(e) => ({ type: e.type })"}))
        .send()
        .await
        .unwrap();
    assert_eq!(good_transform.status(), 204);
    let shown: serde_json::Value = server
        .request(reqwest::Method::GET, "/connectors/hooked")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["definition"]["transform"], "(e) => ({ type: e.type })",
        "{shown}"
    );

    // Stop, reset to the start, start: sent again.
    for (path, status) in [
        ("/connectors/hooked/stop", 204),
        ("/connectors/hooked/reset", 204),
        ("/connectors/hooked/start", 204),
        ("/connectors/missing/start", 404),
    ] {
        let answer = server
            .request(reqwest::Method::POST, path)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{path}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < 4 {
        assert!(Instant::now() < deadline, "not re-sent after the reset");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Delete.
    let deleted = server
        .request(reqwest::Method::DELETE, "/connectors/hooked")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = server
        .request(reqwest::Method::GET, "/connectors/hooked")
        .send()
        .await
        .unwrap();
    problem(gone, 404, "connector-not-found").await;

    // In the OpenAPI document.
    let document: Value = server
        .client
        .get(format!("{}/.well-known/openapi", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/connectors",
        "/connectors/{id}",
        "/connectors/{id}/start",
        "/connectors/{id}/stop",
        "/connectors/{id}/reset",
        "/connectors/{id}/settings",
    ] {
        assert!(document["paths"][path].is_object(), "{path} documented");
    }
}
