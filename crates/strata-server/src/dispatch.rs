//! Calls of the `Streams` service (reads, appends, deletes, subscriptions: what clients call
//! most) go straight to it; every other request goes through the router.
//!
//! The router sends those calls to the same service (tonic mounts each service at
//! `/<service>/{*rest}`), but on every call it first matches the path among all routes,
//! stores the path parameter in the request, and clones and boxes the route. The answer is
//! handed on as the router hands it on; requests other than `POST` (never gRPC) still go
//! through the router.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures::future::{Either, FutureExt, Map};
use tonic::codegen::{BoxFuture, Service};

/// See the module.
#[derive(Clone)]
pub(crate) struct Dispatch {
    streams: strata_grpc::StreamsCalls,
    router: Router,
}

impl Dispatch {
    pub(crate) fn new(streams: strata_grpc::StreamsCalls, router: Router) -> Self {
        Self { streams, router }
    }
}

type StreamsAnswer = Result<axum::http::Response<tonic::body::Body>, Infallible>;

/// What a call of the `Streams` service becomes.
type Answered = Map<
    BoxFuture<axum::http::Response<tonic::body::Body>, Infallible>,
    fn(StreamsAnswer) -> Result<Response, Infallible>,
>;

impl Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Answered, RouteFuture<Infallible>>;

    /// Always ready, as the router and the `Streams` service are.
    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let path = request.uri().path();
        let streams_call = request.method() == Method::POST
            && path.len() > strata_grpc::STREAMS_PATH_PREFIX.len()
            && path.starts_with(strata_grpc::STREAMS_PATH_PREFIX);
        if !streams_call {
            return Either::Right(self.router.call(request));
        }
        let answered: fn(StreamsAnswer) -> Result<Response, Infallible> = finish;
        Either::Left(self.streams.call(request).map(answered))
    }
}

/// The answer as the router hands it on (a route inside a router is not the top level,
/// so it adds no `content-length` and strips no body).
fn finish(answer: StreamsAnswer) -> Result<Response, Infallible> {
    let Ok(answer) = answer;
    Ok(answer.map(Body::new))
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, header};

    use super::*;

    /// The head of an answer: status and headers, the parts a gRPC client reads first.
    async fn head(
        future: impl std::future::Future<Output = Result<Response, Infallible>>,
    ) -> (StatusCode, Vec<(String, String)>) {
        let Ok(answer) = future.await;
        let mut headers: Vec<(String, String)> = answer
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
            .collect();
        headers.sort();
        (answer.status(), headers)
    }

    fn request(method: Method, path: &str) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(Body::empty())
            .unwrap()
    }

    /// Calls taken past the router are answered as the router answers them: an unknown
    /// method of the service (trailers-only), a request that is not a gRPC call, and the
    /// bare service path.
    #[tokio::test]
    async fn answers_as_the_router_does() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())
                .unwrap();
        let services = strata_grpc::services(store, strata_grpc::Advertised::new("127.0.0.1", 1));
        let router = services.routes.into_axum_router();
        let mut dispatch = Dispatch::new(services.streams, router.clone());
        let cases = [
            (
                Method::POST,
                "/event_store.client.streams.Streams/NoSuchMethod",
            ),
            (Method::GET, "/event_store.client.streams.Streams/Append"),
            (Method::POST, "/event_store.client.streams.Streams/"),
        ];
        for (method, path) in cases {
            let through_router = head(router.clone().call(request(method.clone(), path))).await;
            let dispatched = head(dispatch.call(request(method.clone(), path))).await;
            assert_eq!(dispatched, through_router, "{method} {path}");
        }
        let (_, unknown) = head(dispatch.call(request(
            Method::POST,
            "/event_store.client.streams.Streams/NoSuchMethod",
        )))
        .await;
        assert!(
            unknown.contains(&("grpc-status".to_owned(), "12".to_owned())),
            "{unknown:?}"
        );
    }
}
