//! The group-commit writer: one task per node. It drains every pending write, takes the
//! schema's write lock (`pg_advisory_xact_lock`) in one transaction, checks the writes
//! against the stream heads, gives the new events the next positions, inserts them with
//! one statement, commits, and only then replies. Every node's writer takes the same lock
//! until its commit, so positions are handed out and become visible in commit order.
//!
//! One request never fails the others of its group: a value PostgreSQL refuses splits the
//! group until the request carrying it is alone, and only that one is refused. A group
//! whose connection breaks (or does not answer within the statement timeout) is settled
//! on a new connection before anyone is answered: committed, not committed (tried once
//! more), or, when the database cannot be asked, answered as of unknown outcome.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use strata_core::{Error, Position};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use crate::commit::{Connection, Planned, TransactionError, was_committed};
use crate::config::PostgresConfig;
use crate::error::describe;
use crate::observe::{GroupCommit, Observers};
use crate::plan::{Operation, Outcome};

/// Shortest and longest wait before the writer tries a lost connection again.
const RECONNECT_WAIT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_WAIT_MAX: Duration = Duration::from_secs(2);

/// Yields to ready appenders before a group, at most (see [`gather`]).
const GATHER_YIELDS_MAX: usize = 8;

/// Tries of one group whose connection broke before it could have committed: the first,
/// and one more on a new connection.
const GROUP_ATTEMPTS_MAX: usize = 2;

/// A write and where its outcome goes.
pub(crate) struct Request {
    pub(crate) operation: Operation,
    pub(crate) reply: oneshot::Sender<Outcome>,
    /// The request's share of the queue's byte budget, given back once it is answered.
    pub(crate) queued: Option<OwnedSemaphorePermit>,
}

/// Why a group (or part of one) was not committed.
enum Failure {
    /// Certainly not committed: the append can be sent again as it is.
    NotCommitted(Error),
    /// The COMMIT may have reached the server and the outcome could not be checked.
    Unknown { error: Error, check: Error },
}

/// What one try of a group came to.
enum Attempt {
    Committed(Planned),
    /// PostgreSQL refused a value of the group; nothing was committed.
    Refused(tokio_postgres::Error),
    Failed(Failure),
}

struct Writer {
    config: PostgresConfig,
    session: Session,
    log_end: watch::Sender<Position>,
    observers: Observers,
}

/// The writer's connection, opened when needed.
struct Session {
    connection: Option<Connection>,
    /// Set after a failed connect: how long to wait before the next one.
    reconnect_wait: Option<Duration>,
}

/// Runs until every sender is gone.
pub(crate) async fn run(
    config: PostgresConfig,
    mut requests: mpsc::Receiver<Request>,
    log_end: watch::Sender<Position>,
    observers: Observers,
) {
    let mut writer = Writer {
        config,
        session: Session {
            connection: None,
            reconnect_wait: None,
        },
        log_end,
        observers,
    };
    while let Some(first) = requests.recv().await {
        gather(&requests).await;
        let batch = drain(&writer.config, first, &mut requests);
        let mut operations = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut queued = Vec::with_capacity(batch.len());
        for request in batch {
            operations.push(request.operation);
            replies.push(request.reply);
            queued.push(request.queued);
        }
        let outcomes = writer.commit(&operations).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        drop(queued);
    }
}

/// Moves the published end of the log forwards (never back).
pub(crate) fn advance(log_end: &watch::Sender<Position>, end: u64) {
    log_end.send_if_modified(|current| {
        let moved = end > current.0;
        if moved {
            *current = Position(end);
        }
        moved
    });
}

/// Lets appenders that are ready to run queue their requests before a group is drained:
/// the callers answered by the last commit are woken but may not have run yet, and a group
/// without them would cost them a commit of their own. Stops as soon as the queue stops
/// growing, so an idle writer loses a few microseconds at most.
async fn gather(requests: &mpsc::Receiver<Request>) {
    let mut queued = requests.len();
    for _ in 0..GATHER_YIELDS_MAX {
        tokio::task::yield_now().await;
        let now = requests.len();
        if now == queued {
            return;
        }
        queued = now;
    }
}

/// The first request and every one pending after it, within the group's bounds.
fn drain(
    config: &PostgresConfig,
    first: Request,
    requests: &mut mpsc::Receiver<Request>,
) -> Vec<Request> {
    let mut events = first.operation.event_count();
    let mut bytes = first.operation.size_bytes();
    let mut batch = vec![first];
    while events < config.group_events_max && bytes < config.group_bytes_max {
        let Ok(request) = requests.try_recv() else {
            break;
        };
        events += request.operation.event_count();
        bytes += request.operation.size_bytes();
        batch.push(request);
    }
    batch
}

impl Writer {
    /// Commits `operations` and answers each. A part that PostgreSQL refuses is halved
    /// and each half tried in order (later requests are planned against what earlier ones
    /// wrote), until the request that carries the refused value is alone.
    async fn commit(&mut self, operations: &[Operation]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(operations.len());
        let mut parts: VecDeque<Range<usize>> = VecDeque::new();
        parts.push_back(0..operations.len());
        while let Some(part) = parts.pop_front() {
            let started = Instant::now();
            match self.attempt(&operations[part.clone()]).await {
                Attempt::Committed(planned) => {
                    let part = &operations[part];
                    self.observers.committed(&GroupCommit {
                        requests: part.len(),
                        bytes: part.iter().map(|op| op.size_bytes() as u64).sum(),
                        duration: started.elapsed(),
                    });
                    outcomes.extend(planned.outcomes);
                }
                Attempt::Refused(_) if part.len() > 1 => {
                    let middle = part.start + part.len() / 2;
                    parts.push_front(middle..part.end);
                    parts.push_front(part.start..middle);
                }
                Attempt::Refused(error) => {
                    tracing::warn!(error = %describe(&error), "PostgreSQL refused one write");
                    outcomes.push(refused(&operations[part.start], &error));
                }
                Attempt::Failed(failure) => {
                    outcomes.extend(operations[part].iter().map(|op| failure.answer(op)));
                }
            }
        }
        outcomes
    }

    /// One group, tried again on a new connection if the first connection broke before
    /// the group could have committed.
    async fn attempt(&mut self, operations: &[Operation]) -> Attempt {
        let mut last_failure = None;
        for _ in 0..GROUP_ATTEMPTS_MAX {
            let connection = match self.session.get(&self.config).await {
                Ok(connection) => connection,
                Err(error) => return Attempt::Failed(Failure::NotCommitted(error)),
            };
            let mut planned = None;
            let timeout = self.config.statement_timeout;
            let running = crate::commit::run(connection, &self.config, operations, &mut planned);
            let broken = match tokio::time::timeout(timeout, running).await {
                Ok(Ok(())) => match planned {
                    Some(planned) => return self.committed(planned),
                    None => unreachable!("a group that commits was planned"),
                },
                Ok(Err(TransactionError::Refused(error))) => {
                    self.roll_back().await;
                    return Attempt::Refused(error);
                }
                Ok(Err(TransactionError::Failed(error))) => {
                    self.roll_back().await;
                    return Attempt::Failed(Failure::NotCommitted(error));
                }
                Ok(Err(TransactionError::Broken(error))) => error,
                Err(_) => Error::io(
                    "committing a group in PostgreSQL",
                    std::io::Error::other(format!("no answer within {timeout:?}")),
                ),
            };
            tracing::warn!(error = %broken, "the writer's PostgreSQL connection broke");
            let abandoned = self.session.connection.take().map(|open| open.backend);
            let Some(planned) = planned else {
                // Nothing was sent that could commit.
                last_failure = Some(Failure::NotCommitted(broken));
                continue;
            };
            let Some(written) = planned.written else {
                // The group wrote nothing: its answers stand.
                return Attempt::Committed(planned);
            };
            match self.settle(abandoned, &written).await {
                Ok(true) => return self.committed(planned),
                Ok(false) => last_failure = Some(Failure::NotCommitted(broken)),
                Err(check) => {
                    return Attempt::Failed(Failure::Unknown {
                        error: broken,
                        check,
                    });
                }
            }
        }
        Attempt::Failed(last_failure.unwrap_or(Failure::NotCommitted(Error::Closed)))
    }

    fn committed(&self, planned: Planned) -> Attempt {
        if let Some(written) = &planned.written {
            advance(&self.log_end, written.last_position + 1);
        }
        Attempt::Committed(planned)
    }

    /// Whether a group whose connection broke was committed, asked on a new connection
    /// (kept for the next group), within the statement timeout.
    async fn settle(
        &mut self,
        abandoned: Option<crate::commit::Backend>,
        written: &crate::commit::Written,
    ) -> Result<bool, Error> {
        let timeout = self.config.statement_timeout;
        let connection = self.session.get(&self.config).await?;
        let checking = was_committed(connection, &self.config, abandoned, written);
        match tokio::time::timeout(timeout, checking).await {
            Ok(Ok(committed)) => {
                tracing::info!(committed, "settled a group whose connection broke");
                Ok(committed)
            }
            Ok(Err(error)) => {
                self.session.connection = None;
                Err(error)
            }
            Err(_) => {
                self.session.connection = None;
                Err(Error::io(
                    "checking a group in PostgreSQL",
                    std::io::Error::other(format!("no answer within {timeout:?}")),
                ))
            }
        }
    }

    /// Ends the aborted transaction of a live connection; drops a connection that does
    /// not answer.
    async fn roll_back(&mut self) {
        let Some(connection) = &self.session.connection else {
            return;
        };
        let ending = connection.client.batch_execute("ROLLBACK");
        if !matches!(
            tokio::time::timeout(self.config.statement_timeout, ending).await,
            Ok(Ok(()))
        ) {
            self.session.connection = None;
        }
    }
}

impl Session {
    /// The open connection, or a new one. After a failed connect the next one waits a
    /// little longer each time, so a database that is down is not hammered.
    async fn get(&mut self, config: &PostgresConfig) -> Result<&Connection, Error> {
        if self
            .connection
            .as_ref()
            .is_some_and(|open| open.client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            if let Some(wait) = self.reconnect_wait {
                tokio::time::sleep(wait).await;
            }
            match Connection::open(config).await {
                Ok(opened) => {
                    self.connection = Some(opened);
                    self.reconnect_wait = None;
                }
                Err(error) => {
                    tracing::warn!(%error, "the writer cannot reach PostgreSQL");
                    let wait = self
                        .reconnect_wait
                        .map_or(RECONNECT_WAIT_MIN, |wait| wait * 2);
                    self.reconnect_wait = Some(wait.min(RECONNECT_WAIT_MAX));
                    return Err(Error::from(error));
                }
            }
        }
        match &self.connection {
            Some(connection) => Ok(connection),
            None => unreachable!("a connection was just opened"),
        }
    }
}

impl Failure {
    fn answer(&self, operation: &Operation) -> Outcome {
        let error = match self {
            Failure::NotCommitted(error) => Error::io(
                "writing to PostgreSQL (nothing was written; the write can be sent again)",
                std::io::Error::other(error.to_string()),
            ),
            Failure::Unknown { error, check } => Error::io(
                "writing to PostgreSQL (the connection broke after the commit was sent and \
                 the outcome could not be checked: the write may or may not have been \
                 committed; re-send it with the same event ids to find out)",
                std::io::Error::other(format!("{error}; checking it: {check}")),
            ),
        };
        failed_with(operation, error)
    }
}

/// The answer to the one request whose value PostgreSQL refused.
fn refused(operation: &Operation, error: &tokio_postgres::Error) -> Outcome {
    let detail = describe(error);
    let error = if error
        .code()
        .is_some_and(|code| code.code().starts_with("22"))
    {
        Error::InvalidArgument {
            reason: format!(
                "PostgreSQL cannot store a value of this write ({detail}); nothing was written"
            ),
        }
    } else {
        Error::io(
            "writing to PostgreSQL (it refused this write; nothing was written)",
            std::io::Error::other(detail),
        )
    };
    failed_with(operation, error)
}

fn failed_with(operation: &Operation, error: Error) -> Outcome {
    match operation {
        Operation::Append { .. } => Outcome::Append(Err(error)),
        Operation::Delete { .. } => Outcome::Delete(Err(error)),
        Operation::AppendMulti { .. } => Outcome::AppendMulti(Err(error)),
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
