//! Read over a real loopback connection: invalid `$all` positions as the reference server
//! answers them, the filter window and checkpoint multiplier, the bound on subscriptions;
//! and what gossip and server features tell clients.

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::Config;
use tonic::Code;

use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::gossip::gossip_client::GossipClient;
use crate::proto::event_store::client::server_features::server_features_client::ServerFeaturesClient;
use crate::proto::event_store::client::streams::read_req::options::{
    self, AllOptions, CountOption, FilterOption, ReadDirection, StreamOption, SubscriptionOptions,
    UuidOption, all_options, filter_options, uuid_option,
};
use crate::proto::event_store::client::streams::read_resp::Content;
use crate::proto::event_store::client::streams::streams_client::StreamsClient;
use crate::proto::event_store::client::streams::{ReadReq, ReadResp, read_req};
use crate::test_server::{Running, all_events, channel_to, serve, serve_with};

/// Appends `count` events to `stream`, one append each.
async fn write(running: &Running, stream: &str, count: usize) {
    let stream = StreamName::new(stream).unwrap();
    for _ in 0..count {
        running
            .store
            .append(
                &stream,
                ExpectedRevision::Any,
                vec![ProposedEvent::json("E", "{}")],
            )
            .await
            .unwrap();
    }
}

/// A filter on stream-name prefixes, with the window and multiplier given.
fn prefix_filter(prefix: &str, window: Option<u32>, multiplier: u32) -> FilterOption {
    stream_filter(
        filter_options::Expression {
            regex: String::new(),
            prefix: vec![prefix.to_owned()],
        },
        window,
        multiplier,
    )
}

/// A stream-name regex: a filter the engine answers by scanning, so windows count every
/// event of the log (prefixes are served from the index: docs/INDEXES.md).
fn regex_filter(regex: &str, window: Option<u32>, multiplier: u32) -> FilterOption {
    stream_filter(
        filter_options::Expression {
            regex: regex.to_owned(),
            prefix: Vec::new(),
        },
        window,
        multiplier,
    )
}

fn stream_filter(
    expression: filter_options::Expression,
    window: Option<u32>,
    multiplier: u32,
) -> FilterOption {
    FilterOption::Filter(options::FilterOptions {
        filter: Some(filter_options::Filter::StreamIdentifier(expression)),
        window: Some(match window {
            Some(max) => filter_options::Window::Max(max),
            None => filter_options::Window::Count(Empty {}),
        }),
        checkpoint_interval_multiplier: multiplier,
    })
}

fn read_all_request(
    from: all_options::AllOption,
    count: Option<u64>,
    filter: Option<FilterOption>,
) -> ReadReq {
    ReadReq {
        options: Some(read_req::Options {
            stream_option: Some(StreamOption::All(AllOptions {
                all_option: Some(from),
            })),
            read_direction: ReadDirection::Forwards.into(),
            resolve_links: false,
            count_option: Some(match count {
                Some(count) => CountOption::Count(count),
                None => CountOption::Subscription(SubscriptionOptions {}),
            }),
            filter_option: Some(filter.unwrap_or(FilterOption::NoFilter(Empty {}))),
            uuid_option: Some(UuidOption {
                content: Some(uuid_option::Content::String(Empty {})),
            }),
            control_option: None,
        }),
    }
}

fn at(position: u64) -> all_options::AllOption {
    all_options::AllOption::Position(options::Position {
        commit_position: position,
        prepare_position: position,
    })
}

/// Reads every answer of a call that ends.
async fn read_to_end(running: &Running, request: ReadReq) -> Result<Vec<ReadResp>, tonic::Status> {
    let mut client = StreamsClient::new(running.channel.clone());
    let mut answers = client.read(request).await?.into_inner();
    let mut read = Vec::new();
    while let Some(answer) = answers.message().await? {
        read.push(answer);
    }
    Ok(read)
}

#[tokio::test]
async fn reading_all_from_inside_an_event_is_unknown_with_the_reference_message() {
    let running = serve(Config::small_for_tests()).await;
    write(&running, "inside-1", 2).await;
    let inside = all_events(&*running.store).await[0].position.0 + 8;
    let cases = [
        (None, "Unexpected ReadAllResult: InvalidPosition"),
        (
            Some(prefix_filter("inside", None, 1)),
            "Unexpected FilteredReadAllResult: InvalidPosition",
        ),
    ];
    for (filter, message) in cases {
        let refused = read_to_end(&running, read_all_request(at(inside), Some(10), filter))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unknown, "{refused:?}");
        assert_eq!(refused.message(), message);
    }
    let mut client = StreamsClient::new(running.channel.clone());
    let mut subscription = client
        .read(read_all_request(at(inside), None, None))
        .await
        .unwrap()
        .into_inner();
    let refused = loop {
        match subscription.message().await {
            Ok(Some(_confirmation)) => continue,
            Ok(None) => panic!("the subscription ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        refused.message(),
        "Trying to read from an invalid position."
    );
}

/// The answers of a subscription up to and including its `caught_up`.
async fn until_caught_up(answers: &mut tonic::Streaming<ReadResp>) -> Vec<Content> {
    let mut read = Vec::new();
    loop {
        let content = answers.message().await.unwrap().unwrap().content.unwrap();
        let done = matches!(content, Content::CaughtUp(_));
        read.push(content);
        if done {
            return read;
        }
    }
}

fn checkpoint_positions(contents: &[Content]) -> Vec<u64> {
    contents
        .iter()
        .filter_map(|content| match content {
            Content::Checkpoint(checkpoint) => Some(checkpoint.commit_position),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn filtered_subscriptions_checkpoint_every_window_times_multiplier_events_examined() {
    let running = serve(Config::small_for_tests()).await;
    write(&running, "noise-1", 20).await;
    let positions: Vec<u64> = all_events(&*running.store)
        .await
        .iter()
        .map(|event| event.position.0)
        .collect();
    let mut client = StreamsClient::new(running.channel.clone());
    let request = read_all_request(
        all_options::AllOption::Start(Empty {}),
        None,
        Some(regex_filter("^wanted", Some(3), 2)),
    );
    let mut answers = client.read(request).await.unwrap().into_inner();
    let read = until_caught_up(&mut answers).await;
    assert!(matches!(read[0], Content::Confirmation(_)));
    assert_eq!(
        checkpoint_positions(&read),
        vec![positions[5], positions[11], positions[17], positions[19]],
        "every 3 × 2 events looked at, and on catching up"
    );
    // The default window (`count`) is the reference server's 32.
    let request = read_all_request(
        all_options::AllOption::Start(Empty {}),
        None,
        Some(regex_filter("^wanted", None, 1)),
    );
    write(&running, "noise-1", 20).await;
    let positions: Vec<u64> = all_events(&*running.store)
        .await
        .iter()
        .map(|event| event.position.0)
        .collect();
    let mut answers = client.read(request).await.unwrap().into_inner();
    let read = until_caught_up(&mut answers).await;
    assert_eq!(
        checkpoint_positions(&read),
        vec![positions[31], positions[39]]
    );
    // A prefix is served from the index: its one window looks at the keys' events only,
    // none here, moves past all 40 events and checkpoints at its end.
    let request = read_all_request(
        all_options::AllOption::Start(Empty {}),
        None,
        Some(prefix_filter("wanted", Some(3), 2)),
    );
    let mut answers = client.read(request).await.unwrap().into_inner();
    let read = until_caught_up(&mut answers).await;
    assert_eq!(checkpoint_positions(&read), vec![positions[39]]);
}

#[tokio::test]
async fn a_zero_window_or_multiplier_is_invalid_argument() {
    let running = serve(Config::small_for_tests()).await;
    let start = || all_options::AllOption::Start(Empty {});
    let cases = [
        read_all_request(start(), Some(5), Some(prefix_filter("x", Some(0), 1))),
        read_all_request(start(), None, Some(prefix_filter("x", Some(1), 0))),
    ];
    for request in cases {
        let refused = read_to_end(&running, request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_are_resource_exhausted_until_one_ends() {
    let running = serve_with(Config::small_for_tests(), |options| crate::GrpcOptions {
        subscriptions_max: 2,
        ..options
    })
    .await;
    let subscribe = || read_all_request(all_options::AllOption::Start(Empty {}), None, None);
    let mut client = StreamsClient::new(running.channel.clone());
    let first = client.read(subscribe()).await.unwrap().into_inner();
    let _second = client.read(subscribe()).await.unwrap().into_inner();
    let refused = client.read(subscribe()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("limit of 2 subscriptions"),
        "{}",
        refused.message()
    );
    // Reads with a count are not subscriptions.
    read_to_end(
        &running,
        read_all_request(all_options::AllOption::Start(Empty {}), Some(1), None),
    )
    .await
    .unwrap();
    drop(first);
    // The slot comes back once the server sees the call end.
    for attempt in 0.. {
        match client.read(subscribe()).await {
            Ok(_third) => break,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
        }
        assert!(
            attempt < 1_000,
            "the ended subscription's slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn gossip_advertises_the_name_the_client_connected_with() {
    let running = serve(Config::small_for_tests()).await;
    let port = running.address.port();
    for (uri, host) in [
        (format!("http://localhost:{port}"), "localhost"),
        (format!("http://127.0.0.1:{port}"), "127.0.0.1"),
    ] {
        let channel = channel_to(&uri).await;
        let members = GossipClient::new(channel)
            .read(Empty {})
            .await
            .unwrap()
            .into_inner()
            .members;
        let endpoint = members[0].http_end_point.clone().unwrap();
        assert_eq!(
            (endpoint.address.as_str(), endpoint.port),
            (host, u32::from(port))
        );
    }
}

#[tokio::test]
async fn server_features_report_the_kurrentdb_version_whose_protocol_is_implemented() {
    let running = serve(Config::small_for_tests()).await;
    let methods = ServerFeaturesClient::new(running.channel.clone())
        .get_supported_methods(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(methods.event_store_server_version, "24.10.0");
    assert_eq!(crate::KURRENTDB_COMPATIBLE_VERSION, "24.10.0");
}

fn read_stream_request(stream: &str, resolve_links: bool) -> ReadReq {
    use crate::proto::event_store::client::StreamIdentifier;
    use crate::proto::event_store::client::streams::read_req::options::{
        StreamOptions, stream_options,
    };
    ReadReq {
        options: Some(read_req::Options {
            stream_option: Some(StreamOption::Stream(StreamOptions {
                stream_identifier: Some(StreamIdentifier {
                    stream_name: stream.as_bytes().to_vec().into(),
                }),
                revision_option: Some(stream_options::RevisionOption::Start(Empty {})),
            })),
            read_direction: ReadDirection::Forwards.into(),
            resolve_links,
            count_option: Some(CountOption::Count(100)),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
            uuid_option: Some(UuidOption {
                content: Some(uuid_option::Content::String(Empty {})),
            }),
            control_option: None,
        }),
    }
}

/// What a read with `resolve_links` sends for each kind of link, as the reference server's
/// table: the target with the link; the link alone when the target is gone; the link as
/// the event when its data names no revision; the link's position in every case.
#[tokio::test]
async fn resolved_links_carry_event_link_and_position_as_the_reference_server() {
    use crate::proto::event_store::client::streams::read_resp::read_event::Position as ReadPosition;
    let running = serve(Config::small_for_tests()).await;
    write(&running, "order-1", 2).await;
    let links = StreamName::new("links-1").unwrap();
    running
        .store
        .append(
            &links,
            ExpectedRevision::NoStream,
            ["1@order-1", "9@order-1", "abc"]
                .into_iter()
                .map(|data| ProposedEvent::binary("$>", data))
                .collect(),
        )
        .await
        .unwrap();
    let stored = running
        .store
        .read_stream(&links, strata_core::ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    let answers = read_to_end(&running, read_stream_request("links-1", true))
        .await
        .unwrap();
    let read: Vec<_> = answers
        .into_iter()
        .filter_map(|answer| match answer.content {
            Some(Content::Event(event)) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(read.len(), 3);
    let name = |event: &Option<
        crate::proto::event_store::client::streams::read_resp::read_event::RecordedEvent,
    >| {
        event.as_ref().map(|event| {
            let stream = event.stream_identifier.as_ref().unwrap();
            (
                String::from_utf8_lossy(&stream.stream_name).into_owned(),
                event.stream_revision,
            )
        })
    };
    assert_eq!(name(&read[0].event), Some(("order-1".to_owned(), 1)));
    assert_eq!(name(&read[0].link), Some(("links-1".to_owned(), 0)));
    assert_eq!(name(&read[1].event), None, "the target is gone");
    assert_eq!(name(&read[1].link), Some(("links-1".to_owned(), 1)));
    assert_eq!(name(&read[2].event), Some(("links-1".to_owned(), 2)));
    assert_eq!(
        name(&read[2].link),
        None,
        "data naming no revision is no link"
    );
    for (event, link) in read.iter().zip(&stored) {
        assert_eq!(
            event.position,
            Some(ReadPosition::CommitPosition(link.position.0)),
            "the position of the link"
        );
    }
    let unresolved = read_to_end(&running, read_stream_request("links-1", false))
        .await
        .unwrap();
    let plain = unresolved
        .into_iter()
        .filter_map(|answer| match answer.content {
            Some(Content::Event(event)) => Some(event),
            _ => None,
        })
        .filter(|event| {
            event.link.is_none() && name(&event.event).is_some_and(|(s, _)| s == "links-1")
        })
        .count();
    assert_eq!(plain, 3, "without resolve_links, the links as read");
}
