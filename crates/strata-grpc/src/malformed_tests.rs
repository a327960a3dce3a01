//! Malformed requests over a real loopback HTTP/2 connection: each is INVALID_ARGUMENT
//! with a clear message, nothing is written, and the server goes on serving.

use std::sync::Arc;

use prost::bytes::{Buf, BufMut, Bytes};
use strata_core::{EventStore, ReadAllOptions};
use strata_engine::{Config, Store};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};

use crate::proto::event_store::client::streams::append_req::options::ExpectedStreamRevision;
use crate::proto::event_store::client::streams::streams_client::StreamsClient;
use crate::proto::event_store::client::streams::{AppendReq, ReadReq, append_req, read_req};
use crate::proto::event_store::client::{Empty, StreamIdentifier, Uuid, uuid};

/// Sends and receives raw bytes, so a test can put anything on the wire.
#[derive(Default)]
struct RawCodec;

struct RawBytes;

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

struct Running {
    store: Arc<Store>,
    channel: Channel,
    _dir: tempfile::TempDir,
}

async fn serve() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes = crate::routes(
        Arc::clone(&store),
        crate::Advertised::new("127.0.0.1", address.port()),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming),
    );
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        store,
        channel,
        _dir: dir,
    }
}

fn options(stream: &str) -> AppendReq {
    AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: Some(StreamIdentifier {
                stream_name: Bytes::copy_from_slice(stream.as_bytes()),
            }),
            expected_stream_revision: Some(ExpectedStreamRevision::Any(Empty {})),
        })),
    }
}

fn message(id: Uuid, metadata: &[(&str, &str)], data: Vec<u8>) -> AppendReq {
    AppendReq {
        content: Some(append_req::Content::ProposedMessage(
            crate::proposed_message::ProposedMessage {
                id: Some(id),
                metadata: metadata
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                custom_metadata: Bytes::new(),
                data: Bytes::from(data),
            },
        )),
    }
}

fn string_uuid(text: &str) -> Uuid {
    Uuid {
        value: Some(uuid::Value::String(text.to_owned())),
    }
}

const GOOD_ID: &str = "3f8e1e3c-0b5a-4f6e-9a53-3b0c6c2d7a11";
const JSON: [(&str, &str); 2] = [("type", "Happened"), ("content-type", "application/json")];

async fn append(running: &Running, requests: Vec<AppendReq>) -> Result<(), Status> {
    let mut client = StreamsClient::new(running.channel.clone());
    client.append(tokio_stream_iter(requests)).await.map(|_| ())
}

fn tokio_stream_iter(
    requests: Vec<AppendReq>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = AppendReq> {
    tonic::codegen::tokio_stream::iter(requests)
}

async fn assert_nothing_written(running: &Running) {
    let all = running
        .store
        .read_all(ReadAllOptions::forwards())
        .await
        .unwrap();
    assert!(
        all.events.is_empty(),
        "nothing may be written, found {:?}",
        all.events
    );
}

async fn assert_still_serves(running: &Running) {
    append(
        running,
        vec![
            options("fine-1"),
            message(string_uuid(GOOD_ID), &JSON, b"{}".to_vec()),
        ],
    )
    .await
    .expect("a good append works after the bad request");
}

#[tokio::test]
async fn garbage_bytes_are_invalid_argument() {
    let running = serve().await;
    let mut grpc = tonic::client::Grpc::new(running.channel.clone());
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/event_store.client.streams.Streams/Delete",
    );
    let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x42, 0x13, 0x37];
    let refused = grpc
        .unary(tonic::Request::new(garbage), path, RawCodec)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("not a valid"),
        "{}",
        refused.message()
    );
    assert_nothing_written(&running).await;
    assert_still_serves(&running).await;
}

#[tokio::test]
async fn missing_type_bad_uuid_and_oversize_events_write_nothing() {
    let running = serve().await;
    let cases: Vec<(&str, Vec<AppendReq>, &str)> = vec![
        (
            "no type",
            vec![
                options("s-1"),
                message(
                    string_uuid(GOOD_ID),
                    &[("content-type", "application/json")],
                    vec![],
                ),
            ],
            "type",
        ),
        (
            "bad uuid",
            vec![options("s-1"), message(string_uuid("nope"), &JSON, vec![])],
            "UUID",
        ),
        (
            "no options",
            vec![message(string_uuid(GOOD_ID), &JSON, vec![])],
            "options",
        ),
        (
            "two options",
            vec![options("s-1"), options("s-1")],
            "options",
        ),
        (
            "oversize",
            vec![
                options("s-1"),
                message(
                    string_uuid(GOOD_ID),
                    &JSON,
                    vec![b'x'; Config::small_for_tests().limits.event_bytes_max + 1],
                ),
            ],
            "limit",
        ),
    ];
    for (case, requests, says) in cases {
        let refused = append(&running, requests).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{case}: {refused:?}");
        assert!(
            refused.message().contains(says),
            "{case}: {}",
            refused.message()
        );
        assert_nothing_written(&running).await;
    }
    assert_still_serves(&running).await;
}

#[tokio::test]
async fn reads_without_their_options_are_invalid_argument() {
    let running = serve().await;
    let mut client = StreamsClient::new(running.channel.clone());
    let no_target = ReadReq {
        options: Some(read_req::Options {
            count_option: Some(read_req::options::CountOption::Count(10)),
            ..read_req::Options::default()
        }),
    };
    let refused = client.read(no_target).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let refused = client.read(ReadReq { options: None }).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_still_serves(&running).await;
}
