//! `Streams.Delete` (soft) and `Streams.Tombstone` (permanent).

use std::sync::Arc;

use strata_core::{DeleteResult, EventStore, ExpectedRevision, StreamName};
use tonic::{Request, Response, Status};

use crate::convert::{invalid, stream_name};
use crate::errors::to_status;
use crate::proto::event_store::client::streams::{
    DeleteReq, DeleteResp, TombstoneReq, TombstoneResp, delete_req, delete_resp, tombstone_req,
    tombstone_resp,
};

/// The expected revision of a delete or tombstone: their generated oneofs have the same
/// variants under different types.
macro_rules! expected_revision {
    ($option:expr, $wire:ty, $what:literal) => {{
        type Wire = $wire;
        match $option {
            Some(Wire::Revision(revision)) => Ok(ExpectedRevision::Exact(revision)),
            Some(Wire::NoStream(_)) => Ok(ExpectedRevision::NoStream),
            Some(Wire::Any(_)) => Ok(ExpectedRevision::Any),
            Some(Wire::StreamExists(_)) => Ok(ExpectedRevision::StreamExists),
            None => Err(invalid(concat!(
                "the ",
                $what,
                " names no expected revision"
            ))),
        }
    }};
}

pub(crate) async fn delete(
    store: &Arc<dyn EventStore>,
    request: Request<DeleteReq>,
) -> Result<Response<DeleteResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the delete has no options"))?;
    let stream = stream_name(options.stream_identifier.as_ref())?;
    let expected = expected_revision!(
        options.expected_stream_revision,
        delete_req::options::ExpectedStreamRevision,
        "delete"
    )?;
    let position = run(store, &stream, expected, false).await?.position.0;
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
    let expected = expected_revision!(
        options.expected_stream_revision,
        tombstone_req::options::ExpectedStreamRevision,
        "tombstone"
    )?;
    let position = run(store, &stream, expected, true).await?.position.0;
    Ok(Response::new(TombstoneResp {
        position_option: Some(tombstone_resp::PositionOption::Position(
            tombstone_resp::Position {
                commit_position: position,
                prepare_position: position,
            },
        )),
    }))
}

async fn run(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    expected: ExpectedRevision,
    tombstone: bool,
) -> Result<DeleteResult, Status> {
    let deleted = if tombstone {
        store.tombstone_stream(stream, expected).await
    } else {
        store.delete_stream(stream, expected).await
    };
    deleted.map_err(to_status)
}
