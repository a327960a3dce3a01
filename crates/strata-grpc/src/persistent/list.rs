//! `PersistentSubscriptions.List`: every group, or the groups of one stream or of `$all`.

use strata_persistent::PersistentSubscriptions;
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::errors::persistent_status;
use crate::persistent::get_info::subscription_info;
use crate::persistent::settings::source;
use crate::proto::event_store::client::persistent_subscriptions::list_req::options::ListOption;
use crate::proto::event_store::client::persistent_subscriptions::list_req::stream_option::StreamOption;
use crate::proto::event_store::client::persistent_subscriptions::{ListReq, ListResp};

pub(crate) async fn list(
    manager: &PersistentSubscriptions,
    request: Request<ListReq>,
) -> Result<Response<ListResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the request has no options"))?;
    let wanted = match options.list_option {
        Some(ListOption::ListAllSubscriptions(_)) | None => None,
        Some(ListOption::ListForStream(stream)) => match stream.stream_option {
            Some(StreamOption::Stream(stream)) => Some(source(Some(&stream), false)?),
            Some(StreamOption::All(_)) => Some(source(None, true)?),
            None => return Err(invalid("the request names neither a stream nor $all")),
        },
    };
    let infos = manager
        .list(wanted.as_ref())
        .await
        .map_err(persistent_status)?;
    Ok(Response::new(ListResp {
        subscriptions: infos.into_iter().map(subscription_info).collect(),
    }))
}
