//! Following commits of every node: a LISTEN connection advances the local view of the log
//! end on each notification, and a poll does the same in case a notification was missed
//! (a dropped connection, another node's crash between commit and delivery).

use std::sync::Arc;

use strata_core::Position;
use tokio::sync::{mpsc, watch};

use crate::config::PostgresConfig;
use crate::connect::{Role, connect};
use crate::reader::Readers;
use crate::writer::advance;

/// Runs until the store is dropped (the task is aborted).
pub(crate) async fn run(
    config: PostgresConfig,
    readers: Arc<Readers>,
    log_end: watch::Sender<Position>,
) {
    let mut poll = tokio::time::interval(config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listening: Option<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>)> = None;
    loop {
        let notified = async {
            match listening.as_mut() {
                Some((_, notifications)) => notifications.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            payload = notified => match payload {
                Some(payload) => {
                    if let Some(end) = end_of_this_schema(&config, &payload) {
                        advance(&log_end, end);
                    }
                }
                None => listening = None,
            },
            _ = poll.tick() => {
                if listening.as_ref().is_none_or(|(client, _)| client.is_closed()) {
                    listening = listen(&config).await;
                }
                poll_end(&readers, &log_end).await;
            }
        }
    }
}

/// The log end a notification carries, if it is about this store's schema.
fn end_of_this_schema(config: &PostgresConfig, payload: &str) -> Option<u64> {
    let (end, schema) = payload.split_once(' ')?;
    if schema != config.schema {
        return None;
    }
    end.parse().ok()
}

async fn listen(
    config: &PostgresConfig,
) -> Option<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = match connect(config, Role::Listener, Some(sender)).await {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "cannot open the LISTEN connection; polling meanwhile");
            return None;
        }
    };
    let channel = format!("\"{}\"", config.channel().replace('"', "\"\""));
    let statement = format!("LISTEN {channel}");
    let listening = client.batch_execute(&statement);
    match tokio::time::timeout(config.statement_timeout, listening).await {
        Ok(Ok(())) => Some((client, receiver)),
        Ok(Err(error)) => {
            tracing::warn!(%error, "LISTEN failed; polling meanwhile");
            None
        }
        Err(_) => {
            tracing::warn!("LISTEN did not answer in time; polling meanwhile");
            None
        }
    }
}

async fn poll_end(readers: &Readers, log_end: &watch::Sender<Position>) {
    let last = readers
        .run(|reader| async move { reader.last_position().await })
        .await;
    match last {
        Ok(Some(last)) => advance(log_end, last.0 + 1),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "cannot poll the end of the log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::notification_payload;

    #[test]
    fn notifications_of_another_schema_on_a_shared_channel_are_ignored() {
        let ours = PostgresConfig::new("postgres://h/db").with_schema("shop");
        let theirs = PostgresConfig::new("postgres://h/db").with_schema("shop two");
        assert_eq!(
            end_of_this_schema(&ours, &notification_payload(&ours, 42)),
            Some(42)
        );
        assert_eq!(
            end_of_this_schema(&ours, &notification_payload(&theirs, 42)),
            None
        );
        assert_eq!(end_of_this_schema(&ours, "garbage"), None);
    }
}
