//! `strata repair` end to end: a store whose acknowledged tail was cut while its
//! clean-shutdown marker remains refuses to open; `strata verify` says so; `strata repair`
//! prints what it would drop and changes nothing without `--yes`; with `--yes` the store
//! opens again.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use strata_core::{Error, EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn strata(args: &[&str], data_dir: &Path) -> Output {
    Command::new(STRATA)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("strata runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Ten appends, closed cleanly; then the last one is zeroed on disk. Returns where the
/// readable log now ends (the start of the last append).
fn store_with_a_cut_acknowledged_tail(data_dir: &Path) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = Config::small_for_tests();
    let store = Store::open(data_dir, config.clone()).unwrap();
    let stream = StreamName::new("cut").unwrap();
    let mut last = 0;
    for number in 0..10 {
        let event = ProposedEvent::json("Cut", format!(r#"{{"n":{number}}}"#));
        last = runtime
            .block_on(store.append(&stream, ExpectedRevision::Any, vec![event]))
            .unwrap()
            .position
            .0;
    }
    store.close();
    drop(store);
    std::fs::OpenOptions::new()
        .write(true)
        .open(data_dir.join("log").join("0000000000.seg"))
        .unwrap()
        .write_all_at(&[0u8; 4096], last)
        .unwrap();
    last
}

#[test]
fn repair_prints_what_it_drops_and_acts_only_with_yes() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path();
    let readable_end = store_with_a_cut_acknowledged_tail(data_dir);
    assert!(matches!(
        Store::open(data_dir, Config::small_for_tests()).map(|_| ()),
        Err(Error::Corrupt { .. })
    ));

    let verify = strata(&["verify"], data_dir);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stdout));
    assert!(
        text(&verify.stdout).contains("acknowledged events are lost"),
        "{}",
        text(&verify.stdout)
    );

    let position = readable_end.to_string();
    let dry_run = strata(&["repair", "--truncate-at", &position], data_dir);
    assert_eq!(dry_run.status.code(), Some(1), "{}", text(&dry_run.stderr));
    let printed = text(&dry_run.stdout);
    assert!(
        printed.contains(&format!("readable log ends at:   {readable_end}"))
            && printed.contains("readable events dropped: 0")
            && printed.contains("clean-shutdown marker removed")
            && printed.contains("index run removed:")
            && printed.contains("event id file removed:"),
        "the plan does not say what it drops:\n{printed}"
    );
    assert!(text(&dry_run.stderr).contains("--yes"));
    assert!(
        data_dir.join("CLEAN").exists(),
        "nothing changes without --yes"
    );
    assert!(Store::open(data_dir, Config::small_for_tests()).is_err());

    let wrong = strata(&["repair", "--truncate-at", "12345", "--yes"], data_dir);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("not where a transaction"),
        "{}",
        text(&wrong.stderr)
    );

    let repaired = strata(&["repair", "--truncate-at", &position, "--yes"], data_dir);
    assert!(repaired.status.success(), "{}", text(&repaired.stderr));
    let verify = strata(&["verify"], data_dir);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let store = Store::open(data_dir, Config::small_for_tests()).expect("the repaired store opens");
    assert_eq!(store.event_count(), 9);
    store.close();
}
