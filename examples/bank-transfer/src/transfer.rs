//! The transfer aggregate: the saga's own record of how far one transfer got, in the stream
//! `transfer-<id>`.

use serde::{Deserialize, Serialize};
use strata::{Aggregate, DomainEvent};

use crate::account::Cents;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferCommand {
    RecordDebit {
        from: String,
        to: String,
        amount: Cents,
    },
    /// The source refused the debit: nothing moved.
    Fail {
        reason: String,
    },
    Complete,
    /// The target refused the credit and the source got its money back.
    Compensate {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferEvent {
    SourceDebited {
        from: String,
        to: String,
        amount: Cents,
    },
    TransferFailed {
        reason: String,
    },
    TransferCompleted,
    TransferCompensated {
        reason: String,
    },
}

impl DomainEvent for TransferEvent {
    fn event_type(&self) -> &'static str {
        match self {
            TransferEvent::SourceDebited { .. } => "SourceDebited",
            TransferEvent::TransferFailed { .. } => "TransferFailed",
            TransferEvent::TransferCompleted => "TransferCompleted",
            TransferEvent::TransferCompensated { .. } => "TransferCompensated",
        }
    }
}

/// Where a transfer stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferStatus {
    /// Requested; nothing moved yet.
    #[default]
    Pending,
    /// The source was debited; the target is not credited yet.
    Debited,
    Completed,
    /// The debit was refused; nothing moved.
    Failed {
        reason: String,
    },
    /// The credit was refused; the source was refunded.
    Compensated {
        reason: String,
    },
}

impl TransferStatus {
    pub fn is_finished(&self) -> bool {
        !matches!(self, TransferStatus::Pending | TransferStatus::Debited)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("the transfer is {status:?}, which does not allow this step")]
    WrongStep { status: TransferStatus },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    status: TransferStatus,
}

impl Transfer {
    pub fn status(&self) -> &TransferStatus {
        &self.status
    }
}

impl Aggregate for Transfer {
    const CATEGORY: &'static str = "transfer";
    type Command = TransferCommand;
    type Event = TransferEvent;
    type Error = TransferError;

    fn handle(&self, command: &TransferCommand) -> Result<Vec<TransferEvent>, TransferError> {
        let wrong_step = || TransferError::WrongStep {
            status: self.status.clone(),
        };
        let event = match (command, &self.status) {
            (TransferCommand::RecordDebit { from, to, amount }, TransferStatus::Pending) => {
                TransferEvent::SourceDebited {
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                }
            }
            (TransferCommand::Fail { reason }, TransferStatus::Pending) => {
                TransferEvent::TransferFailed {
                    reason: reason.clone(),
                }
            }
            (TransferCommand::Complete, TransferStatus::Debited) => {
                TransferEvent::TransferCompleted
            }
            (TransferCommand::Compensate { reason }, TransferStatus::Debited) => {
                TransferEvent::TransferCompensated {
                    reason: reason.clone(),
                }
            }
            _ => return Err(wrong_step()),
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &TransferEvent) {
        self.status = match event {
            TransferEvent::SourceDebited { .. } => TransferStatus::Debited,
            TransferEvent::TransferFailed { reason } => TransferStatus::Failed {
                reason: reason.clone(),
            },
            TransferEvent::TransferCompleted => TransferStatus::Completed,
            TransferEvent::TransferCompensated { reason } => TransferStatus::Compensated {
                reason: reason.clone(),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_completes_only_after_its_debit() {
        let pending = Transfer::default();
        assert!(pending.handle(&TransferCommand::Complete).is_err());
        let debit = TransferCommand::RecordDebit {
            from: "a".to_owned(),
            to: "b".to_owned(),
            amount: 5,
        };
        let mut transfer = pending.clone();
        transfer.apply(&pending.handle(&debit).expect("debit recorded")[0]);
        assert_eq!(transfer.status(), &TransferStatus::Debited);
        let done = transfer.handle(&TransferCommand::Complete).expect("done");
        transfer.apply(&done[0]);
        assert!(transfer.status().is_finished());
        assert!(transfer.handle(&TransferCommand::Complete).is_err());
    }
}
