//! A process manager reacting to events with commands: a restart from an older checkpoint
//! handles events again, and the commands they cause are not appended twice.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{Counter, CounterEvent, CountingStore};
use serde::{Deserialize, Serialize};
use strata::{
    CommandError, CommandId, Error, ProcessManager, ProcessManagerRunner, ProjectionSource,
    RecordedEvent, Repository, Upcasters, decode_event,
};

/// Fails on the event whose `by` equals this (0: never).
static FAIL_ON_BY: AtomicU64 = AtomicU64::new(0);

/// Matches every large addition to a counter with a bonus on `bonus-<counter id>`.
#[derive(Default, Serialize, Deserialize)]
struct BonusPayer {
    bonuses_sent: u64,
}

struct Counters(Repository<Counter, CountingStore>);

#[derive(Debug, thiserror::Error)]
enum BonusError {
    #[error("refusing by = {0}")]
    Refused(u64),
    #[error(transparent)]
    Toolkit(#[from] Error),
    #[error(transparent)]
    Command(#[from] CommandError<common::AddZero>),
}

impl ProcessManager for BonusPayer {
    type Context = Counters;
    type Error = BonusError;

    async fn handle(
        &mut self,
        counters: &Counters,
        event: &RecordedEvent,
    ) -> Result<(), BonusError> {
        let Some(counter_id) = event.stream.as_str().strip_prefix("counter-") else {
            return Ok(());
        };
        if counter_id.starts_with("bonus-") {
            return Ok(());
        }
        let CounterEvent::Added { by } = decode_event(event, &Upcasters::new())?;
        if by == FAIL_ON_BY.load(Ordering::SeqCst) {
            return Err(BonusError::Refused(by));
        }
        if by >= 10 {
            let command_id = CommandId::caused_by(event.id, "bonus");
            counters
                .0
                .execute_once(&format!("bonus-{counter_id}"), command_id, &1)
                .await?;
            self.bonuses_sent += 1;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_rerun_after_a_failure_sends_no_command_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Repository::<Counter, CountingStore>::new(store.clone());
    let large_additions = [10_u64, 11, 12, 13, 14, 15];
    for by in [1_u64, 10, 2, 11, 12, 3, 13, 14, 4, 15] {
        counters
            .execute(&format!("c{}", by % 2), &by)
            .await
            .expect("execute");
    }
    let load = || {
        ProcessManagerRunner::<BonusPayer, CountingStore>::load_with_context(
            store.clone(),
            "bonus-payer",
            ProjectionSource::Category("counter".to_owned()),
            Counters(Repository::new(store.clone())),
        )
    };

    // The first run sends bonuses for 10, 11 and 12, then fails before saving a checkpoint.
    FAIL_ON_BY.store(3, Ordering::SeqCst);
    let mut failing = load()
        .await
        .expect("load")
        .with_checkpoint_every_events(1_000);
    match failing.catch_up().await {
        Err(Error::ProjectionFailed { event_type, .. }) => assert_eq!(event_type, "Added"),
        other => panic!("expected the handler's failure, got {other:?}"),
    }
    assert_eq!(failing.position(), None, "no checkpoint was saved");
    assert_eq!(
        failing.read_model().bonuses_sent,
        0,
        "state back at the checkpoint"
    );
    let bonus_total = |counters: Repository<Counter, CountingStore>| async move {
        let mut total = 0;
        for id in ["bonus-c0", "bonus-c1"] {
            total += counters.load(id).await.expect("load").aggregate().value;
        }
        total
    };
    assert_eq!(bonus_total(Repository::new(store.clone())).await, 3);

    // The rerun handles every event again: the first three bonuses are recognised.
    FAIL_ON_BY.store(0, Ordering::SeqCst);
    let mut rerun = load().await.expect("load");
    rerun.catch_up().await.expect("rerun catches up");
    assert_eq!(
        rerun.read_model().bonuses_sent,
        large_additions.len() as u64
    );
    assert_eq!(
        bonus_total(Repository::new(store.clone())).await,
        large_additions.len() as u64,
        "one bonus per large addition, none twice"
    );

    // A third run starts at the saved checkpoint: at most the bonus events the rerun
    // appended after it caught up are new to it, and they cause nothing.
    let mut third = load().await.expect("load");
    assert!(third.catch_up().await.expect("catch up") <= 3);
    assert_eq!(
        third.read_model().bonuses_sent,
        large_additions.len() as u64
    );
    assert_eq!(
        bonus_total(Repository::new(store.clone())).await,
        large_additions.len() as u64
    );
}
