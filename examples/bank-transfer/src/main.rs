//! Bank transfers on an embedded Strata store in a temporary directory: accounts, atomic
//! transfers (debit and credit in one two-stream append) one by one and in a concurrent
//! burst, the saga as the alternative for accounts kept by different services (it
//! completes, fails or compensates), and the proof that money is conserved.

use std::sync::Arc;

use anyhow::Context;
use bank_transfer::{
    ATOMIC_TRANSFER_RETRIES, Account, AccountCommand, Cents, SAGA_CONFLICT_RETRIES, TransferReport,
    TransferSaga, TransferStatus, transfer_atomically,
};
use strata::{CommandError, Repository};
use strata_engine::{Config, Store};

const ACCOUNTS: [(&str, Cents); 4] = [
    ("alice", dollars(100)),
    ("bob", dollars(50)),
    ("carol", dollars(20)),
    ("dave", 0),
];

const CONCURRENT_CLIENTS: usize = 4;
const TRANSFERS_PER_CLIENT: usize = 10;

const fn dollars(amount: Cents) -> Cents {
    amount * 100
}

fn money(cents: Cents) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

async fn request(
    accounts: &Repository<Account, Store>,
    transfer_id: &str,
    from: &str,
    to: &str,
    amount: Cents,
) -> anyhow::Result<()> {
    let command = AccountCommand::RequestTransfer {
        transfer_id: transfer_id.to_owned(),
        to: to.to_owned(),
        amount,
    };
    match accounts.execute(from, &command).await {
        Ok(_) => println!(
            "{transfer_id}: {from} asks to send {} to {to}",
            money(amount)
        ),
        Err(CommandError::Rejected(reason)) => {
            println!("{transfer_id}: {from} cannot even ask: {reason}");
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

async fn transfer(
    accounts: &Repository<Account, Store>,
    store: &Store,
    transfer_id: &str,
    from: &str,
    to: &str,
    amount: Cents,
) -> anyhow::Result<bool> {
    let what = format!("{transfer_id}: {from} → {to} {}", money(amount));
    match transfer_atomically(accounts, store, transfer_id, from, to, amount, 0).await? {
        Ok(done) => {
            println!(
                "  {what}: done, debit and credit appended together (position {})",
                done.position.0
            );
            Ok(true)
        }
        Err(reason) => {
            println!("  {what}: refused ({reason}); nothing written, nothing to compensate");
            Ok(false)
        }
    }
}

fn describe(report: &TransferReport) -> String {
    let what = format!(
        "{}: {} → {} {}",
        report.transfer_id,
        report.from,
        report.to,
        money(report.amount)
    );
    match &report.status {
        TransferStatus::Completed => format!("{what}: done"),
        TransferStatus::Failed { reason } => format!("{what}: not debited ({reason})"),
        TransferStatus::Compensated { reason } => {
            format!(
                "{what}: credit refused ({reason}); {} refunded",
                report.from
            )
        }
        other => format!("{what}: left at {other:?}"),
    }
}

async fn total(accounts: &Repository<Account, Store>) -> anyhow::Result<Cents> {
    let mut sum: Cents = 0;
    for (id, _) in ACCOUNTS {
        sum += accounts.load(id).await?.aggregate().balance();
    }
    Ok(sum)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store: Arc<Store> =
        Store::open(dir.path(), Config::default()).context("opening the store")?;
    println!("Opened an embedded store in {}", dir.path().display());
    let accounts = Arc::new(
        Repository::<Account, Store>::new(store.clone())
            .with_conflict_retries(SAGA_CONFLICT_RETRIES),
    );

    for (id, balance) in ACCOUNTS {
        let open = AccountCommand::Open {
            initial_balance: balance,
        };
        accounts.execute(id, &open).await?;
        println!("opened {id} with {}", money(balance));
    }
    let total_before = total(&accounts).await?;
    println!("money in the bank: {}", money(total_before));

    println!("\nTransfers, each one atomic append of the debit and the credit:");
    transfer(&accounts, &store, "t-1", "alice", "bob", dollars(30)).await?;
    transfer(&accounts, &store, "t-2", "carol", "alice", dollars(500)).await?;
    transfer(&accounts, &store, "t-3", "bob", "erin", dollars(10)).await?;
    accounts.execute("dave", &AccountCommand::Close).await?;
    println!("  dave closes his account");
    transfer(&accounts, &store, "t-4", "alice", "dave", dollars(5)).await?;

    println!(
        "\n{CONCURRENT_CLIENTS} clients now make {TRANSFERS_PER_CLIENT} atomic transfers each, at once:"
    );
    let mut clients = Vec::new();
    for client in 0..CONCURRENT_CLIENTS {
        let accounts = accounts.clone();
        let store = store.clone();
        clients.push(tokio::spawn(async move {
            let (mut done, mut attempts) = (0_usize, 0_u32);
            for index in 0..TRANSFERS_PER_CLIENT {
                let from = ACCOUNTS[(client + index) % 3].0;
                let to = ACCOUNTS[(client + index + 1) % 3].0;
                let amount = Cents::try_from(1 + (client * 7 + index * 13) % 40).unwrap_or(1) * 100;
                let transfer_id = format!("c{client}-{index}");
                let outcome = transfer_atomically(
                    &*accounts,
                    &*store,
                    &transfer_id,
                    from,
                    to,
                    amount,
                    ATOMIC_TRANSFER_RETRIES,
                )
                .await?;
                if let Ok(transfer) = outcome {
                    done += 1;
                    attempts += transfer.attempts;
                }
            }
            anyhow::Ok((done, attempts))
        }));
    }
    let (mut done_total, mut attempts_total) = (0_usize, 0_u32);
    for client in clients {
        let (done, attempts) = client.await.context("a client task panicked")??;
        done_total += done;
        attempts_total += attempts;
    }
    let requests_total = CONCURRENT_CLIENTS * TRANSFERS_PER_CLIENT;
    println!(
        "{done_total} of {requests_total} transfers done ({} refused for insufficient funds), \
         in {attempts_total} decisions ({} lost a race on an account and were decided again)",
        requests_total - done_total,
        attempts_total as usize - done_total
    );

    println!(
        "\nThe alternative when the accounts live in different services: a saga, one append per step."
    );
    request(&accounts, "s-1", "alice", "bob", dollars(10)).await?;
    request(&accounts, "s-2", "carol", "alice", dollars(500)).await?;
    request(&accounts, "s-3", "alice", "dave", dollars(5)).await?;
    let mut saga = TransferSaga::load(store.clone(), "transfers").await?;
    println!("The transfer saga catches up:");
    for report in saga.catch_up().await? {
        println!("  {}", describe(&report));
    }
    println!("The saga restarts from its checkpoint and finds nothing new:");
    let mut restarted = TransferSaga::load(store.clone(), "transfers").await?;
    println!(
        "  {} transfer(s) handled again",
        restarted.catch_up().await?.len()
    );

    println!("\nBalances:");
    for (id, _) in ACCOUNTS {
        let account = accounts.load(id).await?.into_aggregate();
        let state = if account.is_open() { "" } else { " (closed)" };
        println!("  {id}: {}{state}", money(account.balance()));
    }
    let total_after = total(&accounts).await?;
    anyhow::ensure!(
        total_after == total_before,
        "money was not conserved: {} before, {} after",
        money(total_before),
        money(total_after)
    );
    println!(
        "money in the bank: {} before, {} after: conserved",
        money(total_before),
        money(total_after)
    );
    Ok(())
}
