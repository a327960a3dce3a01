//! Opening one connection. A node has one for the writer, one for LISTEN, and a few that
//! readers share (`reader.rs`).

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::config::{PostgresConfig, describe_target};
use crate::error::{PostgresError, describe};

/// Opens one connection with `search_path` set to the store's schema. Its notifications
/// (if `notifications` is given) are forwarded there.
pub(crate) async fn connect(
    config: &PostgresConfig,
    notifications: Option<mpsc::UnboundedSender<String>>,
) -> Result<Client, PostgresError> {
    let parsed = config.validate()?;
    let (client, mut connection) =
        parsed
            .connect(NoTls)
            .await
            .map_err(|source| PostgresError::Unreachable {
                target: describe_target(&parsed),
                detail: describe(&source),
            })?;
    tokio::spawn(async move {
        let mut messages =
            futures::stream::poll_fn(move |context| connection.poll_message(context));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if let Some(sender) = &notifications {
                        let _ = sender.send(notification.payload().to_owned());
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "PostgreSQL connection closed");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("SET search_path TO {}", config.quoted_schema()))
        .await
        .map_err(PostgresError::query("setting the search path"))?;
    Ok(client)
}
