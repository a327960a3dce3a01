//! Strata's KurrentDB-compatible gRPC front end.
//!
//! Speaks the KurrentDB (EventStoreDB) v1 client protocol over any
//! `strata_core::EventStore`, so the official KurrentDB clients work against
//! Strata unchanged. The `.proto` files under `proto/` are Strata's own
//! rendering of that protocol: packages, message names, field numbers and
//! types match the reference exactly, because that is the wire contract.
//!
//! This crate currently holds the generated protocol types only; the
//! services come next.
#![forbid(unsafe_code)]

mod proto;
