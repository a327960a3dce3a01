//! The service every request of the server goes through, around the whole router: it gives
//! the request its id (request_id.rs), counts and times it (metrics.rs), and runs it in the
//! request's span. It also dates the answers of everything but gRPC: `strata serve` turns
//! hyper's automatic `Date` off on HTTP/2, where a new value each second cost every gRPC
//! answer an HPACK table insertion and a longer search of that table (docs/BENCHMARKS.md);
//! gRPC needs no `Date`, HTTP answers keep theirs.
//!
//! One service around the router, with one boxed future per call. Two
//! `axum::middleware::from_fn` layers did the same before, but a layer on a `Router` wraps
//! every route, and per call each layer cloned the boxed routes beneath it, boxed a `Next`
//! and boxed its future: about a dozen allocations per gRPC call.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::{BoxError, Router};
use tower_service::Service;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::request_id::{self, REQUEST_ID};

/// `service` (a router, or one in front of it), with request ids, metrics and a span per
/// request; what `strata serve` serves. `service` must always be ready, as a `Router` is:
/// it is called without asking.
pub fn track<S>(service: S, metrics: Arc<Metrics>) -> Tracked<S> {
    Tracked { service, metrics }
}

/// See [`track`].
#[derive(Clone)]
pub struct Tracked<S = Router> {
    service: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<axum::http::Request<B>> for Tracked<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let request: Request = request.map(Body::new);
        let dated = !is_grpc(&request);
        let mut id = request_id::assign(request.headers());
        // A new value per answer: indexed, HPACK would insert each into the connection's
        // table and evict an older entry. Sensitive values are sent as literals, never
        // indexed; the header is the same.
        id.set_sensitive(true);
        // One field: the log formatter renders a span's fields when the span is made, on
        // every request, whether or not a line is ever logged in it; the line itself says
        // the rest.
        let span = tracing::info_span!("request", request_id = request_id::as_text(&id));
        let arrived = self.metrics.call_arrived(&request);
        let routed = span.in_scope(|| self.service.call(request));
        let metrics = Arc::clone(&self.metrics);
        Box::pin(
            async move {
                let mut response = match routed.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                metrics.call_answered(arrived, &response);
                let headers = response.headers_mut();
                headers.insert(REQUEST_ID, id);
                if dated && !headers.contains_key(header::DATE) {
                    headers.insert(header::DATE, now_as_http_date());
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// A gRPC call (`content-type: application/grpc`, `+proto` and the like).
fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

fn now_as_http_date() -> HeaderValue {
    let text = httpdate::fmt_http_date(std::time::SystemTime::now());
    HeaderValue::from_str(&text).unwrap_or_else(|_| unreachable!("an HTTP date is ASCII"))
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    async fn answer(tracked: &mut Tracked, request: axum::http::Request<Body>) -> Response {
        tracked
            .call(request)
            .await
            .unwrap_or_else(|never| match never {})
    }

    /// The answer's id is sent as a never-indexed literal, so HPACK does not churn the
    /// connection's table with a new value per answer.
    #[tokio::test]
    async fn the_answers_request_id_is_marked_sensitive() {
        let router = Router::new().route("/", get(|| async { "hello" }));
        let mut tracked = track(router, Arc::new(Metrics::new()));
        let request = axum::http::Request::builder()
            .uri("/")
            .header(REQUEST_ID, "given-id")
            .body(Body::empty())
            .unwrap();
        let response = answer(&mut tracked, request).await;
        let id = response.headers().get(REQUEST_ID).unwrap();
        assert_eq!(id, "given-id");
        assert!(id.is_sensitive());
    }

    /// HTTP answers are dated by `Tracked` (hyper's own `Date` is off on HTTP/2); gRPC
    /// answers are not, and a `Date` the handler set is kept.
    #[tokio::test]
    async fn answers_other_than_grpc_carry_a_date() {
        let router = Router::new().route("/", get(|| async { "hello" })).route(
            "/dated",
            get(|| async { ([(header::DATE, "Sun, 06 Nov 1994 08:49:37 GMT")], "old") }),
        );
        let mut tracked = track(router, Arc::new(Metrics::new()));
        let mut date_of = async |path: &str, content_type: &str| {
            let request = axum::http::Request::builder()
                .uri(path)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::empty())
                .unwrap();
            let response = answer(&mut tracked, request).await;
            response.headers().get(header::DATE).cloned()
        };
        let date = date_of("/", "application/json").await.expect("dated");
        let when = httpdate::parse_http_date(date.to_str().unwrap()).expect("an HTTP date");
        let age = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(age.as_secs() < 60, "{date:?} is now");
        assert_eq!(date_of("/", "application/grpc").await, None);
        assert_eq!(date_of("/", "application/grpc+proto").await, None);
        assert_eq!(
            date_of("/dated", "text/plain").await.unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }

    /// A line logged while the request is handled carries the request's id.
    #[tokio::test]
    async fn log_lines_of_a_request_carry_its_id() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = {
            let lines = Arc::clone(&lines);
            move || LineWriter(Arc::clone(&lines))
        };
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let handler = || async {
            tracing::warn!("handling it");
            "hello"
        };
        let mut tracked = track(
            Router::new().route("/", get(handler)),
            Arc::new(Metrics::new()),
        );
        let request = axum::http::Request::builder()
            .uri("/")
            .body(Body::empty())
            .unwrap();
        let response = answer(&mut tracked, request).await;
        let id = response
            .headers()
            .get(REQUEST_ID)
            .unwrap()
            .to_str()
            .unwrap();
        let lines = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        let line = lines
            .lines()
            .find(|line| line.contains("handling it"))
            .unwrap();
        assert!(
            line.contains(&format!("request{{request_id=\"{id}\"}}")),
            "{line}"
        );
    }

    struct LineWriter(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LineWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
