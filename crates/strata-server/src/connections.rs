//! A bound on open connections. A connection over the bound is not dropped silently: each
//! request on it is answered — gRPC `UNAVAILABLE` (HTTP/2) or `503` (HTTP/1.1), naming the
//! limit — and the connection is then closed (HTTP/2 `GOAWAY`, HTTP/1.1
//! `Connection: close`). Clients report that message instead of a reset connection, and
//! treat `UNAVAILABLE` as worth retrying later.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Connections one server keeps open at once, unless configured otherwise.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1_000;

/// Connections over the limit being answered at once; beyond that they are closed
/// unanswered, so refusing costs little however many arrive.
const REFUSALS_AT_ONCE_MAX: usize = 64;

/// How long a connection over the limit may take to send its first request and receive
/// the refusal, and then to close.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// gRPC status `UNAVAILABLE`.
const GRPC_UNAVAILABLE: &str = "14";

/// What becomes of a new connection.
pub(crate) enum Admission {
    /// Served; the permit holds its place until it closes.
    Serve(OwnedSemaphorePermit),
    /// Over the limit: answered with the refusal, then closed.
    Refuse(OwnedSemaphorePermit),
    /// Over the limit while many refusals are under way: closed at once.
    Close,
}

/// The connection bound of one server, shared by its listeners.
#[derive(Clone)]
pub(crate) struct ConnectionLimit {
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    message: Arc<str>,
}

impl ConnectionLimit {
    pub(crate) fn new(connections_max: usize) -> Self {
        let connections_max = connections_max.min(Semaphore::MAX_PERMITS);
        Self {
            open: Arc::new(Semaphore::new(connections_max)),
            refusing: Arc::new(Semaphore::new(REFUSALS_AT_ONCE_MAX)),
            message: Arc::from(format!(
                "the server already has its limit of {connections_max} open connections \
                 (strata serve --max-connections); try again later"
            )),
        }
    }

    pub(crate) fn admit(&self) -> Admission {
        if let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() {
            return Admission::Serve(permit);
        }
        match Arc::clone(&self.refusing).try_acquire_owned() {
            Ok(permit) => Admission::Refuse(permit),
            Err(_) => Admission::Close,
        }
    }

    /// Answers every request of `io` with the refusal, then closes it.
    pub(crate) async fn refuse<I>(&self, io: I, _refusing: OwnedSemaphorePermit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let answered = Arc::new(Notify::new());
        let refusal = {
            let (answered, message) = (Arc::clone(&answered), Arc::clone(&self.message));
            Router::new().fallback(move |request: Request| {
                let response = refusal(&request, &message);
                answered.notify_one();
                async move { response }
            })
        };
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection =
            builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(refusal));
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = answered.notified() => {}
            () = tokio::time::sleep(REFUSAL_GRACE) => {}
        }
        // GOAWAY (HTTP/2) or no keep-alive (HTTP/1.1): the answer under way still goes out.
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(REFUSAL_GRACE, connection).await;
    }
}

/// The refusal of one request: a trailers-only gRPC `UNAVAILABLE` for gRPC, `503` else.
fn refusal(request: &Request, message: &str) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/grpc"));
    if grpc {
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(GRPC_UNAVAILABLE));
        if let Ok(value) = HeaderValue::from_str(message) {
            headers.insert("grpc-message", value);
        }
        return response;
    }
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// How long a client may take to send a request head, unless configured otherwise.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The service of one connection, noting when its first request arrives (hyper calls the
/// service once a request head is complete) and handing each request the connection's
/// subscription places and, when known, its source address.
#[derive(Clone)]
pub(crate) struct FirstRequestWatch {
    inner: Inner,
    arrived: Arc<AtomicBool>,
    /// The connection's subscription places, put into each of its requests.
    subscriptions: strata_core::ConnectionSubscriptions,
    /// The peer's address, put into each request (TLS connections; see `Accepting::serve`).
    source: Option<strata_auth::SourceAddress>,
}

/// Whether the connection's first request has arrived.
pub(crate) struct FirstRequest(Arc<AtomicBool>);

impl FirstRequest {
    pub(crate) fn arrived(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl FirstRequestWatch {
    pub(crate) fn new(
        service: strata_http::Tracked<crate::dispatch::Dispatch>,
        subscriptions: strata_core::ConnectionSubscriptions,
        source: Option<strata_auth::SourceAddress>,
    ) -> (Self, FirstRequest) {
        let arrived = Arc::new(AtomicBool::new(false));
        let watch = Self {
            inner: TowerToHyperService::new(service),
            arrived: Arc::clone(&arrived),
            subscriptions,
            source,
        };
        (watch, FirstRequest(arrived))
    }
}

type Inner = TowerToHyperService<strata_http::Tracked<crate::dispatch::Dispatch>>;

impl<B> hyper::service::Service<hyper::Request<B>> for FirstRequestWatch
where
    Inner: hyper::service::Service<hyper::Request<B>>,
{
    type Response = <Inner as hyper::service::Service<hyper::Request<B>>>::Response;
    type Error = <Inner as hyper::service::Service<hyper::Request<B>>>::Error;
    type Future = <Inner as hyper::service::Service<hyper::Request<B>>>::Future;

    fn call(&self, mut request: hyper::Request<B>) -> Self::Future {
        self.arrived.store(true, Ordering::Relaxed);
        let extensions = request.extensions_mut();
        extensions.insert(self.subscriptions.clone());
        if let Some(source) = self.source {
            extensions.insert(source);
        }
        self.inner.call(request)
    }
}
