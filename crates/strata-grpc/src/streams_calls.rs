//! The `Streams` service on its own, for a server that calls it without routing.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{Body, BoxFuture, Service, StdError, http};

use crate::proto::streams_service::streams_server::StreamsServer;
use crate::streams::StreamsService;

/// How the path of every call of the `Streams` service begins (then the method's name).
pub const STREAMS_PATH_PREFIX: &str = "/event_store.client.streams.Streams/";

/// The `Streams` service of [`crate::Services::routes`], to be called directly: `strata
/// serve` sends every call under [`STREAMS_PATH_PREFIX`] here without routing it.
#[derive(Clone)]
pub struct StreamsCalls(pub(crate) StreamsServer<StreamsService>);

impl<B> Service<http::Request<B>> for StreamsCalls
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<B>>::poll_ready(&mut self.0, context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.0.call(request)
    }
}
