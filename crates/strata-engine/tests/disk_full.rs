//! A real full disk: the store on a tmpfs of a few MiB, appended to until the file system
//! says `ENOSPC`. The caller gets a clear error naming the cause, every acknowledged event
//! stays readable, reads are still served, and once space is freed a reopened store takes
//! appends again with nothing acknowledged lost.
//!
//! Mounting needs root (CI runs as root). Without it the test FAILS with a message, unless
//! `STRATA_TEST_NO_MOUNT=1` says explicitly that this machine cannot mount.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use strata_core::{
    EventId, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, RecordedEvent,
    StreamName,
};
use strata_engine::{Config, Store, verify};

/// Size of the file system.
const TMPFS_SIZE: &str = "4m";
/// A file that takes space until the test frees it.
const FILLER_BYTES: usize = 1024 * 1024;
const EVENT_DATA_BYTES: usize = 4 * 1024;

/// A tmpfs mounted on a fresh temporary directory; unmounted (and the directory removed)
/// on drop.
struct SmallFileSystem {
    dir: tempfile::TempDir,
}

impl SmallFileSystem {
    /// `None` when `STRATA_TEST_NO_MOUNT=1` and mounting is not possible; panics naming the
    /// reason otherwise.
    fn mount() -> Option<SmallFileSystem> {
        let excused = std::env::var("STRATA_TEST_NO_MOUNT").is_ok_and(|value| value == "1");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let failure = match mounted {
            Ok(output) if output.status.success() => return Some(SmallFileSystem { dir }),
            Ok(output) => format!(
                "mount exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => format!("cannot run mount: {error}"),
        };
        if excused {
            eprintln!("STRATA_TEST_NO_MOUNT=1: not testing a real full disk ({failure})");
            return None;
        }
        panic!(
            "the disk-full test mounts a {TMPFS_SIZE} tmpfs and needs root: {failure}. Run it \
             as root, or set STRATA_TEST_NO_MOUNT=1 to skip it explicitly"
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            // Something still holds a file: detach it so the directory can go.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn stream() -> StreamName {
    StreamName::new("filling-1").unwrap()
}

fn event(number: u64) -> ProposedEvent {
    let mut data = format!(r#"{{"number":{number},"pad":""#).into_bytes();
    data.resize(EVENT_DATA_BYTES - 2, b'x');
    data.extend_from_slice(br#""}"#);
    ProposedEvent::json("Filled", data)
        .with_id(EventId::from_u128(0xf111_0000 + u128::from(number)))
}

async fn read_all_of_stream(store: &Store) -> Vec<RecordedEvent> {
    store
        .read_stream(&stream(), ReadStreamOptions::forwards())
        .await
        .expect("reads are served on a full disk")
        .into_events()
}

fn assert_acknowledged_readable(read: &[RecordedEvent], acknowledged: &[u64], when: &str) {
    assert!(
        read.len() >= acknowledged.len(),
        "{when}: {} events read, {} acknowledged",
        read.len(),
        acknowledged.len()
    );
    for (number, event) in acknowledged.iter().zip(read) {
        let expected = event_data(*number);
        assert_eq!(event.revision.0, *number, "{when}");
        assert_eq!(
            event.id,
            EventId::from_u128(0xf111_0000 + u128::from(*number)),
            "{when}"
        );
        assert_eq!(
            &event.data[..],
            &expected[..],
            "{when}: event {number}'s data"
        );
    }
}

fn event_data(number: u64) -> Vec<u8> {
    event(number).data.to_vec()
}

#[tokio::test]
async fn a_full_disk_fails_the_append_clearly_keeps_reads_and_writes_resume_after_space_is_freed() {
    let Some(fs) = SmallFileSystem::mount() else {
        return;
    };
    let filler: PathBuf = fs.path().join("filler");
    std::fs::write(&filler, vec![0_u8; FILLER_BYTES]).expect("the filler fits");
    let data_dir = fs.path().join("store");
    let store: Arc<Store> =
        Store::open(&data_dir, Config::small_for_tests()).expect("the store opens");

    let mut acknowledged = Vec::new();
    let failure = loop {
        let number = acknowledged.len() as u64;
        let expected = match number {
            0 => ExpectedRevision::NoStream,
            _ => ExpectedRevision::Exact(number - 1),
        };
        match store.append(&stream(), expected, vec![event(number)]).await {
            Ok(_) => acknowledged.push(number),
            Err(error) => break error,
        }
        assert!(
            number < 10_000,
            "a {TMPFS_SIZE} file system never filled up"
        );
    };
    let message = failure.to_string();
    assert!(
        message.contains("No space left on device"),
        "the caller is told the disk is full: {message}"
    );
    assert!(
        !acknowledged.is_empty(),
        "some appends fit before the disk was full"
    );
    // Later writes are refused too, clearly, and reads go on.
    let next = acknowledged.len() as u64;
    let again = store
        .append(&stream(), ExpectedRevision::Any, vec![event(next)])
        .await
        .expect_err("a write after the disk filled up is refused");
    assert!(
        again.to_string().contains("No space left on device"),
        "the refusal names the cause: {again}"
    );
    let read = read_all_of_stream(&store).await;
    assert_acknowledged_readable(&read, &acknowledged, "on the full disk");
    store.close();
    drop(store);

    // Space comes back; the reopened store has everything acknowledged and takes appends.
    std::fs::remove_file(&filler).expect("the filler can be removed");
    let store = Store::open(&data_dir, Config::small_for_tests()).expect("the store reopens");
    let read = read_all_of_stream(&store).await;
    assert_acknowledged_readable(&read, &acknowledged, "after the reopen");
    // The failed append is there whole or not at all (one event: either).
    assert!(
        read.len() <= acknowledged.len() + 1,
        "{} events",
        read.len()
    );
    let mut revision = read.len() as u64;
    for _ in 0..16 {
        store
            .append(
                &stream(),
                ExpectedRevision::Exact(revision - 1),
                vec![event(revision)],
            )
            .await
            .expect("appends resume once there is space");
        revision += 1;
    }
    let read = read_all_of_stream(&store).await;
    assert_eq!(read.len() as u64, revision);
    store.close();
    drop(store);
    let report = verify(&data_dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify:\n{report}");
    println!(
        "figures: {} events of {EVENT_DATA_BYTES} bytes acknowledged before ENOSPC on a \
         {TMPFS_SIZE} tmpfs; the error: {message}",
        acknowledged.len()
    );
}
