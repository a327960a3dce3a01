//! The transfer as one atomic two-stream append: the debit of the source and the credit of
//! the target are decided on both accounts as loaded, then appended together
//! ([`EventStore::append_multi`]), each with the revision its decision saw. Both events
//! become visible at once, at consecutive positions, or neither does: no moment exists
//! where the money has left one account and not reached the other, and no compensation is
//! ever needed.
//!
//! When both accounts live in one store, this is the way to move money. The saga
//! ([`crate::TransferSaga`]) stays for the case this cannot serve: accounts kept by
//! different services (or stores), where each step must be its own append.
//!
//! Re-sends: the events' ids derive from the transfer id (as the saga's steps do), so a
//! client that lost the answer and sends the same request again (same expected revisions)
//! gets the original result and nothing is appended twice. A conflict (another command
//! changed an account between load and append) is a refusal that wrote nothing: the
//! transfer is loaded and decided again.

use serde_json::Value;
use strata::{
    Aggregate, Bytes, CommandId, EventStore, ExpectedRevision, Loaded, Position, ProposedEvent,
    Repository, stream_name,
};
use strata_core::{AppendPart, Error as StoreError};

use crate::account::{Account, AccountCommand, AccountError, AccountEvent, Cents};
use crate::saga::{Step, step_command_id};

/// Decisions retried by default when another writer wins the race on one of the accounts.
pub const ATOMIC_TRANSFER_RETRIES: u32 = 256;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AtomicTransferError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Toolkit(#[from] strata::Error),

    #[error("a transfer needs two different accounts, not {account} twice")]
    SameAccount { account: String },

    #[error("event {event_type} cannot be encoded: {reason}")]
    Encode { event_type: String, reason: String },

    #[error("transfer {transfer_id} lost the race on its accounts {attempts} times in a row")]
    Contended { transfer_id: String, attempts: u32 },
}

/// A transfer that was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtomicTransfer {
    /// Position of the credit, the append's last event (the debit is just before it).
    pub position: Position,
    /// Decisions made, 1 when no other writer interfered.
    pub attempts: u32,
}

/// Moves `amount` from account `from` to account `to` in one atomic append.
/// `Ok(Err(reason))` when an account refuses (insufficient funds, closed, unknown): then
/// nothing was written.
///
/// # Errors
/// [`AtomicTransferError::SameAccount`], [`AtomicTransferError::Contended`] after
/// `retries` lost races, and storage errors.
pub async fn transfer_atomically<S: EventStore + ?Sized>(
    accounts: &Repository<Account, S>,
    store: &S,
    transfer_id: &str,
    from: &str,
    to: &str,
    amount: Cents,
    retries: u32,
) -> Result<Result<AtomicTransfer, AccountError>, AtomicTransferError> {
    if from == to {
        return Err(AtomicTransferError::SameAccount {
            account: from.to_owned(),
        });
    }
    let debit = AccountCommand::Debit {
        transfer_id: transfer_id.to_owned(),
        amount,
    };
    let credit = AccountCommand::Credit {
        transfer_id: transfer_id.to_owned(),
        amount,
    };
    for attempt in 1..=retries.saturating_add(1) {
        let source = accounts.load(from).await?;
        let target = accounts.load(to).await?;
        let debited = match source.aggregate().handle(&debit) {
            Ok(events) => events,
            Err(reason) => return Ok(Err(reason)),
        };
        let credited = match target.aggregate().handle(&credit) {
            Ok(events) => events,
            Err(reason) => return Ok(Err(reason)),
        };
        let parts = vec![
            part(
                from,
                &source,
                &debited,
                step_command_id(transfer_id, Step::Debit),
            )?,
            part(
                to,
                &target,
                &credited,
                step_command_id(transfer_id, Step::Credit),
            )?,
        ];
        match store.append_multi(parts).await {
            Ok(result) => {
                return Ok(Ok(AtomicTransfer {
                    position: result.position,
                    attempts: attempt,
                }));
            }
            Err(StoreError::WrongExpectedRevision { .. }) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(AtomicTransferError::Contended {
        transfer_id: transfer_id.to_owned(),
        attempts: retries.saturating_add(1),
    })
}

/// The part of the append that writes `events` to account `id`, expecting the revision
/// the decision was made at.
fn part(
    id: &str,
    loaded: &Loaded<Account>,
    events: &[AccountEvent],
    command_id: CommandId,
) -> Result<AppendPart, AtomicTransferError> {
    let expected = loaded
        .revision()
        .map_or(ExpectedRevision::NoStream, |revision| {
            ExpectedRevision::Exact(revision.0)
        });
    let proposed = events
        .iter()
        .enumerate()
        .map(|(index, event)| encode(event, command_id, index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppendPart::write(
        stream_name::<Account>(id)?,
        expected,
        proposed,
    ))
}

/// An account event as the toolkit's repository stores it: JSON data under the variant's
/// name as event type, and metadata with the schema version and the command id (so the
/// repository remembers the command as done).
fn encode(
    event: &AccountEvent,
    command_id: CommandId,
    index: usize,
) -> Result<ProposedEvent, AtomicTransferError> {
    use strata::DomainEvent as _;
    let event_type = event.event_type();
    let failed = |reason: String| AtomicTransferError::Encode {
        event_type: event_type.to_owned(),
        reason,
    };
    let data = match serde_json::to_value(event).map_err(|error| failed(error.to_string()))? {
        Value::Object(object) if object.len() == 1 => object
            .into_iter()
            .next()
            .map(|(_, data)| data)
            .unwrap_or(Value::Null),
        Value::String(_) => Value::Null,
        other => return Err(failed(format!("unexpected serde form {other}"))),
    };
    let metadata = serde_json::json!({
        "schemaVersion": event.schema_version(),
        "commandId": command_id,
    });
    Ok(
        ProposedEvent::json(event_type, Bytes::from(data.to_string()))
            .with_id(command_id.event_id(index))
            .with_metadata(Bytes::from(metadata.to_string())),
    )
}
