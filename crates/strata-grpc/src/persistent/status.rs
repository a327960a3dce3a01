//! Persistent-subscription errors as KurrentDB clients expect them: the reference server's
//! codes, wording and trailers (`exception`, `stream-name`, `group-name`, and `reason` for a
//! failed create or update).

use strata_persistent::Error as Persistent;
use tonic::{Code, Status};

use crate::errors::{to_status, with_trailers};

/// The gRPC status for a persistent-subscription error.
pub(crate) fn persistent_status(error: Persistent) -> Status {
    let message = error.to_string();
    match error {
        Persistent::GroupNotFound { stream, group } => with_trailers(
            Code::NotFound,
            format!("Subscription group {group} on stream {stream} does not exist."),
            &group_trailers("persistent-subscription-does-not-exist", &stream, &group),
        ),
        Persistent::GroupExists { stream, group } => with_trailers(
            Code::AlreadyExists,
            format!("Subscription group {group} on stream {stream} exists."),
            &group_trailers("persistent-subscription-exists", &stream, &group),
        ),
        Persistent::MaximumSubscribersReached { stream, group, .. } => with_trailers(
            Code::FailedPrecondition,
            format!(
                "Maximum subscriptions reached for subscription group {group} on stream {stream}."
            ),
            &group_trailers("maximum-subscribers-reached", &stream, &group),
        ),
        Persistent::Dropped { stream, group, .. } => with_trailers(
            Code::Cancelled,
            format!("Subscription group {group} on stream {stream} was dropped."),
            &group_trailers("persistent-subscription-dropped", &stream, &group),
        ),
        // The reference server answers a refused create or update (unknown strategy, read
        // batch not below the history buffer) with INTERNAL; clients map that code.
        Persistent::InvalidSettings {
            stream,
            group,
            reason,
        } => {
            let mut trailers =
                group_trailers("persistent-subscription-failed", &stream, &group).to_vec();
            trailers.push(("reason", reason.clone()));
            with_trailers(
                Code::Internal,
                format!("Subscription group {group} on stream {stream} failed: '{reason}'"),
                &trailers,
            )
        }
        // A limit of this server (the reference has none): the standard code for a quota.
        Persistent::GroupLimitReached { stream, group, .. } => with_trailers(
            Code::ResourceExhausted,
            message,
            &[("stream-name", stream), ("group-name", group)],
        ),
        Persistent::CorruptState { .. } => Status::data_loss(message),
        Persistent::Store(error) => to_status(error),
        _ => Status::internal(message),
    }
}

/// The status of a refused create or update, for settings refused before they reach the
/// manager (an unknown strategy name, a negative number).
pub(crate) fn settings_refused(stream: &str, group: &str, reason: String) -> Status {
    persistent_status(Persistent::InvalidSettings {
        stream: stream.to_owned(),
        group: group.to_owned(),
        reason,
    })
}

fn group_trailers(
    exception: &'static str,
    stream: &str,
    group: &str,
) -> [(&'static str, String); 3] {
    [
        ("exception", exception.to_owned()),
        ("stream-name", stream.to_owned()),
        ("group-name", group.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_errors_carry_the_reference_codes_and_trailers() {
        let status = persistent_status(Persistent::GroupNotFound {
            stream: "orders".into(),
            group: "billing".into(),
        });
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "Subscription group billing on stream orders does not exist."
        );
        let trailers = status.metadata();
        assert_eq!(
            trailers.get("exception").unwrap(),
            "persistent-subscription-does-not-exist"
        );
        assert_eq!(trailers.get("stream-name").unwrap(), "orders");
        assert_eq!(trailers.get("group-name").unwrap(), "billing");
        let full = persistent_status(Persistent::MaximumSubscribersReached {
            stream: "$all".into(),
            group: "g".into(),
            max: 1,
        });
        assert_eq!(full.code(), Code::FailedPrecondition);
        assert_eq!(
            full.metadata().get("exception").unwrap(),
            "maximum-subscribers-reached"
        );
    }

    #[test]
    fn refused_settings_are_internal_with_the_reason_as_the_reference_answers() {
        let status = settings_refused(
            "orders",
            "billing",
            "Consumer strategy Random does not exist.".into(),
        );
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(
            status.message(),
            "Subscription group billing on stream orders failed: \
             'Consumer strategy Random does not exist.'"
        );
        let trailers = status.metadata();
        assert_eq!(
            trailers.get("exception").unwrap(),
            "persistent-subscription-failed"
        );
        assert_eq!(
            trailers.get("reason").unwrap(),
            "Consumer strategy Random does not exist."
        );
        assert_eq!(trailers.get("group-name").unwrap(), "billing");
    }

    #[test]
    fn the_group_limit_is_resource_exhausted() {
        let status = persistent_status(Persistent::GroupLimitReached {
            stream: "orders".into(),
            group: "g".into(),
            max: 3,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("maximum of 3"), "{status:?}");
        assert_eq!(status.metadata().get("group-name").unwrap(), "g");
    }
}
