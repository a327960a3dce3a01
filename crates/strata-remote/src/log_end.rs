//! The durable end of the server's log as the adapter knows it: "just after the last event
//! seen", advanced by a live `$all` subscription and by the adapter's own writes and reads.

use std::sync::Arc;
use std::time::Duration;

use kurrentdb::{Client, StreamPosition, SubscribeToAllOptions, SubscriptionEvent};
use strata_core::Position;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::read_all::last_event_position;

/// How long the watcher waits before subscribing again after the server went away.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// Owns the background subscription; dropping it stops the subscription and ends every
/// receiver's `changed()` with an error (the store is closed).
pub(crate) struct LogEndWatcher {
    sender: Arc<watch::Sender<Position>>,
    task: JoinHandle<()>,
}

impl LogEndWatcher {
    /// Starts watching from `last`, the position of the last record when connecting.
    pub(crate) fn start(client: Client, last: Option<Position>) -> LogEndWatcher {
        let sender = Arc::new(watch::Sender::new(end_after(last)));
        let task = tokio::spawn(follow(client, Arc::clone(&sender)));
        LogEndWatcher { sender, task }
    }

    /// Moves the end past `position`, an event known to be durable; never moves it back.
    pub(crate) fn saw_event(&self, position: Position) {
        advance(&self.sender, Some(position));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Position> {
        self.sender.subscribe()
    }
}

impl Drop for LogEndWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn end_after(last: Option<Position>) -> Position {
    last.map_or(Position::START, |position| {
        Position(position.0.saturating_add(1))
    })
}

fn advance(sender: &watch::Sender<Position>, last: Option<Position>) {
    let end = end_after(last);
    sender.send_if_modified(|current| {
        let moved = end > *current;
        if moved {
            *current = end;
        }
        moved
    });
}

/// Follows `$all` live for as long as the store exists, resubscribing after failures.
async fn follow(client: Client, sender: Arc<watch::Sender<Position>>) {
    let options = SubscribeToAllOptions::default().position(StreamPosition::End);
    loop {
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            match subscription.next_subscription_event().await {
                // Events committed between connecting and this confirmation are not
                // delivered live: read where the log ends now.
                Ok(SubscriptionEvent::Confirmed(_)) => {
                    if let Ok(last) = last_event_position(&client).await {
                        advance(&sender, last);
                    }
                }
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    let position = resolved
                        .event
                        .as_ref()
                        .map(|event| Position(event.position.commit));
                    advance(&sender, position);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "the $all subscription behind watch_log_end ended; resubscribing");
                    break;
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}
