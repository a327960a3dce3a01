//! Request ids: every answer carries `x-request-id` — the request's own, else the trace id
//! of its W3C `traceparent`, else a new one — and the request's log lines carry it too.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::header::HeaderName;
use axum::http::{HeaderMap, HeaderValue};

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace id of a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), if well formed
/// and not all zeros.
fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, length: usize| {
        text.len() == length && text.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    (hex(trace, 32) && hex(span, 16) && trace.bytes().any(|byte| byte != b'0')).then_some(trace)
}

/// The request id of a request with `headers`, as the header value its answer carries.
pub(crate) fn assign(headers: &HeaderMap) -> HeaderValue {
    let given = headers
        .get(&REQUEST_ID)
        .filter(|value| !value.is_empty() && value.len() <= 128 && value.to_str().is_ok())
        .cloned();
    let from_trace = || {
        headers
            .get(&TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(trace_id)
            .and_then(|trace| HeaderValue::from_str(trace).ok())
    };
    given.or_else(from_trace).unwrap_or_else(new_id)
}

/// A new id: 32 lowercase hex digits, a random half made once per process and a counter,
/// so ids differ between requests and between processes without a random draw per request.
fn new_id() -> HeaderValue {
    static PROCESS: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut digits = [0_u8; 32];
    write_hex(&mut digits[..16], *PROCESS);
    write_hex(&mut digits[16..], count);
    HeaderValue::from_bytes(&digits).expect("hex digits are a valid header value")
}

fn write_hex(into: &mut [u8], mut number: u64) {
    for digit in into.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(number & 0xf) as usize];
        number >>= 4;
    }
}

/// The id as text, for the request's span.
pub(crate) fn as_text(id: &HeaderValue) -> &str {
    // Every id is visible ASCII: a given one is checked in `assign`, the others are hex.
    id.to_str().unwrap_or("invalid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_trace_id_of_a_well_formed_traceparent() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("garbage"), None);
    }

    #[test]
    fn new_ids_are_32_hex_digits_and_differ() {
        let first = assign(&HeaderMap::new());
        let second = assign(&HeaderMap::new());
        for id in [&first, &second] {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
            assert_eq!(
                id.to_str().unwrap().to_ascii_lowercase(),
                id.to_str().unwrap()
            );
        }
        assert_ne!(first, second);
        assert_eq!(first.as_bytes()[..16], second.as_bytes()[..16]);
    }

    #[test]
    fn a_given_id_wins_over_the_traceparent_and_a_bad_one_is_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(assign(&headers), "4bf92f3577b34da6a3ce929d0e0e4736");
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-1"));
        assert_eq!(assign(&headers), "abc-1");
        headers.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(129)).unwrap());
        assert_eq!(assign(&headers), "4bf92f3577b34da6a3ce929d0e0e4736");
        headers.insert(REQUEST_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(assign(&headers), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
