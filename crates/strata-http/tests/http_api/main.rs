//! The HTTP API end to end: a real server on a free loopback port, driven with reqwest.

mod auth;
mod compat;
mod dcb;
mod ops;
mod persistent;
mod scavenges;
mod streams;
mod subscriptions;
mod support;
mod ui_admin;
