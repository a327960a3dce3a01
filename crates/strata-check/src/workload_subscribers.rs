//! The workload's readers of `$all` that outlive a server: catch-up subscribers resuming after
//! the last event they were delivered, and the consumers of the persistent subscription group.

use std::time::Duration;

use kurrentdb::{
    PersistentSubscriptionToAllOptions, Position, StreamPosition, SubscribeToAllOptions,
    SubscribeToPersistentSubscriptionOptions, SubscriptionEvent, SubscriptionFilter,
};
use tokio::sync::watch;

use super::{ClientContext, SubscriberState, seen};
use crate::history::{GroupDelivery, SessionEnd, SubscriptionSession};

/// Subscribes again and again (after the last delivered event) until stopped, or until the
/// event at `target` was delivered.
pub(super) async fn run_subscriber(
    context: ClientContext,
    mut state: SubscriberState,
    mut stopped: watch::Receiver<bool>,
    target: Option<u64>,
) -> SubscriberState {
    let filter = SubscriptionFilter::on_stream_name().add_prefix(&context.config.prefix);
    loop {
        if *stopped.borrow() {
            return state;
        }
        let mut session = SubscriptionSession {
            subscriber: state.number,
            after_position: state.after_position,
            started_at: context.recorder.now(),
            deliveries: Vec::new(),
            end: SessionEnd::Dropped {
                error: "stopped".to_owned(),
            },
        };
        if target.is_some() && target == state.after_position {
            session.end = SessionEnd::CaughtUp;
            context.recorder.record_session(session);
            return state;
        }
        let start = match state.after_position {
            Some(position) => StreamPosition::Position(Position {
                commit: position,
                prepare: position,
            }),
            None => StreamPosition::Start,
        };
        let options = SubscribeToAllOptions::default()
            .position(start)
            .filter(filter.clone());
        let mut subscription = context.client.subscribe_to_all(&options).await;
        let caught_up = loop {
            let message = tokio::select! {
                message = subscription.next_subscription_event() => message,
                _ = stopped.changed() => break false,
            };
            match message {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    let Some(event) = resolved.event else {
                        continue;
                    };
                    if !event.stream_id().starts_with(&context.config.prefix) {
                        continue;
                    }
                    let event = seen(&event);
                    state.after_position = Some(event.position);
                    session.deliveries.push((context.recorder.now(), event));
                    if target.is_some() && target == state.after_position {
                        break true;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    session.end = SessionEnd::Dropped {
                        error: format!("{error}"),
                    };
                    break false;
                }
            }
        };
        if caught_up {
            session.end = SessionEnd::CaughtUp;
        }
        context.recorder.record_session(session);
        if caught_up {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the group is created: from the start of `$all`, the workload's streams only, with
/// frequent checkpoints (so kills land between them) and a short message timeout.
fn group_options(prefix: &str) -> PersistentSubscriptionToAllOptions {
    PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::Start)
        .filter(SubscriptionFilter::on_stream_name().add_prefix(prefix))
        .checkpoint_after(Duration::from_millis(100))
        .checkpoint_lower_bound(1)
        .checkpoint_upper_bound(20)
        .message_timeout(Duration::from_secs(2))
}

fn group_name(prefix: &str) -> String {
    format!("{prefix}group")
}

/// Creates the group if needed, consumes and acks until stopped, and connects again after
/// every error.
pub(super) async fn run_consumer(
    context: ClientContext,
    number: u32,
    mut stopped: watch::Receiver<bool>,
) {
    let prefix = &context.config.prefix;
    let group = group_name(prefix);
    while !*stopped.borrow() {
        // Already there after the first phase (ResourceAlreadyExists): nothing to do.
        let _ = context
            .client
            .create_persistent_subscription_to_all(&group, &group_options(prefix))
            .await;
        let subscribed = context
            .client
            .subscribe_to_persistent_subscription_to_all(
                &group,
                &SubscribeToPersistentSubscriptionOptions::default(),
            )
            .await;
        if let Ok(mut subscription) = subscribed {
            loop {
                let resolved = tokio::select! {
                    resolved = subscription.next() => resolved,
                    _ = stopped.changed() => return,
                };
                let Ok(resolved) = resolved else { break };
                let event = resolved.get_original_event();
                if event.stream_id().starts_with(prefix.as_str()) {
                    let delivery = GroupDelivery {
                        consumer: number,
                        at: context.recorder.now(),
                        event: seen(event),
                    };
                    context
                        .recorder
                        .history
                        .lock()
                        .expect("no recorder panics")
                        .group_deliveries
                        .push(delivery);
                }
                if subscription.ack(&resolved).await.is_err() {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
