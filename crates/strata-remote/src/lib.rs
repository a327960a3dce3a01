//! [`RemoteStore`]: Strata's [`EventStore`] over a running `strata serve`, spoken through the
//! official KurrentDB client (the `kurrentdb` crate). The toolkit, the conformance kit and the
//! `strata` command work on it exactly as on the embedded engine.
//!
//! ```no_run
//! use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};
//! use strata_remote::RemoteStore;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RemoteStore::connect("kdb://127.0.0.1:2113?tls=false").await?;
//! let stream = StreamName::new("order-42")?;
//! let event = ProposedEvent::json("OrderPlaced", r#"{"total":12}"#);
//! store.append(&stream, ExpectedRevision::NoStream, vec![event]).await?;
//! let events = store.read_stream(&stream, ReadStreamOptions::forwards()).await?;
//! assert_eq!(events.into_events().len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Credentials in the connection string (`kurrentdb://USER:PASSWORD@HOST:PORT`) are sent
//! with every call; a call the server refuses is [`strata_core::Error::AccessDenied`].
//!
//! How the contract maps onto the wire (each choice is explained where it is made):
//! - `stream_state` is the protocol's own concurrency check: an append of no events with an
//!   expected revision no stream can have, answered with the stream's actual state.
//! - A `$all` read that reaches the end of the log continues from "just after the last event
//!   read" (its position + 1), which is no record's position; reading from such a position
//!   asks the server from the event before it and drops that event. The durable end the
//!   adapter watches is "just after the last event seen" in the same sense, advanced by a
//!   live `$all` subscription and by the adapter's own writes.
//! - Positions are the server's commit positions (Strata answers commit == prepare).
//!
//! The adapter targets `strata serve`. A KurrentDB server answers the same calls, but it
//! checks `$all` positions differently, so reads that resume "just after" an event are only
//! specified for Strata.
#![forbid(unsafe_code)]

mod convert;
mod errors;
mod log_end;
mod read_all;

use std::sync::Arc;

use async_trait::async_trait;
use kurrentdb::{Client, ClientSettings, DeleteStreamOptions, TombstoneStreamOptions};
use strata_core::{
    AllSlice, AppendResult, DeleteResult, EventStore, ExpectedRevision, Limits, Position,
    ProposedEvent, ReadAllOptions, ReadStreamOptions, Result, StreamName, StreamSlice, StreamState,
};
use tokio::sync::watch;

pub use errors::ConnectError;

use crate::log_end::LogEndWatcher;

/// An [`EventStore`] whose data lives in a `strata serve` reached over the network.
///
/// Cheap to share behind an `Arc`; dropping the last one stops its background subscription.
pub struct RemoteStore {
    client: Client,
    url: String,
    limits: Limits,
    log_end: LogEndWatcher,
}

impl RemoteStore {
    /// Connects to the server at `url` (`kdb://HOST:PORT?tls=false`, or `esdb://`,
    /// `kurrentdb://`) and reads where its log ends. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`ConnectError::InvalidUrl`] for a connection string the client cannot parse;
    /// [`ConnectError::Unreachable`] when the server does not answer.
    pub async fn connect(url: &str) -> Result<RemoteStore, ConnectError> {
        let settings: ClientSettings =
            url.parse()
                .map_err(
                    |error: kurrentdb::ClientSettingsParseError| ConnectError::InvalidUrl {
                        url: url.to_owned(),
                        reason: error.to_string(),
                    },
                )?;
        let client = Client::new(settings).map_err(|error| ConnectError::InvalidUrl {
            url: url.to_owned(),
            reason: error.to_string(),
        })?;
        let last = read_all::last_event_position(&client)
            .await
            .map_err(|error| ConnectError::Unreachable {
                url: url.to_owned(),
                reason: error.to_string(),
            })?;
        let log_end = LogEndWatcher::start(client.clone(), last);
        Ok(RemoteStore {
            client,
            url: url.to_owned(),
            limits: Limits::default(),
            log_end,
        })
    }

    /// The connection string this store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects and wraps the store in an `Arc`, as the toolkit and subscriptions take it.
    ///
    /// # Errors
    /// As [`RemoteStore::connect`].
    pub async fn connect_shared(url: &str) -> Result<Arc<RemoteStore>, ConnectError> {
        Ok(Arc::new(Self::connect(url).await?))
    }
}

#[async_trait]
impl EventStore for RemoteStore {
    /// The reference limits, which `strata serve` enforces; they are checked here first so
    /// that an oversized append is refused with its typed error before it is sent.
    fn limits(&self) -> Limits {
        self.limits
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.limits.check_append(&events)?;
        let events = events
            .into_iter()
            .map(convert::event_data)
            .collect::<Result<Vec<_>>>()?;
        let options = kurrentdb::AppendToStreamOptions::default()
            .stream_state(convert::stream_state(expected));
        let written = self
            .client
            .append_to_stream(stream.as_str(), &options, events)
            .await
            .map_err(|error| errors::to_core(error, stream, expected))?;
        let result = AppendResult {
            current_revision: strata_core::Revision(written.next_expected_version),
            position: Position(written.position.commit),
        };
        self.log_end.saw_event(result.position);
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        read_all::read_stream(&self.client, stream, options).await
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let slice = read_all::read_all(&self.client, options).await?;
        if let Some(last) = slice.events.iter().map(|event| event.position).max() {
            self.log_end.saw_event(last);
        }
        Ok(slice)
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        errors::probe_stream_state(&self.client, stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        let options = DeleteStreamOptions::default().stream_state(convert::stream_state(expected));
        let position = self
            .client
            .delete_stream(stream.as_str(), &options)
            .await
            .map_err(|error| errors::to_core(error, stream, expected))?;
        self.deleted(position).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        let options =
            TombstoneStreamOptions::default().stream_state(convert::stream_state(expected));
        let position = self
            .client
            .tombstone_stream(stream.as_str(), &options)
            .await
            .map_err(|error| errors::to_core(error, stream, expected))?;
        self.deleted(position).await
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        read_all::last_event_position(&self.client).await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.log_end.subscribe()
    }
}

impl RemoteStore {
    /// The result of a delete; a server that leaves the position out (KurrentDB may) gets
    /// the log's last position, which is where the delete landed or later.
    async fn deleted(&self, position: Option<kurrentdb::Position>) -> Result<DeleteResult> {
        let position = match position {
            Some(position) => Position(position.commit),
            None => self.last_position().await?.unwrap_or(Position::START),
        };
        self.log_end.saw_event(position);
        Ok(DeleteResult { position })
    }
}
