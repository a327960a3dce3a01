//! `PersistentSubscriptions.ReplayParked`: redeliver a group's parked events (all, or up to
//! `stop_at`) ahead of new ones.

use strata_persistent::PersistentSubscriptions;
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::persistent::settings::{group_name, source};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::persistent_subscriptions::replay_parked_req::options::{
    StopAtOption, StreamOption,
};
use crate::proto::event_store::client::persistent_subscriptions::{
    ReplayParkedReq, ReplayParkedResp,
};

pub(crate) async fn replay_parked(
    manager: &PersistentSubscriptions,
    request: Request<ReplayParkedReq>,
) -> Result<Response<ReplayParkedResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the request has no options"))?;
    let subscription_source = match &options.stream_option {
        Some(StreamOption::StreamIdentifier(stream)) => source(Some(stream), false)?,
        Some(StreamOption::All(_)) => source(None, true)?,
        None => return Err(invalid("the request names neither a stream nor $all")),
    };
    let stop_at = match options.stop_at_option {
        Some(StopAtOption::StopAt(count)) => Some(
            u64::try_from(count)
                .map_err(|_| invalid(format!("stop_at must not be negative (got {count})")))?,
        ),
        Some(StopAtOption::NoLimit(_)) | None => None,
    };
    let group = group_name(options.group_name)?;
    manager
        .replay_parked(&subscription_source, &group, stop_at)
        .await
        .map_err(persistent_status)?;
    Ok(Response::new(ReplayParkedResp {}))
}
