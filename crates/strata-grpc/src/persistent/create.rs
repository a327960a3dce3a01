//! `PersistentSubscriptions.Create`: a group on a stream (from a revision, the start or the
//! end) or on `$all` (from a position, with an optional filter). A revision or position of
//! 2^64−1 is the end, as the reference server reads it.

use strata_persistent::{FilterSpec, PersistentSubscriptions, StartFrom, SubscriptionSource};
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::persistent::settings::{WireSettings, group_name, source};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::persistent_subscriptions::create_req::all_options::{
    AllOption, FilterOption, FilterOptions, filter_options,
};
use crate::proto::event_store::client::persistent_subscriptions::create_req::options::StreamOption;
use crate::proto::event_store::client::persistent_subscriptions::create_req::stream_options::RevisionOption;
use crate::proto::event_store::client::persistent_subscriptions::{CreateReq, CreateResp};

pub(crate) async fn create(
    manager: &PersistentSubscriptions,
    request: Request<CreateReq>,
) -> Result<Response<CreateResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the request has no options"))?;
    let group = group_name(options.group_name)?;
    let wire = options
        .settings
        .ok_or_else(|| invalid("the request has no settings"))?;
    let legacy_revision = wire.revision;
    let (subscription_source, start_from, filter) = match options.stream_option {
        Some(StreamOption::Stream(stream)) => {
            let start_from = match stream.revision_option {
                Some(RevisionOption::Revision(revision)) => StartFrom::at(revision),
                Some(RevisionOption::Start(Empty {})) => StartFrom::Start,
                Some(RevisionOption::End(Empty {})) | None => StartFrom::End,
            };
            (
                source(stream.stream_identifier.as_ref(), false)?,
                start_from,
                None,
            )
        }
        Some(StreamOption::All(all)) => {
            let start_from = match all.all_option {
                Some(AllOption::Position(position)) => StartFrom::at(position.commit_position),
                Some(AllOption::Start(Empty {})) => StartFrom::Start,
                Some(AllOption::End(Empty {})) | None => StartFrom::End,
            };
            let filter = match all.filter_option {
                Some(FilterOption::Filter(filter)) => Some(filter_spec(filter)?),
                Some(FilterOption::NoFilter(Empty {})) | None => None,
            };
            (SubscriptionSource::All, start_from, filter)
        }
        // Older clients name the stream beside the options and the start in the settings;
        // the Node client sends 2^64−1 there for "from the end", which `StartFrom::at` reads.
        None => (
            source(options.stream_identifier.as_ref(), false)?,
            StartFrom::at(legacy_revision),
            None,
        ),
    };
    let settings =
        WireSettings::from(wire).into_settings(&subscription_source, &group, start_from)?;
    manager
        .create(&subscription_source, &group, settings, filter)
        .await
        .map_err(persistent_status)?;
    Ok(Response::new(CreateResp {}))
}

/// A filter as KurrentDB sends it: prefixes when any are given, else the regex.
fn filter_spec(filter: FilterOptions) -> Result<FilterSpec, Status> {
    let (on_event_type, expression) = match filter.filter {
        Some(filter_options::Filter::StreamIdentifier(expression)) => (false, expression),
        Some(filter_options::Filter::EventType(expression)) => (true, expression),
        None => {
            return Err(invalid(
                "the filter names neither stream names nor event types",
            ));
        }
    };
    Ok(FilterSpec {
        on_event_type,
        regex: expression.regex,
        prefixes: expression.prefix,
    })
}
