//! The account aggregate: opened with a balance, debited (never below zero), credited,
//! refunded, closed; and the place where a transfer is requested.

use serde::{Deserialize, Serialize};
use strata::{Aggregate, DomainEvent};

/// Money in cents, to keep sums exact. Unsigned: a balance below zero cannot be stored.
pub type Cents = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountCommand {
    Open {
        initial_balance: Cents,
    },
    /// Asks the transfer saga to move `amount` from this account to `to`.
    RequestTransfer {
        transfer_id: String,
        to: String,
        amount: Cents,
    },
    Debit {
        transfer_id: String,
        amount: Cents,
    },
    Credit {
        transfer_id: String,
        amount: Cents,
    },
    /// Gives back a debit whose transfer could not be credited. Accepted even on a closed
    /// account: the money has nowhere else to go.
    Refund {
        transfer_id: String,
        amount: Cents,
    },
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened {
        initial_balance: Cents,
    },
    TransferRequested {
        transfer_id: String,
        to: String,
        amount: Cents,
    },
    Debited {
        transfer_id: String,
        amount: Cents,
    },
    Credited {
        transfer_id: String,
        amount: Cents,
    },
    Refunded {
        transfer_id: String,
        amount: Cents,
    },
    Closed,
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::TransferRequested { .. } => TRANSFER_REQUESTED_EVENT_TYPE,
            AccountEvent::Debited { .. } => "Debited",
            AccountEvent::Credited { .. } => "Credited",
            AccountEvent::Refunded { .. } => "Refunded",
            AccountEvent::Closed => "Closed",
        }
    }
}

/// The stored event type the transfer saga reacts to.
pub const TRANSFER_REQUESTED_EVENT_TYPE: &str = "TransferRequested";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("there is no such account")]
    NotOpen,
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is closed")]
    Closed,
    #[error("an amount must be at least 1 cent")]
    ZeroAmount,
    #[error("insufficient funds: the balance is {balance} cents, the debit {amount} cents")]
    InsufficientFunds { balance: Cents, amount: Cents },
    #[error("the balance would exceed the largest amount an account can hold")]
    Overflow,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    opened: bool,
    closed: bool,
    balance: Cents,
}

impl Account {
    pub fn balance(&self) -> Cents {
        self.balance
    }

    pub fn is_open(&self) -> bool {
        self.opened && !self.closed
    }

    fn usable(&self) -> Result<(), AccountError> {
        if !self.opened {
            return Err(AccountError::NotOpen);
        }
        if self.closed {
            return Err(AccountError::Closed);
        }
        Ok(())
    }

    fn receivable(&self, amount: Cents) -> Result<(), AccountError> {
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        self.balance
            .checked_add(amount)
            .map(|_| ())
            .ok_or(AccountError::Overflow)
    }
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        let event = match command {
            AccountCommand::Open { initial_balance } => {
                if self.opened {
                    return Err(AccountError::AlreadyOpen);
                }
                AccountEvent::Opened {
                    initial_balance: *initial_balance,
                }
            }
            AccountCommand::RequestTransfer {
                transfer_id,
                to,
                amount,
            } => {
                self.usable()?;
                if *amount == 0 {
                    return Err(AccountError::ZeroAmount);
                }
                AccountEvent::TransferRequested {
                    transfer_id: transfer_id.clone(),
                    to: to.clone(),
                    amount: *amount,
                }
            }
            AccountCommand::Debit {
                transfer_id,
                amount,
            } => {
                self.usable()?;
                if *amount == 0 {
                    return Err(AccountError::ZeroAmount);
                }
                if *amount > self.balance {
                    return Err(AccountError::InsufficientFunds {
                        balance: self.balance,
                        amount: *amount,
                    });
                }
                AccountEvent::Debited {
                    transfer_id: transfer_id.clone(),
                    amount: *amount,
                }
            }
            AccountCommand::Credit {
                transfer_id,
                amount,
            } => {
                self.usable()?;
                self.receivable(*amount)?;
                AccountEvent::Credited {
                    transfer_id: transfer_id.clone(),
                    amount: *amount,
                }
            }
            AccountCommand::Refund {
                transfer_id,
                amount,
            } => {
                if !self.opened {
                    return Err(AccountError::NotOpen);
                }
                self.receivable(*amount)?;
                AccountEvent::Refunded {
                    transfer_id: transfer_id.clone(),
                    amount: *amount,
                }
            }
            AccountCommand::Close => {
                self.usable()?;
                AccountEvent::Closed
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { initial_balance } => {
                self.opened = true;
                self.balance = *initial_balance;
            }
            AccountEvent::TransferRequested { .. } => {}
            AccountEvent::Debited { amount, .. } => self.balance -= amount,
            AccountEvent::Credited { amount, .. } | AccountEvent::Refunded { amount, .. } => {
                self.balance += amount;
            }
            AccountEvent::Closed => self.closed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[AccountEvent]) -> Account {
        let mut account = Account::default();
        for event in events {
            account.apply(event);
        }
        account
    }

    fn opened(balance: Cents) -> Account {
        given(&[AccountEvent::Opened {
            initial_balance: balance,
        }])
    }

    fn debit(amount: Cents) -> AccountCommand {
        AccountCommand::Debit {
            transfer_id: "t".to_owned(),
            amount,
        }
    }

    fn credit(amount: Cents) -> AccountCommand {
        AccountCommand::Credit {
            transfer_id: "t".to_owned(),
            amount,
        }
    }

    #[test]
    fn a_debit_up_to_the_balance_is_accepted() {
        let account = opened(100);
        let events = account
            .handle(&debit(100))
            .expect("debit of the whole balance");
        let mut after = account.clone();
        after.apply(&events[0]);
        assert_eq!(after.balance(), 0);
    }

    #[test]
    fn a_debit_beyond_the_balance_is_refused() {
        assert_eq!(
            opened(100).handle(&debit(101)),
            Err(AccountError::InsufficientFunds {
                balance: 100,
                amount: 101
            })
        );
    }

    #[test]
    fn zero_amounts_are_refused() {
        assert_eq!(opened(5).handle(&debit(0)), Err(AccountError::ZeroAmount));
        assert_eq!(opened(5).handle(&credit(0)), Err(AccountError::ZeroAmount));
    }

    #[test]
    fn a_missing_account_refuses_everything_but_open() {
        let missing = Account::default();
        assert_eq!(missing.handle(&credit(1)), Err(AccountError::NotOpen));
        assert_eq!(missing.handle(&debit(1)), Err(AccountError::NotOpen));
        assert!(
            missing
                .handle(&AccountCommand::Open { initial_balance: 3 })
                .is_ok()
        );
    }

    #[test]
    fn a_closed_account_refuses_credits_but_takes_refunds() {
        let closed = given(&[
            AccountEvent::Opened { initial_balance: 7 },
            AccountEvent::Closed,
        ]);
        assert_eq!(closed.handle(&credit(1)), Err(AccountError::Closed));
        assert_eq!(closed.handle(&debit(1)), Err(AccountError::Closed));
        let refund = AccountCommand::Refund {
            transfer_id: "t".to_owned(),
            amount: 1,
        };
        assert!(closed.handle(&refund).is_ok());
    }

    #[test]
    fn opening_twice_is_refused() {
        assert_eq!(
            opened(1).handle(&AccountCommand::Open { initial_balance: 1 }),
            Err(AccountError::AlreadyOpen)
        );
    }

    #[test]
    fn a_credit_that_would_overflow_is_refused() {
        assert_eq!(
            opened(Cents::MAX).handle(&credit(1)),
            Err(AccountError::Overflow)
        );
    }
}
