//! A webhook served here: retries on 5xx, 4xx parks the event, signatures, and the
//! management operations (stop, start, reset, delete; persisted; secrets never shown).

mod common;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use strata_connectors::{
    ConnectorDefinition, ConnectorState, Connectors, SIGNATURE_HEADER, StartFrom,
    checkpoint_stream, dead_letter_stream,
};
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};

use common::*;

const KEY: &str = "signing-key-42";
const TOKEN: &str = "Bearer secret-token-7";

#[derive(Default)]
struct Hook {
    /// (stream, revision) of each accepted event, in arrival order.
    accepted: Vec<(String, u64)>,
    /// Requests answered 503 so far (the first three are).
    refused: usize,
    bad_signatures: usize,
}

async fn receive(
    State(hook): State<Arc<Mutex<Hook>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut hook = hook.lock();
    if hook.refused < 3 {
        hook.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if signature != Some(strata_connectors_signature(&body).as_str())
        || authorization != Some(TOKEN)
    {
        hook.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    if event["type"] == "Poison" {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    hook.accepted.push((
        event["stream"].as_str().unwrap().to_owned(),
        event["revision"].as_u64().unwrap(),
    ));
    StatusCode::NO_CONTENT
}

/// The expected signature, computed independently of the crate (HMAC-SHA256 by hand).
fn strata_connectors_signature(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

async fn serve(hook: Arc<Mutex<Hook>>) -> String {
    let app = axum::Router::new()
        .route("/hook", post(receive).head(|| async { StatusCode::OK }))
        .with_state(hook);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hook")
}

fn definition(url: &str, category: &str) -> ConnectorDefinition {
    ConnectorDefinition::from_json(&format!(
        r#"{{"id": "hook",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "http", "url": "{url}", "signing_key": "{KEY}",
                      "headers": {{"Authorization": "{TOKEN}"}}}},
            "settings": {{"retry_initial_ms": 10, "retry_max_ms": 50}}}}"#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_parks_4xx_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let hook = Arc::new(Mutex::new(Hook::default()));
    let url = serve(Arc::clone(&hook)).await;
    let category = unique("pay");
    let mut expected = append_spread(&store, &category, 5, 200).await;
    store
        .append(
            &StreamName::new(format!("{category}-0")).unwrap(),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Poison", "{}")],
        )
        .await
        .unwrap();
    let poisoned = expected[&format!("{category}-0")];
    let more = append_spread(&store, &category, 5, 100).await;
    for (stream, count) in more {
        *expected.entry(stream).or_default() += count;
    }
    let end = last_position(&store).await;

    let connectors = Connectors::open(store.clone()).await.unwrap();
    connectors
        .create(definition(&url, &category))
        .await
        .unwrap();
    let info = wait_for(&connectors, "hook", "caught up", |info| {
        info.position >= Some(end)
    })
    .await;
    assert_eq!(info.counters.dead_lettered, 1, "{info:#?}");
    assert!(info.counters.retried >= 3, "{info:#?}");
    assert!(
        info.last_error.as_deref().unwrap_or("").contains("503"),
        "{info:#?}"
    );
    let shown = serde_json::to_string(&connectors.list().await.unwrap()).unwrap();
    for secret in [KEY, "secret-token-7"] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }

    // The poison event is parked; every other event arrived once, in order.
    {
        let hook = hook.lock();
        assert_eq!(hook.bad_signatures, 0);
        let mut received = hook.accepted.clone();
        // Renumber the poisoned stream's later revisions as if the parked one were absent.
        for (stream, revision) in &mut received {
            if *stream == format!("{category}-0") && *revision > poisoned {
                *revision -= 1;
            }
        }
        // `expected` counts the appended `Counted` events only: the poison is not in it.
        assert_in_order(&received, &expected);
    }
    let letters = store
        .read_stream(&dead_letter_stream("hook"), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_type, "Poison");

    // Stop, reset to the start, start again: everything is sent again.
    connectors.stop("hook").await.unwrap();
    assert_eq!(
        connectors.show("hook").await.unwrap().state,
        ConnectorState::Stopped
    );
    let before = hook.lock().accepted.len();
    connectors.reset("hook", StartFrom::Start).await.unwrap();
    connectors.start("hook").await.unwrap();
    wait_for(&connectors, "hook", "caught up after the reset", |info| {
        info.position >= Some(end)
    })
    .await;
    assert_eq!(hook.lock().accepted.len(), 2 * before);

    // Reset to the end while stopped: the end is taken at the reset, so an event appended
    // before the next start is still sent.
    connectors.stop("hook").await.unwrap();
    connectors.reset("hook", StartFrom::End).await.unwrap();
    let before = hook.lock().accepted.len();
    let later = format!("{category}-1");
    store
        .append(
            &StreamName::new(later.clone()).unwrap(),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Counted", "{}")],
        )
        .await
        .unwrap();
    let end = last_position(&store).await;
    connectors.start("hook").await.unwrap();
    wait_for(
        &connectors,
        "hook",
        "the event after the reset to the end",
        |info| info.position >= Some(end),
    )
    .await;
    let accepted = hook.lock().accepted.clone();
    assert_eq!(accepted.len(), before + 1, "{accepted:?}");
    assert_eq!(accepted[before].0, later);
    connectors.shutdown().await;
    drop(connectors);

    // The definition survives a reopen; delete removes it and its checkpoint.
    let connectors = Connectors::open(store.clone()).await.unwrap();
    let listed = connectors.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].enabled);
    connectors.delete("hook").await.unwrap();
    assert!(connectors.list().await.unwrap().is_empty());
    assert!(
        store
            .read_stream(&checkpoint_stream("hook"), ReadStreamOptions::forwards())
            .await
            .unwrap()
            .into_events()
            .is_empty()
    );
    drop(connectors);
    let connectors = Connectors::open(store).await.unwrap();
    assert!(connectors.list().await.unwrap().is_empty());
}

/// `[[connectors]]` in a config file: created, left alone, updated in place (checkpoint
/// kept), a broker that is down shows as retrying instead of failing the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_connectors_are_created_updated_or_left_alone() {
    use strata_connectors::Declared;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let hook = Arc::new(Mutex::new(Hook {
        refused: 3,
        ..Hook::default()
    }));
    let url = serve(Arc::clone(&hook)).await;
    let category = unique("decl");
    append_spread(&store, &category, 3, 30).await;
    let end = last_position(&store).await;
    let down = ConnectorDefinition::from_json(
        r#"{"id": "down", "source": {"kind": "all"},
            "sink": {"type": "http", "url": "http://127.0.0.1:1/hook"}}"#,
    )
    .unwrap();

    let connectors = Connectors::open(store.clone()).await.unwrap();
    let declared = connectors
        .declare(vec![definition(&url, &category), down.clone()])
        .await
        .unwrap();
    assert_eq!(
        declared,
        vec![
            ("hook".to_owned(), Declared::Created),
            ("down".to_owned(), Declared::Created)
        ]
    );
    wait_for(&connectors, "hook", "caught up", |info| {
        info.position >= Some(end)
    })
    .await;
    let info = wait_for(&connectors, "down", "retrying", |info| {
        info.state == ConnectorState::Retrying
    })
    .await;
    assert!(
        info.last_error
            .as_deref()
            .unwrap_or("")
            .contains("127.0.0.1:1"),
        "{info:#?}"
    );

    // Same again: nothing happens. Changed settings: replaced, resumes from its checkpoint.
    let unchanged = connectors
        .declare(vec![definition(&url, &category)])
        .await
        .unwrap();
    assert_eq!(unchanged, vec![("hook".to_owned(), Declared::Unchanged)]);
    let mut changed = definition(&url, &category);
    changed.settings.batch_events_max = 7;
    let updated = connectors.declare(vec![changed]).await.unwrap();
    assert_eq!(updated, vec![("hook".to_owned(), Declared::Updated)]);
    append_spread(&store, &category, 3, 30).await;
    let end = last_position_of(&store, &category).await;
    wait_for(&connectors, "hook", "caught up after the update", |info| {
        info.position >= Some(end)
    })
    .await;
    assert_eq!(hook.lock().accepted.len(), 60, "each event once");

    let twice = connectors
        .declare(vec![down.clone(), down])
        .await
        .unwrap_err();
    assert!(twice.to_string().contains("declared twice"), "{twice}");
    connectors.shutdown().await;
}
