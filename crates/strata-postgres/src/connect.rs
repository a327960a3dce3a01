//! Opening one connection. A node has one for the writer, one for LISTEN, and a few that
//! readers share (`reader.rs`). Every session is named after the node and its role, and
//! carries the settings that keep a hung node or a dead network from holding PostgreSQL
//! resources: TCP keepalives on both ends, `idle_in_transaction_session_timeout`, and a
//! server-side `statement_timeout` as a backstop to the node's own timeouts.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::config::{PostgresConfig, describe_target};
use crate::error::{PostgresError, describe};

/// Idle time before the first TCP keepalive probe, on both ends of every connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before a connection counts as dead: a vanished peer is noticed
/// after about 10 + 3 × 5 = 25 seconds.
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the node drops the connection
/// (Linux only; the keepalives above cover idle connections).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(25);
/// PostgreSQL ends a statement of Strata's sessions after this many times the node's own
/// timeout: normally the node gives up first and ends the session itself.
const SERVER_STATEMENT_TIMEOUT_FACTOR: u32 = 2;

/// What a session is for; part of its `application_name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Opening the store: migrations, which may take long, so no statement timeout.
    Migration,
    Writer,
    Reader,
    Listener,
    /// Membership and the leader's session lock (`cluster.rs`).
    Cluster,
    /// A scavenge (`scavenge.rs`): its `VACUUM` may take long, so no statement timeout.
    Scavenge,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Migration => "migration",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Listener => "listener",
            Role::Cluster => "cluster",
            Role::Scavenge => "scavenge",
        }
    }
}

/// The `application_name` of this node's sessions of `role`.
pub(crate) fn application_name(config: &PostgresConfig, role: Role) -> String {
    format!("{} {}", config.application_name, role.name())
}

/// Opens one connection with `search_path` set to the store's schema and the session
/// settings of `role`. Its notifications (if `notifications` is given) are forwarded there.
pub(crate) async fn connect(
    config: &PostgresConfig,
    role: Role,
    notifications: Option<mpsc::UnboundedSender<String>>,
) -> Result<Client, PostgresError> {
    let mut parsed = config.validate()?;
    parsed
        .connect_timeout(config.connect_timeout)
        .application_name(application_name(config, role))
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    let target = describe_target(&parsed);
    let unreachable = |detail: String| PostgresError::Unreachable {
        target: target.clone(),
        detail,
    };
    let connecting = tokio::time::timeout(config.connect_timeout, parsed.connect(NoTls));
    let (client, mut connection) = connecting
        .await
        .map_err(|_| unreachable(format!("no answer within {:?}", config.connect_timeout)))?
        .map_err(|source| unreachable(describe(&source)))?;
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
    let settings = session_settings(config, role);
    tokio::time::timeout(config.connect_timeout, client.batch_execute(&settings))
        .await
        .map_err(|_| unreachable(format!("no answer within {:?}", config.connect_timeout)))?
        .map_err(PostgresError::query("setting up the session"))?;
    Ok(client)
}

/// The `SET` statements every session of `role` starts with (one round trip).
fn session_settings(config: &PostgresConfig, role: Role) -> String {
    let mut settings = format!(
        "SET search_path TO {};
         SET idle_in_transaction_session_timeout = {};
         SET tcp_keepalives_idle = {};
         SET tcp_keepalives_interval = {};
         SET tcp_keepalives_count = {};",
        config.quoted_schema(),
        milliseconds(config.idle_in_transaction_timeout),
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES,
    );
    if !matches!(role, Role::Migration | Role::Scavenge) {
        let server_timeout = config
            .statement_timeout
            .saturating_mul(SERVER_STATEMENT_TIMEOUT_FACTOR);
        settings.push_str(&format!(
            "SET statement_timeout = {};",
            milliseconds(server_timeout)
        ));
    }
    settings
}

/// A duration as PostgreSQL's default unit for timeouts, at least 1 (0 turns them off).
fn milliseconds(duration: Duration) -> u128 {
    duration.as_millis().clamp(1, i32::MAX as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_migration_session_runs_without_a_statement_timeout() {
        let mut config = PostgresConfig::new("postgres://h/db").with_schema("s");
        config.statement_timeout = Duration::from_secs(3);
        config.idle_in_transaction_timeout = Duration::from_millis(1_500);
        let writer = session_settings(&config, Role::Writer);
        assert!(writer.contains("statement_timeout = 6000;"), "{writer}");
        assert!(
            writer.contains("idle_in_transaction_session_timeout = 1500;"),
            "{writer}"
        );
        let migration = session_settings(&config, Role::Migration);
        assert!(!migration.contains("SET statement_timeout"), "{migration}");
        assert!(migration.contains("idle_in_transaction_session_timeout"));
    }

    #[test]
    fn sessions_are_named_after_the_node_and_their_role() {
        let mut config = PostgresConfig::new("postgres://h/db");
        config.application_name = "node-a".to_owned();
        assert_eq!(application_name(&config, Role::Writer), "node-a writer");
        assert_eq!(application_name(&config, Role::Listener), "node-a listener");
    }
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod database_tests;
