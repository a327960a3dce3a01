//! `ServerFeatures.GetSupportedMethods`: truthful — only what this server implements, and
//! the KurrentDB version whose client-facing features it implements (clients gate features
//! on that version, not on Strata's own).

use tonic::{Request, Response, Status};

use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::server_features::{
    SupportedMethod, SupportedMethods, server_features_server::ServerFeatures,
};

/// The KurrentDB release whose client protocol Strata implements, reported to clients as
/// the server version. Clients turn features off below 21.10.1 (the Node client silently
/// replaces PinnedByCorrelation with RoundRobin, the Java client refuses it), and 25.0
/// adds error details (`maximum-append-event-size-exceeded`) Strata does not send; every
/// newer capability is announced by method and feature, not by version.
pub const KURRENTDB_COMPATIBLE_VERSION: &str = "24.10.0";

/// Strata's own version.
pub const STRATA_VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) struct Features {
    /// The `Projections` service is served.
    pub(crate) projections: bool,
    /// The `Operations` service is served.
    pub(crate) operations: bool,
}

fn method(service: &str, method: &str, features: &[&str]) -> SupportedMethod {
    SupportedMethod {
        method_name: method.to_owned(),
        service_name: service.to_owned(),
        features: features.iter().map(|&feature| feature.to_owned()).collect(),
    }
}

/// Names are lowercase, as the reference server lists them.
pub(crate) fn supported_methods(projections: bool, operations: bool) -> SupportedMethods {
    const STREAMS: &str = "event_store.client.streams.streams";
    const PERSISTENT: &str = "event_store.client.persistent_subscriptions.persistentsubscriptions";
    // As the reference: every method of the service lists "stream" and "all" (the Rust
    // client refuses `$all` groups without "all").
    const SOURCES: &[&str] = &["stream", "all"];
    const USERS: &str = "event_store.client.users.users";
    let mut methods = vec![
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
            "kurrentdb.protocol.v2.streams.streamsservice",
            "appendsession",
            &[],
        ),
        method(
            "kurrentdb.protocol.v2.streams.streamsservice",
            "appendrecords",
            &[],
        ),
        method(
            "event_store.client.server_features.serverfeatures",
            "getsupportedmethods",
            &[],
        ),
        method("event_store.client.gossip.gossip", "read", &[]),
        method(USERS, "create", &[]),
        method(USERS, "update", &[]),
        method(USERS, "delete", &[]),
        method(USERS, "disable", &[]),
        method(USERS, "enable", &[]),
        method(USERS, "details", &[]),
        method(USERS, "changepassword", &[]),
        method(USERS, "resetpassword", &[]),
    ];
    if projections {
        const PROJECTIONS: &str = "event_store.client.projections.projections";
        for name in [
            "create",
            "update",
            "delete",
            "statistics",
            "disable",
            "enable",
            "reset",
            "state",
            "result",
            "restartsubsystem",
        ] {
            methods.push(method(PROJECTIONS, name, &[]));
        }
    }
    if operations {
        const OPERATIONS: &str = "event_store.client.operations.operations";
        for name in [
            "startscavenge",
            "stopscavenge",
            "shutdown",
            "mergeindexes",
            "resignnode",
            "setnodepriority",
            "restartpersistentsubscriptions",
        ] {
            methods.push(method(OPERATIONS, name, &[]));
        }
    }
    SupportedMethods {
        methods,
        event_store_server_version: KURRENTDB_COMPATIBLE_VERSION.to_owned(),
    }
}

#[tonic::async_trait]
impl ServerFeatures for Features {
    async fn get_supported_methods(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        Ok(Response::new(supported_methods(
            self.projections,
            self.operations,
        )))
    }
}
