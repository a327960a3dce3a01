//! `PersistentSubscriptions.Delete`: removes a group with its checkpoint and parked events.

use strata_persistent::PersistentSubscriptions;
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::persistent::settings::{group_name, source};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::persistent_subscriptions::delete_req::options::StreamOption;
use crate::proto::event_store::client::persistent_subscriptions::{DeleteReq, DeleteResp};

pub(crate) async fn delete(
    manager: &PersistentSubscriptions,
    request: Request<DeleteReq>,
) -> Result<Response<DeleteResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the request has no options"))?;
    let subscription_source = match &options.stream_option {
        Some(StreamOption::StreamIdentifier(stream)) => source(Some(stream), false)?,
        Some(StreamOption::All(_)) => source(None, true)?,
        None => return Err(invalid("the request names neither a stream nor $all")),
    };
    let group = group_name(options.group_name)?;
    manager
        .delete(&subscription_source, &group)
        .await
        .map_err(persistent_status)?;
    Ok(Response::new(DeleteResp {}))
}
