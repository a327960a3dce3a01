//! Request ids: every answer carries `x-request-id` — the request's own, else the trace id
//! of its W3C `traceparent`, else a new one — and the request's log lines carry it too.

use axum::http::{HeaderMap, HeaderValue};

pub(crate) const REQUEST_ID: &str = "x-request-id";

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

/// Gives `headers` (a request's) their request id; returns it, and the header value the
/// answer carries.
pub(crate) fn assign(headers: &mut HeaderMap) -> (String, HeaderValue) {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_owned);
    let from_trace = || {
        headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(trace_id)
            .map(str::to_owned)
    };
    let id = given
        .or_else(from_trace)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert(REQUEST_ID, value.clone());
    (id, value)
}

#[cfg(test)]
mod tests {
    use super::trace_id;

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
}
