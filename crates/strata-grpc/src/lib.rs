//! Strata's KurrentDB-compatible gRPC front end.
//!
//! Speaks the KurrentDB (EventStoreDB) v1 client protocol over any
//! [`strata_core::EventStore`], so the official KurrentDB clients work against Strata
//! unchanged: `Streams` (Read with subscriptions and filters, Append, BatchAppend, Delete,
//! Tombstone), `PersistentSubscriptions` (over `strata-persistent`), `ServerFeatures` and
//! `Gossip`. The `.proto` files under `proto/` are
//! Strata's own rendering of that protocol: packages, message names, field numbers and
//! types match the reference exactly, because that is the wire contract.
//!
//! ```
//! # fn main() -> Result<(), strata_core::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # let _in_runtime = runtime.enter(); // the services spawn their supervisor
//! use std::sync::Arc;
//! let store = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
//! let routes = strata_grpc::routes(store, strata_grpc::Advertised::new("127.0.0.1", 2113));
//! # drop(routes);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod access;
mod append;
mod append_records;
#[cfg(test)]
mod append_records_tests;
mod append_session;
#[cfg(test)]
mod append_session_tests;
mod batch_append;
#[cfg(test)]
mod batch_append_tests;
pub mod client;
mod codec;
mod convert;
mod dcb;
#[cfg(test)]
mod dcb_tests;
mod delete;
mod errors;
mod gossip;
#[cfg(test)]
mod malformed_tests;
mod operations;
#[cfg(test)]
mod operations_tests;
mod persistent;
mod projections;
#[cfg(test)]
mod projections_tests;
mod proposed_message;
mod proto;
mod read;
mod read_answer;
mod read_answers;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod security_tests;
mod server_features;
mod streams;
mod streams_calls;
mod subscribe;
#[cfg(test)]
mod test_server;
mod users;

use std::sync::Arc;

use strata_core::EventStore;
/// The limits of the persistent subscriptions behind the service ([`services_with`]).
pub use strata_persistent::PersistentLimits;
use strata_persistent::PersistentSubscriptions;

use strata_auth::Security;

use crate::access::Access;
use crate::append_session::StreamsV2Service;
use crate::gossip::{SingleNode, WithAuthority};
use crate::operations::OperationsService;
use crate::persistent::PersistentService;
use crate::projections::ProjectionsService;
use crate::proto::event_store::client::gossip::gossip_server::GossipServer;
use crate::proto::event_store::client::operations::operations_server::OperationsServer;
use crate::proto::event_store::client::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer;
use crate::proto::event_store::client::projections::projections_server::ProjectionsServer;
use crate::proto::event_store::client::server_features::server_features_server::ServerFeaturesServer;
use crate::proto::event_store::client::users::users_server::UsersServer;
use crate::proto::kurrentdb::protocol::v2::streams::streams_service_server::StreamsServiceServer;
use crate::proto::strata::dcb::v1::dcb_server::DcbServer;
use crate::proto::streams_service::streams_server::StreamsServer;
use crate::server_features::Features;
use crate::streams::StreamsService;
use crate::subscribe::SubscriptionSlots;
use crate::users::UsersService;

pub use crate::server_features::{KURRENTDB_COMPATIBLE_VERSION, STRATA_VERSION};
pub use crate::streams_calls::{STREAMS_PATH_PREFIX, StreamsCalls};
pub use crate::subscribe::SUBSCRIPTIONS_MAX_DEFAULT;

/// Room for a message beyond its events' bytes (ids, metadata maps, framing).
const MESSAGE_SLACK_BYTES: usize = 1024 * 1024;

/// Where clients reach this node when a request does not say which name it used (gossip
/// announces the `:authority` of the request when there is one).
#[derive(Clone, Debug)]
pub struct Advertised {
    address: String,
    port: u16,
}

impl Advertised {
    pub fn new(address: impl Into<String>, port: u16) -> Self {
        Self {
            address: address.into(),
            port,
        }
    }
}

/// How the gRPC front end presents itself and what it serves at most.
#[derive(Clone, Debug)]
pub struct GrpcOptions {
    pub advertised: Advertised,
    /// Catch-up subscriptions (Read calls without a count) served at once; one more is
    /// refused with `RESOURCE_EXHAUSTED`.
    pub subscriptions_max: usize,
    /// How many persistent-subscription groups may exist, and the bytes each may hold.
    pub persistent_limits: PersistentLimits,
    /// Authentication and ACLs; `None` serves without them (insecure mode: every caller
    /// may do everything, credentials are ignored).
    pub security: Option<Arc<Security>>,
    /// The projection manager behind the `Projections` service; `None` leaves the service
    /// out (clients then get `UNIMPLEMENTED`, and it is not advertised).
    pub projections: Option<Arc<strata_projections::ProjectionManager>>,
    /// Where the live catch-up subscriptions have got to, for a lag gauge (the node's
    /// metrics hold it).
    pub subscription_progress: strata_core::SubscriptionProgress,
    /// The node's place in its cluster; `None` is a single node, always the leader.
    /// Persistent-subscription calls on a follower answer `not-leader`, and gossip lists
    /// the members.
    pub leadership: Option<Arc<strata_core::Leadership>>,
    /// The node's operations behind the `Operations` service (scavenges, shutdown, index
    /// merges); `None` leaves the service out (clients then get `UNIMPLEMENTED`, and it
    /// is not advertised).
    pub operations: Option<strata_operations::NodeOperations>,
}

impl GrpcOptions {
    pub fn new(advertised: Advertised) -> Self {
        Self {
            advertised,
            subscriptions_max: SUBSCRIPTIONS_MAX_DEFAULT,
            persistent_limits: PersistentLimits::default(),
            security: None,
            projections: None,
            subscription_progress: strata_core::SubscriptionProgress::default(),
            leadership: None,
            operations: None,
        }
    }
}

/// The gRPC services, and the persistent-subscription manager behind them.
pub struct Services {
    pub routes: tonic::service::Routes,
    /// The `Streams` service of `routes`, to be called without routing.
    pub streams: StreamsCalls,
    /// Shut it down after serving and before closing the store, so the groups write their
    /// last checkpoints.
    pub persistent_subscriptions: Arc<PersistentSubscriptions>,
}

/// The gRPC services over `store`, ready to be served (alone or beside HTTP routes).
///
/// # Panics
/// Outside a Tokio runtime: the persistent-subscription manager spawns its supervisor.
pub fn routes<S: EventStore>(store: Arc<S>, advertised: Advertised) -> tonic::service::Routes {
    services(store, advertised).routes
}

/// Like [`routes`], with the persistent-subscription manager handed back for a clean stop.
pub fn services<S: EventStore>(store: Arc<S>, advertised: Advertised) -> Services {
    services_with(store, GrpcOptions::new(advertised))
}

/// Like [`services`], with explicit options.
///
/// # Panics
/// Outside a Tokio runtime, as [`routes`].
pub fn services_with<S: EventStore>(store: Arc<S>, options: GrpcOptions) -> Services {
    let store: Arc<dyn EventStore> = store;
    let security = options
        .security
        .unwrap_or_else(|| Security::disabled(Arc::clone(&store)));
    let access = Access::new(security);
    let message_bytes_max = store.limits().append_bytes_max + MESSAGE_SLACK_BYTES;
    let manager = Arc::new(match &options.leadership {
        Some(leadership) if !leadership.is_single_node() => {
            PersistentSubscriptions::with_leadership(
                Arc::clone(&store),
                options.persistent_limits,
                Arc::clone(leadership),
            )
        }
        _ => PersistentSubscriptions::with_limits(Arc::clone(&store), options.persistent_limits),
    });
    // Groups start and stop with the leadership (a no-op without one), and a group whose
    // source failed (a store error) starts again from its checkpoint.
    drop(manager.follow_leadership());
    drop(manager.supervise());
    let persistent_subscriptions = Arc::clone(&manager);
    let persistent = PersistentSubscriptionsServer::new(PersistentService {
        manager,
        access: access.clone(),
    })
    .max_decoding_message_size(message_bytes_max)
    .max_encoding_message_size(message_bytes_max);
    let streams = StreamsServer::new(StreamsService {
        access: access.clone(),
        subscriptions: SubscriptionSlots::new(
            options.subscriptions_max,
            options.subscription_progress,
        ),
    })
    .max_decoding_message_size(message_bytes_max)
    .max_encoding_message_size(message_bytes_max);
    let streams_calls = StreamsCalls(streams.clone());
    let features = Features {
        projections: options.projections.is_some(),
        operations: options.operations.is_some(),
    };
    let streams_v2 = StreamsServiceServer::new(StreamsV2Service {
        access: access.clone(),
    })
    .max_decoding_message_size(message_bytes_max)
    .max_encoding_message_size(message_bytes_max);
    let dcb = DcbServer::new(dcb::DcbService {
        access: access.clone(),
    })
    .max_decoding_message_size(message_bytes_max)
    .max_encoding_message_size(message_bytes_max);
    let mut routes = tonic::service::Routes::new(streams)
        .add_service(streams_v2)
        .add_service(dcb)
        .add_service(persistent)
        .add_service(ServerFeaturesServer::new(features))
        .add_service(UsersServer::new(UsersService {
            access: access.clone(),
        }))
        .add_service(WithAuthority(GossipServer::new(SingleNode::new(
            options.advertised.address,
            options.advertised.port,
            options.leadership.clone(),
        ))));
    if let Some(operations) = options.operations {
        routes = routes.add_service(OperationsServer::new(OperationsService {
            operations,
            persistent: Arc::clone(&persistent_subscriptions),
            leadership: options.leadership.clone(),
            access: access.clone(),
        }));
    }
    if let Some(manager) = options.projections {
        routes = routes.add_service(ProjectionsServer::new(ProjectionsService {
            manager,
            access,
        }));
    }
    Services {
        routes,
        streams: streams_calls,
        persistent_subscriptions,
    }
}
