//! Any method, path, headers and body through the HTTP API over a real store: every answer
//! is a refusal or a success, never a 5xx or a panic; streaming answers are read for a
//! moment and dropped.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use strata_fuzz::{runtime, shared_store};
use tower::ServiceExt;

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
const PATHS: &[&str] = &[
    "/v1/streams/",
    "/v1/streams/order-1/metadata",
    "/v1/all",
    "/v1/subscriptions/streams/",
    "/v1/subscriptions/all",
    "/v1/subscriptions/categories/",
    "/v1/persistent-subscriptions",
    "/v1/persistent-subscriptions/order-1/",
    "/streams/",
    "/streams/order-1/",
    "/health/",
    "/info",
    "/stats",
    "/metrics",
    "/.well-known/openapi",
    "/",
];
const HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "kurrent-expectedversion",
    "es-expectedversion",
    "kurrent-eventtype",
    "kurrent-eventid",
    "kurrent-harddelete",
    "kurrent-resolvelinktos",
    "last-event-id",
    "traceparent",
    "authorization",
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: u8,
    path: u8,
    /// Appended to the chosen path (stream names, query strings, more segments).
    tail: &'a str,
    headers: Vec<(u8, &'a str)>,
    body: &'a [u8],
}

fn router() -> axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            let _guard = runtime().enter();
            let store = shared_store();
            let persistent = Arc::new(strata_persistent::PersistentSubscriptions::new(Arc::clone(
                &store,
            )));
            strata_http::HttpApi::new(
                store,
                persistent,
                Arc::new(strata_http::Metrics::new()),
                strata_http::HttpOptions::default(),
            )
            .router()
            .fallback(strata_http::fallback)
        })
        .clone()
}

fuzz_target!(|input: Input<'_>| {
    let method = METHODS[input.method as usize % METHODS.len()];
    let uri = format!("{}{}", PATHS[input.path as usize % PATHS.len()], input.tail);
    let mut request = axum::http::Request::builder().method(method).uri(&uri);
    for (name, value) in input.headers.iter().take(6) {
        request = request.header(HEADERS[*name as usize % HEADERS.len()], *value);
    }
    // What no client could send (a malformed URI or header) never reaches the server.
    let Ok(request) = request.body(axum::body::Body::from(input.body.to_vec())) else {
        return;
    };
    runtime().block_on(async {
        let response = router().oneshot(request).await.expect("the router answers");
        let status = response.status();
        let mut body = response.into_body();
        let mut text = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(20), async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(&data[..data.len().min(512 - text.len().min(512))]);
                }
            }
        })
        .await;
        assert!(
            status.as_u16() < 500,
            "{method} {uri} answered {status}: {}",
            String::from_utf8_lossy(&text)
        );
    });
});
