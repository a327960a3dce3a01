//! The transfer saga: a process manager that follows `TransferRequested` events of the
//! `account` category and drives each transfer to an end — debit the source, credit the
//! target, and refund the source when the credit is refused.
//!
//! Every command it sends has an id derived from the transfer id and the step, and it
//! records each step on the transfer's own aggregate, so handling a request again (after a
//! restart from an older checkpoint) repeats nothing that was done: no double debit.
//!
//! Limits of that promise: an account recognises its newest
//! [`strata::COMMAND_IDS_REMEMBERED_DEFAULT`] command ids, so a step is safe to repeat as
//! long as its account has not taken that many newer commands in between (a restart
//! repeats only the requests after the last checkpoint, a few at most). A refused step
//! leaves no trace and is decided again on a repeat. Transfer ids must be unique: a
//! second request with a used id is reported as already finished.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata::{
    Bytes, CommandError, CommandId, EventStore, ExpectedRevision, Position, ProposedEvent,
    RecordedEvent, Repository, StreamName, Upcasters,
};
use strata_core::{
    EventFilter, FilterTarget, ReadStreamOptions, SubscribeFrom, SubscriptionItem, subscribe_to_all,
};
use uuid::Uuid;

use crate::account::{Account, AccountCommand, AccountEvent, Cents, TRANSFER_REQUESTED_EVENT_TYPE};
use crate::transfer::{Transfer, TransferCommand, TransferStatus};

/// Transfers handled between two checkpoints by default.
pub const CHECKPOINT_EVERY_TRANSFERS_DEFAULT: u64 = 100;

/// Conflict retries of the saga's commands: it races the clients requesting transfers on
/// the same account streams.
pub const SAGA_CONFLICT_RETRIES: u32 = 256;

/// Items buffered between the subscription's reader and the saga.
const SUBSCRIPTION_BUFFER_ITEMS: usize = 1_024;

/// The event type of the saga's checkpoint records.
const CHECKPOINT_EVENT_TYPE: &str = "$checkpoint";

/// The namespace of the saga's command ids (UUID v5 of `transfer-id/step`). Part of the
/// stored format: changing it would make a restarted saga repeat done steps.
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8d3e_61a0_42c7_4b5e_9f13_2a6c_d0b4_7e91);

/// One step of a transfer, each sent at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Debit,
    RecordDebit,
    Fail,
    Credit,
    Complete,
    Refund,
    Compensate,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::Debit => "debit",
            Step::RecordDebit => "record-debit",
            Step::Fail => "fail",
            Step::Credit => "credit",
            Step::Complete => "complete",
            Step::Refund => "refund",
            Step::Compensate => "compensate",
        };
        f.write_str(name)
    }
}

/// The id of `step` of transfer `transfer_id`: the same on every run.
pub fn step_command_id(transfer_id: &str, step: Step) -> CommandId {
    let name = format!("{transfer_id}/{step}");
    CommandId(Uuid::new_v5(&COMMAND_ID_NAMESPACE, name.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] strata_core::Error),

    #[error(transparent)]
    Toolkit(#[from] strata::Error),

    #[error("step {step} of transfer {transfer_id} was refused: {reason}; the saga stops here")]
    StepRefused {
        transfer_id: String,
        step: Step,
        reason: String,
    },

    #[error("checkpoint of saga {saga} cannot be read: {reason}")]
    Checkpoint { saga: String, reason: String },

    #[error("the subscription of saga {saga} ended before it caught up")]
    SubscriptionEnded { saga: String },
}

/// What the saga did with one transfer request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferReport {
    pub transfer_id: String,
    pub from: String,
    pub to: String,
    pub amount: Cents,
    pub status: TransferStatus,
    /// True when the transfer had already ended before this run saw it again.
    pub already_finished: bool,
}

#[derive(Serialize, Deserialize)]
struct CheckpointRecord {
    /// Every request up to and including this position was driven to its end.
    position: u64,
}

/// The transfer saga over a store, with its checkpoint in `$checkpoint-<name>`.
pub struct TransferSaga<S: ?Sized> {
    store: Arc<S>,
    name: String,
    accounts: Repository<Account, S>,
    transfers: Repository<Transfer, S>,
    upcasters: Upcasters,
    checkpoint_stream: StreamName,
    checkpoint_every_transfers: u64,
    position: Option<Position>,
    saved_position: Option<Position>,
    saved_revision: Option<u64>,
}

impl<S: EventStore + ?Sized> TransferSaga<S> {
    /// Loads saga `name` at its last checkpoint (or at the start when it has none).
    ///
    /// # Errors
    /// [`SagaError::Checkpoint`] for an unreadable checkpoint; an invalid name; storage
    /// errors.
    pub async fn load(store: Arc<S>, name: &str) -> Result<Self, SagaError> {
        let checkpoint_stream = StreamName::new(format!("$checkpoint-{name}"))?;
        let newest = store
            .read_stream(
                &checkpoint_stream,
                ReadStreamOptions::backwards().max_count(1),
            )
            .await?
            .into_events();
        let (position, saved_revision) = match newest.first() {
            Some(event) => {
                let record: CheckpointRecord =
                    serde_json::from_slice(&event.data).map_err(|error| SagaError::Checkpoint {
                        saga: name.to_owned(),
                        reason: error.to_string(),
                    })?;
                (Some(Position(record.position)), Some(event.revision.0))
            }
            None => (None, None),
        };
        Ok(Self {
            accounts: Repository::new(store.clone()).with_conflict_retries(SAGA_CONFLICT_RETRIES),
            transfers: Repository::new(store.clone()),
            store,
            name: name.to_owned(),
            upcasters: Upcasters::new(),
            checkpoint_stream,
            checkpoint_every_transfers: CHECKPOINT_EVERY_TRANSFERS_DEFAULT,
            position,
            saved_position: position,
            saved_revision,
        })
    }

    pub fn with_checkpoint_every_transfers(mut self, transfers: u64) -> Self {
        self.checkpoint_every_transfers = transfers.max(1);
        self
    }

    /// The position of the last event the saga has dealt with.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// Drives every transfer requested so far to its end, saving checkpoints on the way and
    /// at the end.
    ///
    /// # Errors
    /// Storage and toolkit errors, and [`SagaError::StepRefused`] for a step that must not
    /// be refused (a refund): the checkpoint stays before that request.
    pub async fn catch_up(&mut self) -> Result<Vec<TransferReport>, SagaError> {
        self.run(None).await
    }

    /// Handles at most `transfers_max` requests and returns without saving what came after
    /// the last periodic checkpoint — what a crash would leave behind.
    ///
    /// # Errors
    /// As [`TransferSaga::catch_up`].
    pub async fn process_at_most(
        &mut self,
        transfers_max: usize,
    ) -> Result<Vec<TransferReport>, SagaError> {
        self.run(Some(transfers_max)).await
    }

    async fn run(
        &mut self,
        transfers_max: Option<usize>,
    ) -> Result<Vec<TransferReport>, SagaError> {
        let from = self
            .position
            .map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let filter = EventFilter::prefixes(FilterTarget::StreamName, vec!["account-".to_owned()])?;
        let mut subscription = subscribe_to_all(
            self.store.clone(),
            from,
            Some(filter),
            SUBSCRIPTION_BUFFER_ITEMS,
        );
        let mut reports = Vec::new();
        let mut unsaved: u64 = 0;
        loop {
            if transfers_max.is_some_and(|max| reports.len() >= max) {
                return Ok(reports);
            }
            let Some(item) = subscription.next().await else {
                return Err(SagaError::SubscriptionEnded {
                    saga: self.name.clone(),
                });
            };
            match item? {
                SubscriptionItem::Event(event) => {
                    if event.event_type == TRANSFER_REQUESTED_EVENT_TYPE {
                        reports.push(self.handle_request(&event).await?);
                        unsaved += 1;
                    }
                    self.position = Some(event.position);
                    if unsaved >= self.checkpoint_every_transfers {
                        self.save_checkpoint().await?;
                        unsaved = 0;
                    }
                }
                SubscriptionItem::Checkpoint(position) => {
                    if self.position.is_none_or(|current| current < position) {
                        self.position = Some(position);
                    }
                }
                SubscriptionItem::CaughtUp => {
                    if self.position != self.saved_position {
                        self.save_checkpoint().await?;
                    }
                    return Ok(reports);
                }
            }
        }
    }

    async fn handle_request(&self, event: &RecordedEvent) -> Result<TransferReport, SagaError> {
        let AccountEvent::TransferRequested {
            transfer_id,
            to,
            amount,
        } = strata::decode_event::<AccountEvent>(event, &self.upcasters)?
        else {
            unreachable!("the event type was checked: {}", event.event_type);
        };
        let from = event
            .stream
            .as_str()
            .strip_prefix("account-")
            .unwrap_or(event.stream.as_str())
            .to_owned();
        let mut report = TransferReport {
            transfer_id,
            from,
            to,
            amount,
            status: TransferStatus::Pending,
            already_finished: false,
        };
        let status = self
            .transfers
            .load(&report.transfer_id)
            .await?
            .into_aggregate()
            .status()
            .clone();
        if status.is_finished() {
            report.status = status;
            report.already_finished = true;
            return Ok(report);
        }
        if status == TransferStatus::Pending {
            let debit = AccountCommand::Debit {
                transfer_id: report.transfer_id.clone(),
                amount,
            };
            let debited = self
                .account(&report, &report.from, Step::Debit, &debit)
                .await?;
            if let Err(reason) = debited {
                report.status = self
                    .record(&report, Step::Fail, TransferCommand::Fail { reason })
                    .await?;
                return Ok(report);
            }
            let record = TransferCommand::RecordDebit {
                from: report.from.clone(),
                to: report.to.clone(),
                amount,
            };
            self.record(&report, Step::RecordDebit, record).await?;
        }
        let credit = AccountCommand::Credit {
            transfer_id: report.transfer_id.clone(),
            amount,
        };
        report.status = match self
            .account(&report, &report.to, Step::Credit, &credit)
            .await?
        {
            Ok(()) => {
                self.record(&report, Step::Complete, TransferCommand::Complete)
                    .await?
            }
            Err(reason) => {
                let refund = AccountCommand::Refund {
                    transfer_id: report.transfer_id.clone(),
                    amount,
                };
                if let Err(refused) = self
                    .account(&report, &report.from, Step::Refund, &refund)
                    .await?
                {
                    return Err(SagaError::StepRefused {
                        transfer_id: report.transfer_id.clone(),
                        step: Step::Refund,
                        reason: refused,
                    });
                }
                self.record(
                    &report,
                    Step::Compensate,
                    TransferCommand::Compensate { reason },
                )
                .await?
            }
        };
        Ok(report)
    }

    /// Sends `step` to account `id` once: `Ok(Err(reason))` when the account refuses it.
    async fn account(
        &self,
        report: &TransferReport,
        id: &str,
        step: Step,
        command: &AccountCommand,
    ) -> Result<Result<(), String>, SagaError> {
        let command_id = step_command_id(&report.transfer_id, step);
        match self.accounts.execute_once(id, command_id, command).await {
            Ok(_) => Ok(Ok(())),
            Err(CommandError::Rejected(reason)) => Ok(Err(reason.to_string())),
            Err(CommandError::Failed(error)) => Err(error.into()),
            Err(other) => Err(SagaError::StepRefused {
                transfer_id: report.transfer_id.clone(),
                step,
                reason: other.to_string(),
            }),
        }
    }

    /// Records `step` on the transfer once; returns the transfer's status after it.
    async fn record(
        &self,
        report: &TransferReport,
        step: Step,
        command: TransferCommand,
    ) -> Result<TransferStatus, SagaError> {
        let command_id = step_command_id(&report.transfer_id, step);
        let refused = |reason: String| SagaError::StepRefused {
            transfer_id: report.transfer_id.clone(),
            step,
            reason,
        };
        match self
            .transfers
            .execute_once(&report.transfer_id, command_id, &command)
            .await
        {
            Ok(_) => {}
            Err(CommandError::Failed(error)) => return Err(error.into()),
            Err(other) => return Err(refused(other.to_string())),
        }
        let transfer = self.transfers.load(&report.transfer_id).await?;
        Ok(transfer.aggregate().status().clone())
    }

    async fn save_checkpoint(&mut self) -> Result<(), SagaError> {
        let Some(position) = self.position else {
            return Ok(());
        };
        let record = CheckpointRecord {
            position: position.0,
        };
        let data = serde_json::to_vec(&record).map_err(|error| SagaError::Checkpoint {
            saga: self.name.clone(),
            reason: error.to_string(),
        })?;
        let expected = self
            .saved_revision
            .map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        let event = ProposedEvent::json(CHECKPOINT_EVENT_TYPE, Bytes::from(data));
        let result = self
            .store
            .append(&self.checkpoint_stream, expected, vec![event])
            .await?;
        self.saved_revision = Some(result.current_revision.0);
        self.saved_position = Some(position);
        Ok(())
    }
}
