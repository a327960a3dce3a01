//! Catch-up subscriptions of `Streams.Read`: confirmation, history, `caught_up`, live
//! events, and for filtered `$all` subscriptions checkpoints every window × multiplier
//! events looked at. The server serves a bounded number of them at once, and each client
//! connection holds a bounded number of them.

use std::sync::Arc;
use std::time::SystemTime;

use strata_auth::LoginWatch;
use strata_core::{
    ConnectionSubscription, ConnectionSubscriptions, DeliveredPosition, Direction, Error, EventId,
    EventStore, ReadFrom, SUBSCRIPTION_BUFFER_DEFAULT, SubscribeFrom, Subscription,
    SubscriptionItem, SubscriptionOptions, SubscriptionProgress, subscribe_to_all_with,
    subscribe_to_stream_with,
    system_streams::{ResolvedEvent, resolve_link},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::convert::invalid;
use crate::errors::{access_denied, subscription_invalid_position, to_status};
use crate::proto::event_store::client::streams::read_resp::{self, Content};
use crate::read::{ReadPlan, Target, resolved_bytes};
use crate::read_answer::ReadAnswer;
use crate::read_answers::Answers;

/// Catch-up subscriptions one server serves at once, unless configured otherwise.
pub const SUBSCRIPTIONS_MAX_DEFAULT: usize = 1_000;

/// Bytes of events a subscription's reader buffers ahead of its Read call (on top of the
/// call's own answer buffer). With [`SUBSCRIPTION_ANSWER_BYTES`] and HTTP/2's send buffer
/// this bounds what a subscriber that never reads holds (an event larger than a budget
/// still goes, alone).
const SUBSCRIPTION_BUFFER_BYTES: usize = 1024 * 1024;

/// Bytes of events a subscription's answer buffer holds before its reading task waits for
/// the client (a read's holds more: it ends).
pub(crate) const SUBSCRIPTION_ANSWER_BYTES: usize = 1024 * 1024;

/// The subscriptions a server may serve at once; each Read subscription holds one slot
/// until its call ends.
pub(crate) struct SubscriptionSlots {
    slots: Arc<Semaphore>,
    slots_max: usize,
    progress: SubscriptionProgress,
}

/// One live subscription's place among the slots (and on its connection), and its
/// progress for the lag gauge.
pub(crate) struct SubscriptionSlot {
    _permit: OwnedSemaphorePermit,
    _connection: Option<ConnectionSubscription>,
    delivered: Arc<DeliveredPosition>,
}

impl SubscriptionSlots {
    pub(crate) fn new(slots_max: usize, progress: SubscriptionProgress) -> Self {
        let slots_max = slots_max.min(Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(slots_max)),
            slots_max,
            progress,
        }
    }

    /// A slot for one more subscription, and a place on its connection (`connection`: what
    /// the server put in the request; none when it is served otherwise, as in tests).
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` when the connection, or the connections from its client
    /// address, hold their limit, or every slot is taken.
    pub(crate) fn take(
        &self,
        connection: Option<&ConnectionSubscriptions>,
    ) -> Result<SubscriptionSlot, Status> {
        let connection = connection
            .map(|connection| {
                connection
                    .take()
                    .map_err(|refused| Status::resource_exhausted(refused.to_string()))
            })
            .transpose()?;
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server already serves its limit of {} subscriptions; end one, or raise \
                 the limit (strata serve --max-subscriptions)",
                self.slots_max
            ))
        })?;
        Ok(SubscriptionSlot {
            _permit: permit,
            _connection: connection,
            delivered: self.progress.track(),
        })
    }
}

pub(crate) async fn subscribe(
    store: &Arc<dyn EventStore>,
    plan: &ReadPlan,
    slot: &SubscriptionSlot,
    mut login: LoginWatch,
    answers: &Answers,
) -> Result<(), Status> {
    if plan.direction == Direction::Backwards {
        return Err(invalid("subscriptions read forwards only"));
    }
    let options = SubscriptionOptions {
        buffer_items: SUBSCRIPTION_BUFFER_DEFAULT,
        buffer_bytes: SUBSCRIPTION_BUFFER_BYTES,
        checkpoint_interval_events: plan.checkpoint_interval_events,
    };
    let mut subscription = match &plan.target {
        Target::Stream(stream, from) => subscribe_to_stream_with(
            Arc::clone(store),
            stream.clone(),
            subscribe_from(*from),
            options,
        ),
        Target::All(from) => subscribe_to_all_with(
            Arc::clone(store),
            subscribe_from(*from),
            plan.filter.clone(),
            options,
        ),
    };
    let confirmation = read_resp::SubscriptionConfirmation {
        subscription_id: EventId::new_random().to_string(),
    };
    answers.send(Content::Confirmation(confirmation)).await?;
    tokio::select! {
        outcome = follow(store, &mut subscription, plan, &slot.delivered, answers) => outcome,
        // The reference server ends the subscriptions of a user who may no longer log in.
        () = login.revoked() => Err(access_denied()),
    }
}

/// A subscription's start: a given revision or position is exclusive, as clients expect.
fn subscribe_from<T>(from: ReadFrom<T>) -> SubscribeFrom<T> {
    match from {
        ReadFrom::Start => SubscribeFrom::Start,
        ReadFrom::End => SubscribeFrom::End,
        ReadFrom::At(place) => SubscribeFrom::After(place),
    }
}

async fn follow(
    store: &Arc<dyn EventStore>,
    subscription: &mut Subscription,
    plan: &ReadPlan,
    delivered: &DeliveredPosition,
    answers: &Answers,
) -> Result<(), Status> {
    let of_all = matches!(plan.target, Target::All(_));
    while let Some(item) = subscription.next().await {
        let item = item.map_err(|error| match error {
            // The only argument a read of `$all` refuses is its start position.
            Error::InvalidArgument { .. } if of_all => subscription_invalid_position(),
            error => to_status(error),
        })?;
        match item {
            SubscriptionItem::Event(event) => {
                let position = event.position;
                let resolved = if plan.resolve_links {
                    resolve_link(&**store, event).await.map_err(to_status)?
                } else {
                    ResolvedEvent::plain(event)
                };
                let bytes = resolved_bytes(&resolved);
                let answer = ReadAnswer::event(&resolved, plan.uuid_format);
                answers.send_page(vec![answer], bytes).await?;
                delivered.delivered(position);
            }
            SubscriptionItem::CaughtUp => {
                let caught_up = read_resp::CaughtUp {
                    timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
                    stream_revision: None,
                    position: None,
                };
                answers.send(Content::CaughtUp(caught_up)).await?;
            }
            SubscriptionItem::Checkpoint(position) => {
                let checkpoint = read_resp::Checkpoint {
                    commit_position: position.0,
                    prepare_position: position.0,
                    timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
                };
                answers.send(Content::Checkpoint(checkpoint)).await?;
            }
        }
    }
    Err(Status::unavailable("the store closed"))
}
