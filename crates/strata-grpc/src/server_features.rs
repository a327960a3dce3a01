//! `ServerFeatures.GetSupportedMethods`: truthful — only what this server implements.

use tonic::{Request, Response, Status};

use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::server_features::{
    SupportedMethod, SupportedMethods, server_features_server::ServerFeatures,
};

pub(crate) struct Features;

fn method(service: &str, method: &str, features: &[&str]) -> SupportedMethod {
    SupportedMethod {
        method_name: method.to_owned(),
        service_name: service.to_owned(),
        features: features.iter().map(|&feature| feature.to_owned()).collect(),
    }
}

/// Names are lowercase, as the reference server lists them.
pub(crate) fn supported_methods() -> SupportedMethods {
    const STREAMS: &str = "event_store.client.streams.streams";
    const PERSISTENT: &str = "event_store.client.persistent_subscriptions.persistentsubscriptions";
    // As the reference: every method of the service lists "stream" and "all" (the Rust
    // client refuses `$all` groups without "all").
    const SOURCES: &[&str] = &["stream", "all"];
    SupportedMethods {
        methods: vec![
            method(PERSISTENT, "create", SOURCES),
            method(PERSISTENT, "update", SOURCES),
            method(PERSISTENT, "delete", SOURCES),
            method(PERSISTENT, "read", SOURCES),
            method(PERSISTENT, "getinfo", SOURCES),
            method(PERSISTENT, "replayparked", SOURCES),
            method(PERSISTENT, "truncateparked", SOURCES),
            method(PERSISTENT, "list", SOURCES),
            method(PERSISTENT, "restartsubsystem", SOURCES),
            method(STREAMS, "read", &[]),
            method(STREAMS, "append", &[]),
            method(STREAMS, "delete", &[]),
            method(STREAMS, "tombstone", &[]),
            method(STREAMS, "batchappend", &["deadline_duration"]),
            method(
                "event_store.client.server_features.serverfeatures",
                "getsupportedmethods",
                &[],
            ),
            method("event_store.client.gossip.gossip", "read", &[]),
        ],
        event_store_server_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

#[tonic::async_trait]
impl ServerFeatures for Features {
    async fn get_supported_methods(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        Ok(Response::new(supported_methods()))
    }
}
