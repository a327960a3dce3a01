//! Any bytes as the messages of any gRPC call, through the services over a real store:
//! every call ends with a gRPC status (a refusal for what does not decode or is invalid),
//! never a panic; streaming answers are read for a moment and dropped.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use strata_fuzz::{runtime, shared_store};
use tower::ServiceExt;

const METHODS: &[&str] = &[
    "/event_store.client.streams.Streams/Read",
    "/event_store.client.streams.Streams/Append",
    "/event_store.client.streams.Streams/Delete",
    "/event_store.client.streams.Streams/Tombstone",
    "/event_store.client.streams.Streams/BatchAppend",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/Create",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/Update",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/Delete",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/Read",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/GetInfo",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/ReplayParked",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/List",
    "/event_store.client.persistent_subscriptions.PersistentSubscriptions/RestartSubsystem",
    "/event_store.client.users.Users/Create",
    "/event_store.client.users.Users/Details",
    "/event_store.client.gossip.Gossip/Read",
    "/event_store.client.server_features.ServerFeatures/GetSupportedMethods",
];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    /// Each one framed as a gRPC message (uncompressed).
    messages: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let path = METHODS[input.method as usize % METHODS.len()];
    let mut body = BytesMut::new();
    for message in input.messages.iter().take(8) {
        body.put_u8(0);
        body.put_u32(message.len() as u32);
        body.put_slice(message);
    }
    runtime().block_on(async {
        let router = strata_grpc::routes(
            shared_store(),
            strata_grpc::Advertised::new("127.0.0.1", 2113),
        )
        .into_axum_router();
        let request = axum::http::Request::post(path)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(axum::body::Body::from(Bytes::from(body)))
            .expect("a request");
        let response = router.oneshot(request).await.expect("the router answers");
        assert_eq!(response.status(), 200, "gRPC answers over HTTP 200");
        let mut body = response.into_body();
        // A subscription never ends: read what comes at once, then hang up.
        let _ = tokio::time::timeout(Duration::from_millis(20), async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        })
        .await;
    });
});
