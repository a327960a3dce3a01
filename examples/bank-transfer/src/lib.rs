//! Strata example: bank accounts that can never go negative, and two ways to move money
//! between them.
//!
//! - [`transfer_atomically`]: the debit and the credit as one atomic two-stream append
//!   (docs/MULTI_STREAM.md): both happen or neither does. The way when both accounts are in
//!   one store.
//! - [`TransferSaga`]: the alternative for accounts kept by different services, where each
//!   step is its own append: it debits one account, credits another and compensates when
//!   the credit is refused.
//!
//! - [`Account`] (stream `account-<id>`) is where money lives and where a transfer is
//!   requested ([`AccountCommand::RequestTransfer`]).
//! - [`TransferSaga`] follows the `TransferRequested` events from a catch-up subscription
//!   with its own durable checkpoint, and records each transfer's progress on a
//!   [`Transfer`] aggregate (stream `transfer-<id>`).
#![forbid(unsafe_code)]

mod account;
mod atomic;
mod saga;
mod transfer;

pub use account::{Account, AccountCommand, AccountError, AccountEvent, Cents};
pub use atomic::{
    ATOMIC_TRANSFER_RETRIES, AtomicTransfer, AtomicTransferError, transfer_atomically,
};
pub use saga::{
    CHECKPOINT_EVERY_TRANSFERS_DEFAULT, SAGA_CONFLICT_RETRIES, SagaError, Step, TransferReport,
    TransferSaga, step_command_id,
};
pub use transfer::{Transfer, TransferCommand, TransferStatus};
