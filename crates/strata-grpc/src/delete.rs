//! `Streams.Delete` (soft) and `Streams.Tombstone` (permanent).

use std::sync::Arc;

use strata_core::{EventStore, ExpectedRevision};
use tonic::{Request, Response, Status};

use crate::convert::{invalid, stream_name};
use crate::errors::to_status;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::streams::{
    DeleteReq, DeleteResp, TombstoneReq, TombstoneResp, delete_req, delete_resp, tombstone_req,
    tombstone_resp,
};

pub(crate) async fn delete(
    store: &Arc<dyn EventStore>,
    request: Request<DeleteReq>,
) -> Result<Response<DeleteResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the delete has no options"))?;
    let stream = stream_name(options.stream_identifier.as_ref())?;
    use delete_req::options::ExpectedStreamRevision as Wire;
    let expected = match options.expected_stream_revision {
        Some(Wire::Revision(revision)) => ExpectedRevision::Exact(revision),
        Some(Wire::NoStream(Empty {})) => ExpectedRevision::NoStream,
        Some(Wire::Any(Empty {})) => ExpectedRevision::Any,
        Some(Wire::StreamExists(Empty {})) => ExpectedRevision::StreamExists,
        None => return Err(invalid("the delete names no expected revision")),
    };
    let deleted = store
        .delete_stream(&stream, expected)
        .await
        .map_err(to_status)?;
    let position = deleted.position.0;
    Ok(Response::new(DeleteResp {
        position_option: Some(delete_resp::PositionOption::Position(
            delete_resp::Position {
                commit_position: position,
                prepare_position: position,
            },
        )),
    }))
}

pub(crate) async fn tombstone(
    store: &Arc<dyn EventStore>,
    request: Request<TombstoneReq>,
) -> Result<Response<TombstoneResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the tombstone has no options"))?;
    let stream = stream_name(options.stream_identifier.as_ref())?;
    use tombstone_req::options::ExpectedStreamRevision as Wire;
    let expected = match options.expected_stream_revision {
        Some(Wire::Revision(revision)) => ExpectedRevision::Exact(revision),
        Some(Wire::NoStream(Empty {})) => ExpectedRevision::NoStream,
        Some(Wire::Any(Empty {})) => ExpectedRevision::Any,
        Some(Wire::StreamExists(Empty {})) => ExpectedRevision::StreamExists,
        None => return Err(invalid("the tombstone names no expected revision")),
    };
    let deleted = store
        .tombstone_stream(&stream, expected)
        .await
        .map_err(to_status)?;
    let position = deleted.position.0;
    Ok(Response::new(TombstoneResp {
        position_option: Some(tombstone_resp::PositionOption::Position(
            tombstone_resp::Position {
                commit_position: position,
                prepare_position: position,
            },
        )),
    }))
}
