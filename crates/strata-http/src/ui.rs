//! The web UI (docs/UI.md): hand-written HTML, CSS and JavaScript modules embedded in the
//! binary with `include_str!`, served at `/` and `/ui/<file>` on the HTTP port. There is no
//! front-end build step: the files in `crates/strata-http/ui/` are what the browser runs.
//!
//! Every answer carries a Content-Security-Policy that lets the page load only its own
//! files and talk only to its own origin (no CDN, no inline script, no telemetry), an
//! `ETag` (a hash of the file) with `Cache-Control: no-cache`, so a browser revalidates and
//! a new binary's files are never served stale, and `X-Content-Type-Options: nosniff`.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the page may load and where it may connect: only its own origin.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/api.js"),
    ),
    (
        "view.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/view.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/chart.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/pages.js"),
    ),
    (
        "editor.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/editor.js"),
    ),
    (
        "connectors.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/connectors.js"),
    ),
    (
        "scavenges.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/scavenges.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../ui/favicon.svg"),
    ),
];

/// FNV-1a of a file, as its entity tag (stable across runs of one binary).
fn etag(content: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in content.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some((_, content_type, content)) = ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return crate::problem::ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("the UI has no file {name}"),
        )
        .into_response();
    };
    let tag = etag(content);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|part| part.trim() == tag));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        *content,
    )
        .into_response()
}

/// The UI's page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// One of the UI's files.
pub(crate) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for (name, _, content) in ASSETS {
            for line in content.lines() {
                let Some(rest) = line.split(" from './").nth(1) else {
                    continue;
                };
                let imported = rest.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(file, _, _)| *file == imported),
                    "{name} imports {imported}, which is not embedded"
                );
            }
        }
    }

    #[test]
    fn etags_differ_for_different_files() {
        assert_ne!(etag("a"), etag("b"));
        assert_eq!(etag("a"), etag("a"));
    }
}
