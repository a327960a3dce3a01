//! The bank-transfer example through its public API on an embedded store: atomic transfers
//! (one two-stream append: refused whole, concurrent ones conserving money), the saga's
//! three outcomes, many concurrent transfers, and a saga restarted mid-way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bank_transfer::{
    ATOMIC_TRANSFER_RETRIES, Account, AccountCommand, AccountError, AccountEvent,
    AtomicTransferError, Cents, SAGA_CONFLICT_RETRIES, Step, Transfer, TransferSaga,
    TransferStatus, step_command_id, transfer_atomically,
};
use strata::{CommandError, EventStore, Repository, Upcasters, stream_name};
use strata_core::ReadStreamOptions;
use strata_engine::{Config, Store};

type Accounts = Repository<Account, Store>;

fn open_store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path(), Config::small_for_tests()).expect("store opens");
    (dir, store)
}

fn accounts(store: &Arc<Store>) -> Accounts {
    Repository::new(store.clone()).with_conflict_retries(SAGA_CONFLICT_RETRIES)
}

async fn open(accounts: &Accounts, id: &str, balance: Cents) {
    let open = AccountCommand::Open {
        initial_balance: balance,
    };
    accounts.execute(id, &open).await.expect("account opens");
}

fn request(transfer_id: &str, to: &str, amount: Cents) -> AccountCommand {
    AccountCommand::RequestTransfer {
        transfer_id: transfer_id.to_owned(),
        to: to.to_owned(),
        amount,
    }
}

async fn balances(accounts: &Accounts, ids: &[&str]) -> BTreeMap<String, Cents> {
    let mut balances = BTreeMap::new();
    for id in ids {
        let account = accounts.load(id).await.expect("account loads");
        balances.insert((*id).to_owned(), account.aggregate().balance());
    }
    balances
}

async fn status(store: &Arc<Store>, transfer_id: &str) -> TransferStatus {
    let transfers = Repository::<Transfer, Store>::new(store.clone());
    let transfer = transfers.load(transfer_id).await.expect("transfer loads");
    transfer.aggregate().status().clone()
}

/// How many times each transfer debited account `id`, read from its stored events.
async fn debits_by_transfer(store: &Arc<Store>, id: &str) -> BTreeMap<String, usize> {
    let stream = stream_name::<Account>(id).expect("stream name");
    let events = store
        .read_stream(&stream, ReadStreamOptions::forwards().max_count(1_000_000))
        .await
        .expect("stream reads")
        .into_events();
    let mut debits = BTreeMap::new();
    for recorded in &events {
        let event: AccountEvent =
            strata::decode_event(recorded, &Upcasters::new()).expect("event decodes");
        if let AccountEvent::Debited { transfer_id, .. } = event {
            *debits.entry(transfer_id).or_insert(0) += 1;
        }
    }
    debits
}

#[tokio::test]
async fn a_debit_beyond_the_balance_is_refused_by_the_repository() {
    let (_dir, store) = open_store();
    let accounts = accounts(&store);
    open(&accounts, "a", 10).await;
    let debit = AccountCommand::Debit {
        transfer_id: "t".to_owned(),
        amount: 11,
    };
    let refused = accounts.execute("a", &debit).await.expect_err("refused");
    assert!(matches!(
        refused,
        CommandError::Rejected(AccountError::InsufficientFunds {
            balance: 10,
            amount: 11
        })
    ));
    assert_eq!(
        accounts
            .load("a")
            .await
            .expect("loads")
            .aggregate()
            .balance(),
        10
    );
}

#[tokio::test]
async fn the_saga_completes_fails_or_compensates_each_transfer() {
    let (_dir, store) = open_store();
    let accounts = accounts(&store);
    open(&accounts, "a", 100).await;
    open(&accounts, "b", 0).await;
    open(&accounts, "closed", 0).await;
    accounts
        .execute("closed", &AccountCommand::Close)
        .await
        .expect("closes");
    for (transfer_id, to, amount) in [
        ("done", "b", 60),
        ("too-much", "b", 60),
        ("to-missing", "nobody", 10),
        ("to-closed", "closed", 10),
    ] {
        accounts
            .execute("a", &request(transfer_id, to, amount))
            .await
            .expect("request stored");
    }

    let mut saga = TransferSaga::load(store.clone(), "test")
        .await
        .expect("loads");
    let reports = saga.catch_up().await.expect("catches up");

    let statuses: Vec<_> = reports.iter().map(|report| &report.status).collect();
    assert_eq!(statuses.len(), 4);
    assert_eq!(statuses[0], &TransferStatus::Completed);
    assert!(matches!(statuses[1], TransferStatus::Failed { .. }));
    assert!(matches!(statuses[2], TransferStatus::Compensated { .. }));
    assert!(matches!(statuses[3], TransferStatus::Compensated { .. }));
    let after = balances(&accounts, &["a", "b", "closed"]).await;
    assert_eq!(after["a"], 40);
    assert_eq!(after["b"], 60);
    assert_eq!(after["closed"], 0);
}

const CONCURRENT_ACCOUNTS: [&str; 4] = ["a", "b", "c", "d"];
const CONCURRENT_INITIAL_BALANCE: Cents = 1_000;
const CONCURRENT_CLIENTS: usize = 8;
const CONCURRENT_TRANSFERS_PER_CLIENT: usize = 25;

/// A small deterministic generator, so a failure can be replayed.
fn pick(client: usize, index: usize, salt: usize, modulo: usize) -> usize {
    let mixed = (client * 2_654_435_761 + index * 40_503 + salt * 97_003) % 1_000_003;
    mixed % modulo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_conserve_money_and_each_ends() {
    let (_dir, store) = open_store();
    let accounts = Arc::new(accounts(&store));
    for id in CONCURRENT_ACCOUNTS {
        open(&accounts, id, CONCURRENT_INITIAL_BALANCE).await;
    }

    // The saga runs while the clients request, racing them on the account streams.
    let clients_done = Arc::new(AtomicBool::new(false));
    let saga_task = {
        let store = store.clone();
        let clients_done = clients_done.clone();
        tokio::spawn(async move {
            let mut saga = TransferSaga::load(store, "concurrent")
                .await
                .expect("saga loads")
                .with_checkpoint_every_transfers(7);
            let mut reports = Vec::new();
            while !clients_done.load(Ordering::SeqCst) {
                reports.extend(saga.catch_up().await.expect("saga catches up"));
                tokio::task::yield_now().await;
            }
            reports.extend(saga.catch_up().await.expect("saga catches up"));
            reports
        })
    };

    let mut clients = Vec::new();
    for client in 0..CONCURRENT_CLIENTS {
        let accounts = accounts.clone();
        clients.push(tokio::spawn(async move {
            let mut attempts: u32 = 0;
            for index in 0..CONCURRENT_TRANSFERS_PER_CLIENT {
                let from = CONCURRENT_ACCOUNTS[pick(client, index, 1, 4)];
                // One in ten goes to an account that does not exist: compensated.
                let to = if pick(client, index, 2, 10) == 0 {
                    "ghost"
                } else {
                    CONCURRENT_ACCOUNTS[pick(client, index, 3, 4)]
                };
                let amount = 1 + pick(client, index, 4, 400) as Cents;
                let command = request(&format!("c{client}-t{index}"), to, amount);
                attempts += accounts
                    .execute(from, &command)
                    .await
                    .expect("request stored despite conflicts")
                    .attempts;
            }
            attempts
        }));
    }
    let mut attempts_total = 0;
    for client in clients {
        attempts_total += client.await.expect("client task");
    }
    clients_done.store(true, Ordering::SeqCst);
    let reports = saga_task.await.expect("saga task");

    let requests_total = CONCURRENT_CLIENTS * CONCURRENT_TRANSFERS_PER_CLIENT;
    assert!(attempts_total as usize >= requests_total);
    println!("{requests_total} requests stored in {attempts_total} attempts");
    let transfer_ids: BTreeSet<_> = reports.iter().map(|r| r.transfer_id.clone()).collect();
    assert_eq!(transfer_ids.len(), requests_total, "each request handled");
    assert_eq!(reports.len(), requests_total, "no request handled twice");

    // Every transfer ended, and the balances are exactly what the completed ones imply.
    let mut expected: BTreeMap<String, Cents> = CONCURRENT_ACCOUNTS
        .iter()
        .map(|id| ((*id).to_owned(), CONCURRENT_INITIAL_BALANCE))
        .collect();
    let mut compensated = 0;
    for report in &reports {
        let stored = status(&store, &report.transfer_id).await;
        assert_eq!(stored, report.status);
        match &stored {
            TransferStatus::Completed => {
                *expected.get_mut(&report.from).expect("source") -= report.amount;
                *expected.get_mut(&report.to).expect("target") += report.amount;
            }
            TransferStatus::Failed { .. } => {}
            TransferStatus::Compensated { .. } => compensated += 1,
            other => panic!("transfer {} left at {other:?}", report.transfer_id),
        }
    }
    assert!(compensated > 0, "the ghost account caused compensations");
    let after = balances(&accounts, &CONCURRENT_ACCOUNTS).await;
    assert_eq!(after, expected, "no lost update");
    let total: Cents = after.values().sum();
    assert_eq!(
        total,
        CONCURRENT_INITIAL_BALANCE * CONCURRENT_ACCOUNTS.len() as Cents
    );
    for id in CONCURRENT_ACCOUNTS {
        // Loading replays every debit on an unsigned balance: one that went below zero
        // would have panicked above. No transfer debited twice either.
        let debits = debits_by_transfer(&store, id).await;
        assert!(debits.values().all(|count| *count == 1), "{id}: {debits:?}");
    }
}

/// Requests the same transfers on a fresh store: debits that succeed, fail and compensate.
async fn scripted_store() -> (tempfile::TempDir, Arc<Store>, Vec<String>) {
    let (dir, store) = open_store();
    let accounts = accounts(&store);
    for id in ["a", "b", "c"] {
        open(&accounts, id, 100).await;
    }
    let mut transfer_ids = Vec::new();
    for index in 0..30_usize {
        let from = ["a", "b", "c"][index % 3];
        let to = ["b", "c", "a", "nobody"][index % 4];
        if from == to {
            continue;
        }
        let transfer_id = format!("s{index}");
        let amount = 10 + (index as Cents * 17) % 60;
        accounts
            .execute(from, &request(&transfer_id, to, amount))
            .await
            .expect("request stored");
        transfer_ids.push(transfer_id);
    }
    (dir, store, transfer_ids)
}

async fn outcome(
    store: &Arc<Store>,
    transfer_ids: &[String],
) -> (BTreeMap<String, Cents>, Vec<TransferStatus>) {
    let balances = balances(&accounts(store), &["a", "b", "c"]).await;
    let mut statuses = Vec::new();
    for transfer_id in transfer_ids {
        statuses.push(status(store, transfer_id).await);
    }
    (balances, statuses)
}

#[tokio::test]
async fn a_saga_restarted_mid_way_ends_as_an_uninterrupted_one() {
    let (_dir_a, uninterrupted, transfer_ids) = scripted_store().await;
    let mut saga = TransferSaga::load(uninterrupted.clone(), "restart")
        .await
        .expect("loads");
    saga.catch_up().await.expect("catches up");
    let expected = outcome(&uninterrupted, &transfer_ids).await;
    assert!(
        expected
            .1
            .iter()
            .any(|status| matches!(status, TransferStatus::Compensated { .. }))
    );

    let (_dir_b, interrupted, _) = scripted_store().await;
    let mut saga = TransferSaga::load(interrupted.clone(), "restart")
        .await
        .expect("loads")
        .with_checkpoint_every_transfers(4);
    let first = saga.process_at_most(10).await.expect("first run");
    assert_eq!(first.len(), 10);
    drop(saga);
    // As if the saga had crashed right after debiting the next transfer's source.
    let next = &transfer_ids[10];
    let next_request_from = ["a", "b", "c"][next[1..].parse::<usize>().expect("index") % 3];
    let next_amount = 10 + (next[1..].parse::<Cents>().expect("index") * 17) % 60;
    let debit = AccountCommand::Debit {
        transfer_id: next.clone(),
        amount: next_amount,
    };
    let crash_debit = accounts(&interrupted)
        .execute_once(
            next_request_from,
            step_command_id(next, Step::Debit),
            &debit,
        )
        .await
        .expect("the source can pay");
    assert_eq!(crash_debit.events_appended, 1);

    let mut restarted = TransferSaga::load(interrupted.clone(), "restart")
        .await
        .expect("loads from its checkpoint");
    let second = restarted.catch_up().await.expect("second run");
    // The checkpoint was at 8 transfers: 9 and 10 are seen again and recognised.
    let seen_again: Vec<_> = second
        .iter()
        .filter(|report| report.already_finished)
        .map(|report| report.transfer_id.clone())
        .collect();
    assert_eq!(seen_again, transfer_ids[8..10].to_vec());

    assert_eq!(outcome(&interrupted, &transfer_ids).await, expected);
    for id in ["a", "b", "c"] {
        let debits = debits_by_transfer(&interrupted, id).await;
        assert!(debits.values().all(|count| *count == 1), "{id}: {debits:?}");
    }
}

#[tokio::test]
async fn an_atomic_transfer_is_one_append_of_debit_and_credit() {
    let (_dir, store) = open_store();
    let accounts = accounts(&store);
    open(&accounts, "ann", 100).await;
    open(&accounts, "ben", 10).await;
    let before = store.last_position().await.expect("position");
    let done = transfer_atomically(&accounts, &*store, "t-1", "ann", "ben", 30, 0)
        .await
        .expect("no store error")
        .expect("accepted");
    assert_eq!(done.attempts, 1);
    let expected: BTreeMap<String, Cents> = [("ann".to_owned(), 70), ("ben".to_owned(), 40)].into();
    assert_eq!(balances(&accounts, &["ann", "ben"]).await, expected);
    let mut all = store
        .read_all(strata_core::ReadAllOptions::forwards())
        .await
        .expect("$all reads")
        .events;
    all.retain(|event| Some(event.position) > before);
    let written: Vec<(&str, &str)> = all
        .iter()
        .map(|event| (event.stream.as_str(), event.event_type.as_str()))
        .collect();
    assert_eq!(
        written,
        [("account-ann", "Debited"), ("account-ben", "Credited")]
    );
    assert_eq!(all[1].position, done.position);
    assert_eq!(
        debits_by_transfer(&store, "ann").await,
        [("t-1".to_owned(), 1)].into()
    );
}

#[tokio::test]
async fn a_refused_atomic_transfer_writes_nothing() {
    let (_dir, store) = open_store();
    let accounts = accounts(&store);
    open(&accounts, "ann", 100).await;
    open(&accounts, "ben", 10).await;
    accounts
        .execute("ben", &AccountCommand::Close)
        .await
        .expect("closes");
    let last = store.last_position().await.expect("position");
    let refusals = [
        ("ann", "ben", 5, AccountError::Closed),
        ("ann", "cat", 5, AccountError::NotOpen),
        (
            "ann",
            "dan",
            500,
            AccountError::InsufficientFunds {
                balance: 100,
                amount: 500,
            },
        ),
    ];
    for (from, to, amount, reason) in refusals {
        let outcome = transfer_atomically(&accounts, &*store, "t-x", from, to, amount, 0)
            .await
            .expect("no store error");
        assert_eq!(outcome, Err(reason));
    }
    assert!(matches!(
        transfer_atomically(&accounts, &*store, "t-y", "ann", "ann", 5, 0).await,
        Err(AtomicTransferError::SameAccount { .. })
    ));
    assert_eq!(
        store.last_position().await.expect("position"),
        last,
        "no refusal wrote anything: there is nothing to compensate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_atomic_transfers_conserve_money() {
    let (_dir, store) = open_store();
    let accounts = Arc::new(accounts(&store));
    let ids = ["a", "b", "c"];
    for id in ids {
        open(&accounts, id, 1_000).await;
    }
    let mut tasks = Vec::new();
    for client in 0..6_usize {
        let accounts = accounts.clone();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut moved = 0;
            for index in 0..20_usize {
                let from = ids[(client + index) % 3];
                let to = ids[(client + index + 1) % 3];
                let amount = Cents::try_from(1 + (client * 37 + index * 91) % 400).unwrap();
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
                .await
                .expect("no store error");
                if outcome.is_ok() {
                    moved += 1;
                }
            }
            moved
        }));
    }
    let mut moved = 0;
    for task in tasks {
        moved += task.await.expect("task ends");
    }
    assert!(moved > 0, "some transfers went through");
    let total: Cents = balances(&accounts, &ids).await.values().sum();
    assert_eq!(total, 3_000, "money is conserved");
    let mut debits = 0;
    for id in ids {
        let per_transfer = debits_by_transfer(&store, id).await;
        assert!(per_transfer.values().all(|&count| count == 1));
        debits += per_transfer.len();
    }
    assert_eq!(debits, moved, "one debit per accepted transfer");
}
