//! `strata.dcb.v1.Dcb`: Strata's own service for dynamic consistency boundaries
//! (docs/DCB.md). `Append` is [`strata_core::EventStore::append_conditional`], `Read` is
//! [`strata_core::EventStore::read_query`]. KurrentDB's v2 `AppendRecords` consistency
//! checks name streams and revisions, so they cannot express a query over tags.

use strata_core::{
    AppendCondition, AppendPart, ContentType, EventId, ExpectedRevision, Position, ProposedEvent,
    Query, QueryItem, StreamName,
};
use tonic::{Request, Response, Status};

use crate::access::Access;
use crate::convert::invalid;
use crate::errors::to_status;
use crate::proto::strata::dcb::v1 as pb;
use crate::proto::strata::dcb::v1::dcb_server::Dcb;

/// Most events one read returns.
const READ_MAX_COUNT: u32 = 4_096;
/// Events a read returns when it does not say.
const READ_DEFAULT_COUNT: u32 = 100;

pub(crate) struct DcbService {
    pub(crate) access: Access,
}

fn query_of(query: Option<pb::Query>) -> Result<Query, Status> {
    let query = query.ok_or_else(|| invalid("the request has no query"))?;
    Ok(Query::new(
        query
            .items
            .into_iter()
            .map(|item| QueryItem::new(item.types, item.tags)),
    ))
}

fn expected_of(expected: Option<pb::stream_append::Expected>) -> Result<ExpectedRevision, Status> {
    Ok(match expected {
        None => ExpectedRevision::Any,
        Some(pb::stream_append::Expected::Revision(revision)) => ExpectedRevision::Exact(revision),
        Some(pb::stream_append::Expected::State(state)) => {
            match pb::ExpectedState::try_from(state) {
                Ok(pb::ExpectedState::Any) => ExpectedRevision::Any,
                Ok(pb::ExpectedState::NoStream) => ExpectedRevision::NoStream,
                Ok(pb::ExpectedState::Exists) => ExpectedRevision::StreamExists,
                Err(_) => return Err(invalid(format!("unknown expected state {state}"))),
            }
        }
    })
}

fn proposed_of(event: pb::Event) -> Result<ProposedEvent, Status> {
    let id = if event.id.is_empty() {
        EventId::new_random()
    } else {
        let uuid = uuid::Uuid::parse_str(&event.id)
            .map_err(|error| invalid(format!("event id {:?}: {error}", event.id)))?;
        EventId(uuid)
    };
    let proposed = ProposedEvent {
        id,
        event_type: event.r#type.into(),
        content_type: if event.json {
            ContentType::Json
        } else {
            ContentType::Binary
        },
        data: event.data,
        metadata: event.metadata,
    };
    if event.tags.is_empty() {
        Ok(proposed)
    } else {
        proposed.with_tags(event.tags).map_err(to_status)
    }
}

#[tonic::async_trait]
impl Dcb for DcbService {
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let store = self.access.store(&request).await?;
        let request = request.into_inner();
        let query = query_of(request.query)?;
        let mut parts = Vec::with_capacity(request.appends.len());
        for append in request.appends {
            let stream =
                StreamName::new(&append.stream).map_err(|error| invalid(error.to_string()))?;
            let expected = expected_of(append.expected)?;
            let events = append
                .events
                .into_iter()
                .map(proposed_of)
                .collect::<Result<Vec<_>, _>>()?;
            parts.push(AppendPart::write(stream, expected, events));
        }
        let condition = AppendCondition::new(query, request.after.map(Position));
        let result = store
            .append_conditional(parts, condition)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AppendResponse {
            position: result.position.0,
            streams: result
                .parts
                .into_iter()
                .map(|(stream, appended)| pb::StreamAppended {
                    stream: stream.as_str().to_owned(),
                    revision: appended.current_revision.0,
                    position: appended.position.0,
                })
                .collect(),
        }))
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let store = self.access.store(&request).await?;
        let request = request.into_inner();
        let max_count = match request.max_count {
            0 => READ_DEFAULT_COUNT,
            count if count > READ_MAX_COUNT => {
                return Err(invalid(format!("max_count must be 1 to {READ_MAX_COUNT}")));
            }
            count => count,
        };
        let query = query_of(request.query)?;
        let slice = store
            .read_query(&query, request.after.map(Position), max_count as usize)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReadResponse {
            events: slice
                .events
                .into_iter()
                .map(|event| pb::RecordedEvent {
                    tags: event.tags(),
                    stream: event.stream.as_str().to_owned(),
                    revision: event.revision.0,
                    position: event.position.0,
                    id: event.id.0.to_string(),
                    r#type: event.event_type,
                    data: event.data,
                    metadata: event.metadata,
                    json: event.content_type == ContentType::Json,
                    created_unix_nanos: event.created.0,
                })
                .collect(),
            last_position: slice.last_position.map(|position| position.0),
            more: slice.more,
        }))
    }
}
