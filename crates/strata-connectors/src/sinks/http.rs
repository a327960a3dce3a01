//! HTTP webhooks (`reqwest`, already the project's HTTP client): POST one event (or an
//! array of several) as Strata JSON or CloudEvents, with custom headers and an HMAC-SHA256
//! signature of the body. 2xx delivers; 5xx, 408, 429, timeouts and connection errors are
//! retried; any other answer parks the events in the dead-letter stream.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;
use strata_core::RecordedEvent;

use crate::definition::{HttpFormat, HttpSettings};
use crate::sink::{Delivery, Sink, event_cloud_event, event_headers, event_json};

/// The signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Strata-Signature";

pub(crate) struct HttpSink {
    settings: HttpSettings,
    client: reqwest::Client,
}

impl HttpSink {
    /// Builds the client and checks the endpoint answers HTTP at all (any status will do).
    pub(crate) async fn connect(settings: &HttpSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        client.head(&settings.url).send().await.map_err(|error| {
            format!(
                "cannot reach {}: {}",
                host_of(&settings.url),
                error_chain(&error)
            )
        })?;
        Ok(Self {
            settings: settings.clone(),
            client,
        })
    }

    async fn post(&self, events: &[RecordedEvent]) -> Delivery {
        let (body, content_type) = self.body(events);
        let mut request = self
            .client
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let [event] = events {
            for (name, value) in event_headers(event) {
                request = request.header(name, value);
            }
        }
        for (name, value) in &self.settings.headers {
            request = request.header(name.as_str(), value.expose());
        }
        if let Some(key) = &self.settings.signing_key {
            request = request.header(SIGNATURE_HEADER, signature(key.expose().as_bytes(), &body));
        }
        match request.body(body).send().await {
            Ok(response) => answer(response.status()),
            Err(error) => Delivery::Failed {
                error: format!(
                    "POST to {} failed: {}",
                    host_of(&self.settings.url),
                    error_chain(&error)
                ),
            },
        }
    }

    fn body(&self, events: &[RecordedEvent]) -> (Vec<u8>, &'static str) {
        let encode = match self.settings.format {
            HttpFormat::Json => event_json,
            HttpFormat::CloudEvents => event_cloud_event,
        };
        let value = match events {
            [event] => encode(event),
            _ => serde_json::Value::Array(events.iter().map(encode).collect()),
        };
        let content_type = match (self.settings.format, events.len()) {
            (HttpFormat::Json, _) => "application/json",
            (HttpFormat::CloudEvents, 1) => "application/cloudevents+json",
            (HttpFormat::CloudEvents, _) => "application/cloudevents-batch+json",
        };
        (serde_json::to_vec(&value).unwrap_or_default(), content_type)
    }
}

fn answer(status: StatusCode) -> Delivery {
    if status.is_success() {
        Delivery::Acknowledged { duplicate: false }
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Delivery::Failed {
            error: format!("the endpoint answered {status}"),
        }
    } else {
        Delivery::Rejected {
            reason: format!("the endpoint answered {status}"),
        }
    }
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::from("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The URL without its path, query or user info: enough to say where, never a secret.
fn host_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}")
}

/// reqwest's error with its causes ("error sending request: connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::from(if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Sink for HttpSink {
    async fn publish(&mut self, events: &[RecordedEvent]) -> Vec<Delivery> {
        // One request at a time keeps the endpoint's view in log order.
        let mut deliveries = Vec::with_capacity(events.len());
        for chunk in events.chunks(self.settings.events_per_request.max(1)) {
            let delivery = self.post(chunk).await;
            let failed = matches!(delivery, Delivery::Failed { .. });
            deliveries.extend(chunk.iter().map(|_| delivery.clone()));
            if failed {
                let rest = events.len() - deliveries.len();
                deliveries.extend((0..rest).map(|_| delivery.clone()));
                break;
            }
        }
        deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn statuses_split_into_retry_and_park() {
        assert_eq!(
            answer(StatusCode::NO_CONTENT),
            Delivery::Acknowledged { duplicate: false }
        );
        assert!(matches!(
            answer(StatusCode::BAD_GATEWAY),
            Delivery::Failed { .. }
        ));
        assert!(matches!(
            answer(StatusCode::TOO_MANY_REQUESTS),
            Delivery::Failed { .. }
        ));
        assert!(matches!(
            answer(StatusCode::UNPROCESSABLE_ENTITY),
            Delivery::Rejected { .. }
        ));
    }
}
