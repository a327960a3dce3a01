//! Any bytes as the messages of any gRPC call, through the services over a real store:
//! every call ends with a gRPC status (a refusal for what does not decode or is invalid),
//! never a panic; streaming answers are read for a moment and dropped.
//!
//! Input: the first byte picks the method; then up to 8 messages, each a 2-byte
//! little-endian length and that many bytes (the last one takes what is left when fewer
//! remain). A plain format, so seeds are written from the tests' requests
//! (fuzz/corpus/grpc_request, made by fuzz/seeds/grpc_request.py).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use strata_fuzz::{runtime, shared_store};
use strata_projections::{ProjectionManager, QuickJsEngine, SandboxLimits};
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
    "/kurrentdb.protocol.v2.streams.StreamsService/AppendSession",
    "/kurrentdb.protocol.v2.streams.StreamsService/AppendRecords",
    "/event_store.client.projections.Projections/Create",
    "/event_store.client.projections.Projections/Update",
    "/event_store.client.projections.Projections/Delete",
    "/event_store.client.projections.Projections/Statistics",
    "/event_store.client.projections.Projections/Disable",
    "/event_store.client.projections.Projections/Enable",
    "/event_store.client.projections.Projections/Reset",
    "/event_store.client.projections.Projections/State",
    "/event_store.client.projections.Projections/Result",
    "/event_store.client.projections.Projections/RestartSubsystem",
];

/// Messages read from one input at most.
const MESSAGES_MAX: usize = 8;

/// The input's messages: each a 2-byte little-endian length and its bytes.
fn messages(mut data: &[u8]) -> Vec<&[u8]> {
    let mut messages = Vec::new();
    while !data.is_empty() && messages.len() < MESSAGES_MAX {
        if data.len() < 2 {
            messages.push(data);
            break;
        }
        let length = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (message, after) = rest.split_at(length.min(rest.len()));
        messages.push(message);
        data = after;
    }
    messages
}

/// The projection manager behind the Projections service, over the shared store.
fn projections() -> Arc<ProjectionManager> {
    static MANAGER: OnceLock<Arc<ProjectionManager>> = OnceLock::new();
    Arc::clone(MANAGER.get_or_init(|| {
        runtime().block_on(async {
            let store: Arc<dyn strata_core::EventStore> = shared_store();
            ProjectionManager::start(store, Arc::new(QuickJsEngine), SandboxLimits::default())
                .await
                .expect("the projection manager starts")
        })
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let path = METHODS[usize::from(method) % METHODS.len()];
    let mut body = BytesMut::new();
    for message in messages(rest) {
        body.put_u8(0);
        body.put_u32(message.len() as u32);
        body.put_slice(message);
    }
    let manager = projections();
    runtime().block_on(async {
        let mut options =
            strata_grpc::GrpcOptions::new(strata_grpc::Advertised::new("127.0.0.1", 2113));
        options.projections = Some(manager);
        let router = strata_grpc::services_with(shared_store(), options)
            .routes
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
