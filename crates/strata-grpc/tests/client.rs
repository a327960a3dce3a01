//! `strata_grpc::client` against `strata_grpc::routes` served on a loopback listener.

use std::sync::Arc;

use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, StreamName, StreamState,
};
use strata_engine::{Config, Store};
use strata_grpc::client::{Client, ClientError, IdFormat};
use tonic::transport::Server;

struct Running {
    store: Arc<Store>,
    url: String,
    _dir: tempfile::TempDir,
}

async fn serve() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes = strata_grpc::routes(
        Arc::clone(&store),
        strata_grpc::Advertised::new("127.0.0.1", address.port()),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming),
    );
    Running {
        store,
        url: format!("kdb://127.0.0.1:{}?tls=false", address.port()),
        _dir: dir,
    }
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn events(count: usize, event_type: &str) -> Vec<ProposedEvent> {
    (0..count)
        .map(|index| ProposedEvent::json(event_type, format!(r#"{{"index":{index}}}"#)))
        .collect()
}

async fn all_events(store: &Store) -> Vec<strata_core::RecordedEvent> {
    let options = ReadAllOptions {
        max_count: 10_000,
        ..ReadAllOptions::forwards()
    };
    store.read_all(options).await.unwrap().events
}

#[tokio::test]
async fn appends_land_with_their_ids_types_and_bodies_in_both_id_formats() {
    let server = serve().await;
    for format in [IdFormat::String, IdFormat::Structured] {
        let client = Client::connect(&server.url)
            .await
            .unwrap()
            .with_id_format(format);
        let sent = events(3, "Placed");
        let name = format!("order-{format:?}");
        let appended = client
            .append(&stream(&name), ExpectedRevision::NoStream, sent.clone())
            .await
            .unwrap();
        assert_eq!(
            appended.current_revision.map(|revision| revision.0),
            Some(2)
        );
        let stored: Vec<_> = all_events(&server.store)
            .await
            .into_iter()
            .filter(|event| event.stream.as_str() == name)
            .collect();
        assert_eq!(stored.len(), 3);
        for (stored, sent) in stored.iter().zip(&sent) {
            assert_eq!(stored.id, sent.id);
            assert_eq!(stored.event_type, "Placed");
            assert_eq!(stored.data, sent.data);
            assert_eq!(stored.content_type, strata_core::ContentType::Json);
        }
        assert_eq!(appended.position, Some(stored[2].position));
    }
}

/// An append's codec buffers start small (crates/strata-grpc/src/codec.rs); events far
/// larger than them, alone and many in one call, must arrive whole.
#[tokio::test]
async fn events_larger_than_the_append_buffers_arrive_whole() {
    let server = serve().await;
    let client = Client::connect(&server.url).await.unwrap();
    let big: String = (0..200_000)
        .map(|index| char::from(b'a' + (index % 26) as u8))
        .collect();
    let mut sent = vec![ProposedEvent::json("Big", format!(r#"{{"body":"{big}"}}"#))];
    sent.extend((0..1_000).map(|index| {
        ProposedEvent::json(
            "Small",
            format!(r#"{{"index":{index},"pad":"{}"}}"#, &big[..700]),
        )
    }));
    let appended = client
        .append(&stream("big"), ExpectedRevision::NoStream, sent.clone())
        .await
        .unwrap();
    assert_eq!(
        appended.current_revision.map(|revision| revision.0),
        Some(1_000)
    );
    let stored = all_events(&server.store).await;
    assert_eq!(stored.len(), sent.len());
    for (stored, sent) in stored.iter().zip(&sent) {
        assert_eq!(stored.id, sent.id);
        assert_eq!(stored.data, sent.data);
    }
}

#[tokio::test]
async fn a_wrong_expected_revision_is_its_own_error_and_writes_nothing() {
    let server = serve().await;
    let client = Client::connect(&server.url).await.unwrap();
    let name = stream("account-1");
    client
        .append(&name, ExpectedRevision::Any, events(2, "Opened"))
        .await
        .unwrap();
    let error = client
        .append(&name, ExpectedRevision::Exact(7), events(1, "Closed"))
        .await
        .unwrap_err();
    let ClientError::WrongExpectedRevision {
        expected, actual, ..
    } = error
    else {
        panic!("expected a wrong expected revision, got {error}");
    };
    assert_eq!(expected, ExpectedRevision::Exact(7));
    assert_eq!(actual, StreamState::At(strata_core::Revision(1)));
    assert_eq!(all_events(&server.store).await.len(), 2);
}

#[tokio::test]
async fn concurrent_batch_appends_over_one_call_each_get_their_own_answer() {
    let server = serve().await;
    let client = Client::connect(&server.url).await.unwrap();
    let appender = Arc::new(client.batch_appender().await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8u64 {
        let appender = Arc::clone(&appender);
        tasks.spawn(async move {
            let name = stream(&format!("batch-{task}"));
            let appended = appender
                .append(&name, ExpectedRevision::NoStream, events(100, "Batched"))
                .await
                .unwrap();
            assert_eq!(
                appended.current_revision.map(|revision| revision.0),
                Some(99)
            );
            // The same expectation again fails for this append alone.
            let error = appender
                .append(&name, ExpectedRevision::NoStream, events(1, "Batched"))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    ClientError::WrongExpectedRevision {
                        actual: StreamState::At(strata_core::Revision(99)),
                        ..
                    }
                ),
                "{error}"
            );
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    assert_eq!(all_events(&server.store).await.len(), 800);
}

#[tokio::test]
async fn read_all_forwards_hands_over_every_event_once_in_order_across_pages() {
    let server = serve().await;
    let client = Client::connect(&server.url).await.unwrap();
    for index in 0..5 {
        client
            .append(
                &stream(&format!("page-{index}")),
                ExpectedRevision::Any,
                events(2, "Paged"),
            )
            .await
            .unwrap();
    }
    let expected: Vec<_> = all_events(&server.store)
        .await
        .into_iter()
        .map(|event| (event.id, event.position, event.stream))
        .collect();
    assert_eq!(expected.len(), 10);
    // Page sizes that divide the total, that do not, and one larger than it.
    for page_events in [2, 3, 5, 10, 1_000] {
        let mut seen = Vec::new();
        let read = client
            .read_all_forwards(page_events, |event| {
                seen.push((event.id, event.position, event.stream));
            })
            .await
            .unwrap();
        assert_eq!(read, 10, "page of {page_events}");
        assert_eq!(seen, expected, "page of {page_events}");
    }
}

#[tokio::test]
async fn tls_and_unreachable_servers_are_clear_errors() {
    // TLS is the default, and needs the server's CA.
    let error = Client::connect("kdb://127.0.0.1:2113").await.unwrap_err();
    assert!(
        matches!(error, ClientError::InvalidUrl { .. }) && error.to_string().contains("tlsCaFile"),
        "{error}"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = Client::connect(&format!("esdb://127.0.0.1:{port}?tls=false"))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
}
