//! `PersistentSubscriptions.Update`: new settings for a group, which restarts from its
//! checkpoint (a `$all` group keeps its filter).

use strata_persistent::{PersistentSubscriptions, StartFrom, SubscriptionSource};
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::persistent::settings::{WireSettings, group_name, source};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::persistent_subscriptions::update_req::all_options::AllOption;
use crate::proto::event_store::client::persistent_subscriptions::update_req::options::StreamOption;
use crate::proto::event_store::client::persistent_subscriptions::update_req::stream_options::RevisionOption;
use crate::proto::event_store::client::persistent_subscriptions::{UpdateReq, UpdateResp};

pub(crate) async fn update(
    manager: &PersistentSubscriptions,
    request: Request<UpdateReq>,
) -> Result<Response<UpdateResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the request has no options"))?;
    let group = group_name(options.group_name)?;
    let wire = options
        .settings
        .ok_or_else(|| invalid("the request has no settings"))?;
    let legacy_revision = wire.revision;
    let (subscription_source, start_from) = match options.stream_option {
        Some(StreamOption::Stream(stream)) => {
            let start_from = match stream.revision_option {
                Some(RevisionOption::Revision(revision)) => StartFrom::at(revision),
                Some(RevisionOption::Start(Empty {})) => StartFrom::Start,
                Some(RevisionOption::End(Empty {})) | None => StartFrom::End,
            };
            (
                source(stream.stream_identifier.as_ref(), false)?,
                start_from,
            )
        }
        Some(StreamOption::All(all)) => {
            let start_from = match all.all_option {
                Some(AllOption::Position(position)) => StartFrom::at(position.commit_position),
                Some(AllOption::Start(Empty {})) => StartFrom::Start,
                Some(AllOption::End(Empty {})) | None => StartFrom::End,
            };
            (SubscriptionSource::All, start_from)
        }
        // Older clients: the stream beside the options, the start in the settings (2^64−1,
        // "from the end" for the Node client, is read by `StartFrom::at`).
        None => (
            source(options.stream_identifier.as_ref(), false)?,
            StartFrom::at(legacy_revision),
        ),
    };
    let settings =
        WireSettings::from(wire).into_settings(&subscription_source, &group, start_from)?;
    manager
        .update(&subscription_source, &group, settings)
        .await
        .map_err(persistent_status)?;
    Ok(Response::new(UpdateResp {}))
}
