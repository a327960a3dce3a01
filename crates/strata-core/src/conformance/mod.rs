//! The conformance kit: behaviour every [`crate::EventStore`] backend must show.
