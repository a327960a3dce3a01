//! A small client for the KurrentDB gRPC protocol: appends, batch appends over one
//! bidirectional call, and forwards reads of `$all`. It is what `strata bench --server`
//! drives; applications should use an official KurrentDB client.
//!
//! It speaks plain-text HTTP/2 to one node (`kdb://HOST:PORT?tls=false`) and sends events
//! as KurrentDB clients do: `type` and `content-type` metadata, ids as structured or
//! string UUIDs.
//!
//! ```no_run
//! # async fn example() -> Result<(), strata_grpc::client::ClientError> {
//! use strata_core::{ExpectedRevision, ProposedEvent, StreamName};
//! use strata_grpc::client::Client;
//!
//! let client = Client::connect("kdb://127.0.0.1:2113?tls=false").await?;
//! let stream = StreamName::new("order-42").expect("a valid name");
//! let event = ProposedEvent::json("OrderPlaced", r#"{"total":12}"#);
//! client.append(&stream, ExpectedRevision::Any, vec![event]).await?;
//! let events = client.read_all_forwards(4_096, |_event| {}).await?;
//! # let _ = events;
//! # Ok(())
//! # }
//! ```

mod admin;
mod append_records;
mod batch_appender;
mod connection_string;
mod projections;
mod users;

use std::time::Duration;

use strata_core::{
    APPEND_BYTES_MAX, ContentType, EVENT_BYTES_MAX, EventId, ExpectedRevision, Position,
    ProposedEvent, RecordedEvent, Revision, StreamName, StreamState, Timestamp,
};
use tonic::codegen::tokio_stream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub use self::append_records::{RecordsAppended, StreamCheck};
pub use self::batch_appender::BatchAppender;
pub use self::projections::{DeleteStreams, ProjectionInfo, ProjectionMode, ProjectionsAdmin};
pub use self::users::{UserInfo, UsersAdmin};
use crate::convert::{UuidFormat, event_id, stream_identifier, wire_uuid};
use crate::proposed_message::{ProposedMessage, ProposedMetadata};
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::streams::append_req::options::ExpectedStreamRevision;
use crate::proto::event_store::client::streams::append_resp::{self, success};
use crate::proto::event_store::client::streams::read_req::options::{
    self as read_options, AllOptions, CountOption, FilterOption, ReadDirection, StreamOption,
    UuidOption, all_options, uuid_option,
};
use crate::proto::event_store::client::streams::read_resp::{self, read_event};
use crate::proto::event_store::client::streams::streams_client::StreamsClient;
use crate::proto::event_store::client::streams::{AppendReq, ReadReq, append_req, read_req};

/// The `Streams` client, each call carrying the connection string's credentials.
pub(crate) type Streams = StreamsClient<InterceptedService<Channel, Authorization>>;

/// Adds `authorization: Basic ...` to every call when the connection string has credentials.
#[derive(Clone, Debug)]
pub(crate) struct Authorization(Option<MetadataValue<Ascii>>);

impl Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Metadata keys every KurrentDB client sends and every server answers with.
const TYPE_KEY: &str = "type";
const CONTENT_TYPE_KEY: &str = "content-type";
const CREATED_KEY: &str = "created";

/// Room for a message beyond its events' bytes (ids, metadata maps, framing).
const MESSAGE_SLACK_BYTES: usize = 1024 * 1024;
/// The largest answer accepted: one read event of the largest size.
const DECODED_BYTES_MAX: usize = EVENT_BYTES_MAX + MESSAGE_SLACK_BYTES;
/// The largest request sent: one batch-append chunk of the largest append.
const ENCODED_BYTES_MAX: usize = APPEND_BYTES_MAX + MESSAGE_SLACK_BYTES;
/// How long connecting may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 receive windows: large enough that a fast reader of `$all` is not held back by
/// a window update per 64 KiB (the HTTP/2 default).
const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{url:?} is not a usable connection string: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("cannot connect to {uri}: {source}; check that strata serve is running there")]
    Connect {
        uri: String,
        #[source]
        source: tonic::transport::Error,
    },

    #[error("{operation} failed with {:?}: {}", status.code(), status.message())]
    Rpc {
        operation: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },

    #[error(
        "wrong expected revision on stream {stream}: expected {expected}, but it is at {actual}"
    )]
    WrongExpectedRevision {
        stream: StreamName,
        expected: ExpectedRevision,
        actual: StreamState,
    },

    #[error("the server refused the batch append to {stream} (code {code}): {message}")]
    BatchAppendRefused {
        stream: StreamName,
        code: i32,
        message: String,
    },

    #[error("the batch append call ended before the answer came: {reason}")]
    BatchAppendClosed { reason: String },

    #[error("the server's answer to {operation} breaks the protocol: {reason}")]
    Protocol {
        operation: &'static str,
        reason: String,
    },
}

impl ClientError {
    fn rpc(operation: &'static str, status: tonic::Status) -> Self {
        Self::Rpc {
            operation,
            status: Box::new(status),
        }
    }

    fn protocol(operation: &'static str, reason: impl Into<String>) -> Self {
        Self::Protocol {
            operation,
            reason: reason.into(),
        }
    }
}

/// How event ids travel on the wire; servers accept both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdFormat {
    /// Hyphenated text, as the Rust, Node.js and Python clients send.
    #[default]
    String,
    /// Two signed 64-bit halves, as the .NET and Java clients send.
    Structured,
}

impl IdFormat {
    fn wire(self) -> UuidFormat {
        match self {
            IdFormat::String => UuidFormat::String,
            IdFormat::Structured => UuidFormat::Structured,
        }
    }
}

/// Where a successful append left its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The stream's last revision; `None` for an append of no events to a stream that
    /// has none.
    pub current_revision: Option<Revision>,
    /// The `$all` position of the append's last event; `None` when no event was written.
    pub position: Option<Position>,
}

/// A connection to one server. Cloning is cheap and shares the connection: calls from
/// clones are multiplexed over one HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct Client {
    streams: Streams,
    streams_v2: append_records::StreamsV2,
    id_format: IdFormat,
}

impl Client {
    /// Connects to the node `url` names: `kdb://[USER:PASSWORD@]HOST:PORT` with
    /// `?tlsCaFile=CA.pem` (TLS, the default) or `?tls=false` (or `kurrentdb://`, `esdb://`;
    /// the port defaults to 2113). Every call carries the credentials of the string.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a string that names no single node, or asks for TLS
    /// without a readable `tlsCaFile`, and [`ClientError::Connect`] when no connection can
    /// be made.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let target = connection_string::parse_secure(url)?;
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(target.uri.clone())
            .map_err(|error| invalid(error.to_string()))?;
        if target.uri.starts_with("https://") {
            endpoint = endpoint
                .tls_config(connection_string::tls_config(&target).map_err(invalid)?)
                .map_err(|error| invalid(error.to_string()))?;
        }
        let authorization = target
            .credentials
            .map(|(user, password)| {
                strata_auth::Credentials::new(user, password)
                    .to_header()
                    .parse()
                    .map_err(|_| invalid("the credentials cannot be sent as a header".to_owned()))
            })
            .transpose()?;
        let channel = endpoint
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                uri: target.uri,
                source,
            })?;
        let streams_v2 = crate::proto::kurrentdb::protocol::v2::streams::streams_service_client::StreamsServiceClient::with_interceptor(
            channel.clone(),
            Authorization(authorization.clone()),
        )
        .max_decoding_message_size(DECODED_BYTES_MAX)
        .max_encoding_message_size(ENCODED_BYTES_MAX);
        let streams = StreamsClient::with_interceptor(channel, Authorization(authorization))
            .max_decoding_message_size(DECODED_BYTES_MAX)
            .max_encoding_message_size(ENCODED_BYTES_MAX);
        Ok(Client {
            streams,
            streams_v2,
            id_format: IdFormat::default(),
        })
    }

    /// This client, sending event ids (and batch correlation ids) in `format`.
    #[must_use]
    pub fn with_id_format(mut self, format: IdFormat) -> Client {
        self.id_format = format;
        self
    }

    /// Appends `events` to `stream` in one `Append` call, if the stream is as `expected`.
    /// An append of no events only checks `expected`.
    ///
    /// # Errors
    /// [`ClientError::WrongExpectedRevision`] when the stream is not as expected (nothing is
    /// written), [`ClientError::Rpc`] when the server refuses the call or the connection
    /// fails, [`ClientError::Protocol`] for an answer of the wrong shape.
    pub async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<Appended, ClientError> {
        const OPERATION: &str = "Append";
        let options = AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: Some(stream_identifier(stream)),
                expected_stream_revision: Some(append_expected(expected)),
            })),
        };
        let format = self.id_format.wire();
        let messages = std::iter::once(options).chain(events.into_iter().map(move |event| {
            let (id, metadata, custom_metadata, data) = proposed_parts(event, format);
            AppendReq {
                content: Some(append_req::Content::ProposedMessage(ProposedMessage {
                    id: Some(id),
                    metadata,
                    custom_metadata,
                    data,
                })),
            }
        }));
        let answer = self
            .streams
            .clone()
            .append(tokio_stream::iter(messages))
            .await
            .map_err(|status| ClientError::rpc(OPERATION, status))?
            .into_inner();
        match answer.result {
            Some(append_resp::Result::Success(success)) => Ok(appended(&success)),
            Some(append_resp::Result::WrongExpectedVersion(wrong)) => {
                Err(ClientError::WrongExpectedRevision {
                    stream: stream.clone(),
                    expected,
                    actual: match wrong.current_revision_option {
                        Some(append_resp::wrong_expected_version::CurrentRevisionOption::CurrentRevision(
                            revision,
                        )) => StreamState::At(Revision(revision)),
                        _ => StreamState::NoStream,
                    },
                })
            }
            None => Err(ClientError::protocol(OPERATION, "the answer has no result")),
        }
    }

    /// Opens one `BatchAppend` call; appends through it share the call and are told apart
    /// by correlation ids.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the server refuses the call.
    pub async fn batch_appender(&self) -> Result<BatchAppender, ClientError> {
        BatchAppender::open(self.streams.clone(), self.id_format.wire()).await
    }

    /// Reads the whole of `$all` forwards, in `Read` calls of up to `page_events` events
    /// each, handing every event to `on_event` in order. Returns how many events were read.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when a call fails (the events before it were handed over),
    /// [`ClientError::Protocol`] for an event that does not decode or for positions that
    /// go backwards.
    pub async fn read_all_forwards(
        &self,
        page_events: u64,
        mut on_event: impl FnMut(RecordedEvent),
    ) -> Result<u64, ClientError> {
        const OPERATION: &str = "Read $all";
        let page_events = page_events.max(2);
        let mut after: Option<Position> = None;
        let mut events_read = 0u64;
        loop {
            let request = read_all_request(after, page_events, self.id_format.wire());
            let mut answers = self
                .streams
                .clone()
                .read(request)
                .await
                .map_err(|status| ClientError::rpc(OPERATION, status))?
                .into_inner();
            let mut page_len = 0u64;
            while let Some(answer) = answers
                .message()
                .await
                .map_err(|status| ClientError::rpc(OPERATION, status))?
            {
                let Some(read_resp::Content::Event(read_event)) = answer.content else {
                    continue;
                };
                page_len += 1;
                let event = recorded_from_wire(read_event)
                    .map_err(|reason| ClientError::protocol(OPERATION, reason))?;
                // A page starts at the last event of the one before (reads are inclusive).
                match after {
                    Some(last) if event.position == last => continue,
                    Some(last) if event.position < last => {
                        return Err(ClientError::protocol(
                            OPERATION,
                            format!("position {} comes after position {last}", event.position),
                        ));
                    }
                    _ => {}
                }
                after = Some(event.position);
                events_read += 1;
                on_event(event);
            }
            if page_len < page_events {
                return Ok(events_read);
            }
        }
    }
}

fn append_expected(expected: ExpectedRevision) -> ExpectedStreamRevision {
    match expected {
        ExpectedRevision::Any => ExpectedStreamRevision::Any(Empty {}),
        ExpectedRevision::NoStream => ExpectedStreamRevision::NoStream(Empty {}),
        ExpectedRevision::StreamExists => ExpectedStreamRevision::StreamExists(Empty {}),
        ExpectedRevision::Exact(revision) => ExpectedStreamRevision::Revision(revision),
    }
}

fn appended(success: &append_resp::Success) -> Appended {
    Appended {
        current_revision: match success.current_revision_option {
            Some(success::CurrentRevisionOption::CurrentRevision(revision)) => {
                Some(Revision(revision))
            }
            _ => None,
        },
        position: match &success.position_option {
            Some(success::PositionOption::Position(position)) => {
                Some(Position(position.commit_position))
            }
            _ => None,
        },
    }
}

/// The wire parts of a proposed event: id, `type`/`content-type` metadata, custom
/// metadata and data.
type ProposedParts = (
    crate::proto::event_store::client::Uuid,
    ProposedMetadata,
    strata_core::Bytes,
    strata_core::Bytes,
);

fn proposed_parts(event: ProposedEvent, format: UuidFormat) -> ProposedParts {
    let metadata = ProposedMetadata::new(event.event_type, event.content_type.as_mime());
    (
        wire_uuid(event.id, format),
        metadata,
        event.metadata,
        event.data,
    )
}

fn read_all_request(after: Option<Position>, count: u64, format: UuidFormat) -> ReadReq {
    let from = match after {
        Some(position) => all_options::AllOption::Position(read_options::Position {
            commit_position: position.0,
            prepare_position: position.0,
        }),
        None => all_options::AllOption::Start(Empty {}),
    };
    let uuid = match format {
        UuidFormat::String => uuid_option::Content::String(Empty {}),
        UuidFormat::Structured => uuid_option::Content::Structured(Empty {}),
    };
    ReadReq {
        options: Some(read_req::Options {
            stream_option: Some(StreamOption::All(AllOptions {
                all_option: Some(from),
            })),
            read_direction: ReadDirection::Forwards.into(),
            resolve_links: false,
            count_option: Some(CountOption::Count(count)),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
            uuid_option: Some(UuidOption {
                content: Some(uuid),
            }),
            control_option: Some(read_options::ControlOption { compatibility: 1 }),
        }),
    }
}

/// A read event as the store's recorded event.
fn recorded_from_wire(read_event: read_resp::ReadEvent) -> Result<RecordedEvent, String> {
    let read_event::RecordedEvent {
        id,
        stream_identifier,
        stream_revision,
        commit_position,
        mut metadata,
        custom_metadata,
        data,
        ..
    } = read_event
        .event
        .ok_or_else(|| "a read event carries no event".to_owned())?;
    let id: EventId = event_id(id.as_ref()).map_err(|status| status.message().to_owned())?;
    let name = stream_identifier
        .as_ref()
        .map(|identifier| identifier.stream_name.as_ref())
        .unwrap_or_default();
    let stream = std::str::from_utf8(name)
        .map_err(|_| format!("event {id} has a stream name that is not UTF-8"))
        .and_then(|name| StreamName::new(name).map_err(|error| error.to_string()))?;
    let event_type = metadata
        .remove(TYPE_KEY)
        .ok_or_else(|| format!("event {id} has no {TYPE_KEY:?} metadata"))?;
    let content_type = match metadata.get(CONTENT_TYPE_KEY).map(String::as_str) {
        Some(mime) if mime == ContentType::Json.as_mime() => ContentType::Json,
        _ => ContentType::Binary,
    };
    let created_ticks: i64 = metadata
        .get(CREATED_KEY)
        .and_then(|ticks| ticks.parse().ok())
        .unwrap_or_default();
    Ok(RecordedEvent {
        stream,
        revision: Revision(stream_revision),
        position: Position(commit_position),
        id,
        event_type,
        content_type,
        data,
        metadata: custom_metadata,
        created: Timestamp(created_ticks.saturating_mul(100)),
    })
}
