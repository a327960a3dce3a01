//! What the fuzz targets share: a runtime, scratch directories, a small store made once per
//! process as the template the disk targets damage, and a reader of everything in a store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, RecordedEvent, Result, StreamName,
};
use strata_engine::{Config, Store};

/// The runtime every target runs its async calls on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A fresh directory for one input, under the process's own scratch root (on `/dev/shm`
/// when there is one: the disk targets copy a store per input).
pub fn scratch_dir() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let root = ROOT.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("strata-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch root");
        root
    });
    root.join(NEXT.fetch_add(1, Ordering::Relaxed).to_string())
}

/// Small segments and frequent index files, so a few events fill every kind of file.
pub fn small_config() -> Config {
    let mut config = Config::small_for_tests();
    config.segment_size_bytes = 128 * 1024;
    config.limits.event_bytes_max = 8 * 1024;
    config.limits.append_bytes_max = 32 * 1024;
    config.index_checkpoint_interval_bytes = 2 * 1024;
    config
}

/// A closed store with events in several streams (metadata, a soft delete, a tombstone,
/// binary data), and everything `$all` held when it was closed.
pub struct Template {
    pub dir: PathBuf,
    pub events: Vec<RecordedEvent>,
}

pub fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_dir();
        let events = runtime().block_on(async {
            let store = Store::open(&dir, small_config()).expect("open the template");
            for round in 0..12u32 {
                for stream in ["order-1", "order-2", "cart-7", "$$order-2"] {
                    let stream = StreamName::new(stream).expect("name");
                    let event = if stream.as_str().starts_with("$$") {
                        ProposedEvent::json(
                            "$metadata",
                            format!(r#"{{"$maxCount":{}}}"#, round + 3),
                        )
                    } else if round % 3 == 0 {
                        ProposedEvent::binary("Blob", vec![round as u8; 40 + round as usize])
                    } else {
                        ProposedEvent::json(
                            "Happened",
                            format!(r#"{{"round":{round},"note":"fuzz"}}"#),
                        )
                    };
                    store
                        .append(&stream, ExpectedRevision::Any, vec![event])
                        .await
                        .expect("append to the template");
                }
            }
            let gone = StreamName::new("gone-1").expect("name");
            store
                .append(
                    &gone,
                    ExpectedRevision::Any,
                    vec![ProposedEvent::json("Happened", "{}")],
                )
                .await
                .expect("append");
            store
                .tombstone_stream(&gone, ExpectedRevision::Any)
                .await
                .expect("tombstone");
            let cart = StreamName::new("cart-7").expect("name");
            store
                .delete_stream(&cart, ExpectedRevision::Any)
                .await
                .expect("soft delete");
            let events = read_all(store.as_ref()).await.expect("read the template");
            store.close();
            events
        });
        Template { dir, events }
    })
}

/// Copies the template's directory to a fresh scratch directory.
pub fn copy_of_template() -> PathBuf {
    let target = scratch_dir();
    copy_dir(&template().dir, &target);
    target
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a copy");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let path = entry.path();
        if path.file_name().is_some_and(|name| name == "LOCK") {
            continue;
        }
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            copy_file(&path, &to.join(entry.file_name()));
        }
    }
}

/// `std::fs::copy`, again from the start when a signal interrupts it: libFuzzer's timeout
/// timer (SIGALRM, installed without `SA_RESTART`) interrupts a long `copy_file_range`.
fn copy_file(from: &Path, to: &Path) {
    loop {
        match std::fs::copy(from, to) {
            Ok(_) => return,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => panic!("copy {} to {}: {error}", from.display(), to.display()),
        }
    }
}

/// Every event of `$all`, forwards, in pages.
pub async fn read_all(store: &dyn EventStore) -> Result<Vec<RecordedEvent>> {
    let mut events = Vec::new();
    let mut options = ReadAllOptions::forwards().max_count(64);
    loop {
        let page = store.read_all(options.clone()).await?;
        events.extend(page.events);
        if page.is_end {
            return Ok(events);
        }
        options = options.from_position(page.next_position);
    }
}

/// Bytes written over a file at an offset (taken modulo the file's length).
#[derive(Arbitrary, Debug)]
pub struct Patch {
    pub offset: u32,
    pub bytes: Vec<u8>,
}

/// Applies `patches` to the file at `path`, then cuts it to `cut` bytes when given.
pub fn damage(path: &Path, patches: &[Patch], cut: Option<u32>) {
    let mut content = std::fs::read(path).expect("read a file to damage");
    if !content.is_empty() {
        for patch in patches.iter().take(16) {
            let start = patch.offset as usize % content.len();
            let end = (start + patch.bytes.len()).min(content.len());
            content[start..end].copy_from_slice(&patch.bytes[..end - start]);
        }
    }
    if let Some(cut) = cut {
        content.truncate(cut as usize % (content.len() + 1));
    }
    std::fs::write(path, content).expect("write a damaged file");
}

/// Files directly in `dir` with the extension `extension`, sorted.
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == extension))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A store over a scratch directory for the front-end targets, kept for the process.
pub fn shared_store() -> Arc<Store> {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    Arc::clone(STORE.get_or_init(|| {
        let _guard = runtime().enter();
        Store::open(scratch_dir(), small_config()).expect("open the shared store")
    }))
}
