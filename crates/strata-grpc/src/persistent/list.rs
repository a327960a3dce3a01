//! `PersistentSubscriptions.List`: every group, or the groups of one stream or of `$all`
//! (NOT_FOUND when it has none, as the reference server answers).

use strata_persistent::PersistentSubscriptions;
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::persistent::get_info::subscription_info;
use crate::persistent::settings::source;
use crate::persistent::status::persistent_status;
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
    // The reference server answers NOT_FOUND (with an empty group name) for a stream or `$all`
    // that has no group; clients turn that into an empty list or a not-found error.
    if let Some(source) = wanted
        && infos.is_empty()
    {
        return Err(persistent_status(strata_persistent::Error::GroupNotFound {
            stream: source.to_string(),
            group: String::new(),
        }));
    }
    Ok(Response::new(ListResp {
        subscriptions: infos.into_iter().map(subscription_info).collect(),
    }))
}
