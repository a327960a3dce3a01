//! `strata.dcb.v1.Dcb` over a real loopback connection: tagged appends, query reads, a
//! failed condition (ABORTED with its trailers), and racing conditional appends of which
//! exactly one wins.

use strata_engine::Config;
use tonic::Code;

use crate::proto::strata::dcb::v1 as pb;
use crate::proto::strata::dcb::v1::dcb_client::DcbClient;
use crate::test_server::{Running, serve};

fn tag_query(tag: &str) -> pb::Query {
    pb::Query {
        items: vec![pb::QueryItem {
            types: Vec::new(),
            tags: vec![tag.to_owned()],
        }],
    }
}

fn append_request(stream: &str, tag: &str, after: Option<u64>) -> pb::AppendRequest {
    pb::AppendRequest {
        query: Some(tag_query(tag)),
        after,
        appends: vec![pb::StreamAppend {
            stream: stream.to_owned(),
            expected: None,
            events: vec![pb::Event {
                id: String::new(),
                r#type: "Claimed".to_owned(),
                data: br#"{"n":1}"#.to_vec().into(),
                metadata: Default::default(),
                json: true,
                tags: vec![tag.to_owned()],
            }],
        }],
    }
}

async fn read(running: &Running, tag: &str, after: Option<u64>) -> pb::ReadResponse {
    DcbClient::new(running.channel.clone())
        .read(pb::ReadRequest {
            query: Some(tag_query(tag)),
            after,
            max_count: 0,
        })
        .await
        .expect("read")
        .into_inner()
}

#[tokio::test]
async fn conditional_appends_and_query_reads_over_grpc() {
    let running = serve(Config::default()).await;
    let mut client = DcbClient::new(running.channel.clone());
    let first = client
        .append(append_request("seat-1", "seat:1", None))
        .await
        .expect("append on an empty store")
        .into_inner();
    assert_eq!(first.streams.len(), 1);
    assert_eq!(first.streams[0].stream, "seat-1");
    let slice = read(&running, "seat:1", None).await;
    assert_eq!(slice.events.len(), 1);
    assert_eq!(slice.events[0].tags, vec!["seat:1".to_owned()]);
    assert_eq!(slice.events[0].r#type, "Claimed");
    assert_eq!(slice.last_position, Some(first.position));
    assert!(!slice.more);
    let refused = client
        .append(append_request("seat-1b", "seat:1", None))
        .await
        .expect_err("a matching event exists");
    assert_eq!(refused.code(), Code::Aborted);
    assert_eq!(
        refused.metadata().get("exception").unwrap(),
        "append-condition-failed"
    );
    assert_eq!(
        refused.metadata().get("found-position").unwrap(),
        first.position.to_string().as_str()
    );
    client
        .append(append_request("seat-1b", "seat:1", slice.last_position))
        .await
        .expect("nothing matched after the position read");
    let invalid = client
        .append(pb::AppendRequest {
            query: Some(pb::Query { items: Vec::new() }),
            ..append_request("seat-2", "seat:2", None)
        })
        .await
        .expect_err("an empty query");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let missing = client
        .read(pb::ReadRequest {
            query: None,
            after: None,
            max_count: 5,
        })
        .await
        .expect_err("no query");
    assert_eq!(missing.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_appends_over_grpc_exactly_one_wins() {
    let running = serve(Config::default()).await;
    for round in 0..5 {
        let tag = format!("race:{round}");
        let mut tasks = Vec::new();
        for racer in 0..8 {
            let mut client = DcbClient::new(running.channel.clone());
            let request = append_request(&format!("racer-{round}x{racer}"), &tag, None);
            tasks.push(tokio::spawn(async move { client.append(request).await }));
        }
        let mut won = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => won += 1,
                Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert_eq!(read(&running, &tag, None).await.events.len(), 1);
    }
}
