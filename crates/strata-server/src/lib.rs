//! Strata's server: binds the listeners and serves every front end on one port — the
//! KurrentDB gRPC protocol (HTTP/2) and the HTTP API of `strata-http` (HTTP/1.1 and
//! HTTP/2: JSON, NDJSON, server-sent events, `/health/*`, `/info`, `/metrics`), over TLS
//! (ALPN) or, when insecure, in the clear (HTTP/2 with prior knowledge) — up to a bound on
//! open connections — until told to stop, then lets in-flight calls finish for a grace
//! period.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = strata_engine::Store::open("./strata-data", strata_engine::Config::default())?;
//! let server = strata_server::Server::bind(&strata_server::ServeConfig::default()).await?;
//! println!("ready on {:?}", server.local_addrs());
//! server.run(store, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod connections;
mod dispatch;
mod leader_only;
mod listen;
mod quick_ack;
mod run_projections;
mod tls;

pub use connections::{CONNECTIONS_MAX_DEFAULT, HEADER_TIMEOUT_DEFAULT};
pub use leader_only::{LeaderAction, follow_leadership};
pub use listen::{ServeConfig, ServeError, Server};
pub use run_projections::{RunProjections, RunProjectionsError};
/// What `strata cluster status` reads for the lag of each projection.
pub use strata_projections::stored_positions as stored_projection_positions;
pub use tls::{TlsError, TlsFiles};
