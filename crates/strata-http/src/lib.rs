//! Strata's HTTP front end over any [`strata_core::EventStore`]: a JSON API (pages as JSON,
//! NDJSON when asked, subscriptions as NDJSON or server-sent events), persistent
//! subscriptions consumed over HTTP, KurrentDB's HTTP append and read endpoints, the
//! operations endpoints (`/health/*`, `/info`, `/stats`, `/metrics`) and the OpenAPI 3.1
//! document at `/.well-known/openapi`. Every error is RFC 9457 `application/problem+json`
//! with a stable `type` per kind of error.
//!
//! The router is meant to be mounted beside the gRPC services on one port
//! (`strata-server` does); [`MeteredStore`] wraps the store so both front ends count into
//! the same [`Metrics`].
//!
//! Dependencies: axum (routing), prometheus-client (the metrics text format), utoipa (the
//! OpenAPI document from the handlers' annotations), tokio-stream (interval streams).
//!
//! ```
//! use std::sync::Arc;
//! use strata_http::{HttpApi, HttpOptions, MeteredStore, Metrics};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let metrics = Arc::new(Metrics::new());
//! let engine = strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())?;
//! let store: Arc<dyn strata_core::EventStore> =
//!     Arc::new(MeteredStore::new(engine, Arc::clone(&metrics)));
//! let persistent = Arc::new(strata_persistent::PersistentSubscriptions::from_dyn(Arc::clone(&store)));
//! let _router: axum::Router = HttpApi::new(store, persistent, metrics, HttpOptions::default()).router();
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod access;
mod append;
mod compat;
mod connector_metrics;
mod connectors;
mod consume;
mod dcb;
mod delete;
mod events;
mod extract;
mod kept_series;
mod metadata;
mod metered;
mod metrics;
mod openapi;
mod ops;
mod persistent;
mod problem;
mod projections;
mod read;
mod request_id;
mod scavenges;
mod state;
mod subscribe;
mod tracked;
mod ui;
mod users;

pub use connectors::{connectors_router, spawn_connector_metrics};
pub use metered::MeteredStore;
pub use metrics::{Metrics, ProjectionSample};
pub use openapi::openapi_document;
pub use problem::fallback;
pub use scavenges::scavenges_router;
pub use state::{HTTP_BODY_BYTES_MAX_DEFAULT, HTTP_BODY_TIMEOUT_DEFAULT, HttpApi, HttpOptions};
pub use tracked::{Tracked, track};
