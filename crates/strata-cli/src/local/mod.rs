//! Subcommands that work on a local data directory, opened directly with the engine:
//! `append`, `read`, `streams`, `metadata`, `delete`, `tombstone`.
//!
//! Server mode (`--server`) is not built yet; these commands refuse a directory a running
//! server holds and say so.

pub(crate) mod append;
pub(crate) mod delete;
mod event_output;
pub(crate) mod metadata;
pub(crate) mod read;
pub(crate) mod streams;
mod timestamp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_core::{ExpectedRevision, StreamName};
use strata_engine::{Config, Store};

/// Segment size of a new store, in MiB, as `strata serve` uses.
const SEGMENT_SIZE_MIB_DEFAULT: u64 = 256;

/// A mistake in what the user gave (not in the store): `main` exits with code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`].
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::local::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage_bail;

/// The `--data-dir` every local subcommand takes.
#[derive(Args)]
pub(crate) struct DataDirArgs {
    /// Directory of the store, opened directly (no server may hold it).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
}

/// Whether a subcommand may create a store that does not exist yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Create the store with segments of this many MiB if the directory is empty or absent.
    WithSegmentSizeMib(u64),
    /// Refuse a directory that holds no store.
    Never,
}

/// An open store and the runtime its async API runs on; closes the store on drop.
pub(crate) struct LocalStore {
    pub(crate) store: Arc<Store>,
    runtime: tokio::runtime::Runtime,
}

impl LocalStore {
    /// Opens the store in `data_dir`, turning the engine's errors into ones that say what to do.
    pub(crate) fn open(data_dir: &Path, create: Create) -> anyhow::Result<LocalStore> {
        // Every store has a `log/` directory; opening any other directory would create one.
        let holds_store = data_dir.join("log").is_dir();
        let segment_size_mib = match create {
            Create::WithSegmentSizeMib(mib) => mib,
            Create::Never if holds_store => SEGMENT_SIZE_MIB_DEFAULT,
            Create::Never => anyhow::bail!(
                "{} holds no store: pass the --data-dir of an existing store, or create one \
                 with `strata append` or `strata serve`",
                data_dir.display()
            ),
        };
        let config = Config {
            segment_size_bytes: segment_size_mib * 1024 * 1024,
            ..Config::default()
        };
        let store = match Store::open(data_dir, config) {
            Ok(store) => store,
            Err(strata_core::Error::DirectoryInUse { .. }) => anyhow::bail!(
                "the store in {} is in use: a server holds it (or another strata command); \
                 stop it, or wait for server mode (--server, not built yet) to reach a \
                 running server",
                data_dir.display()
            ),
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot open the store in {}; check that it is a Strata data directory \
                         readable and writable by this user",
                        data_dir.display()
                    )
                });
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime; check the process may create threads")?;
        Ok(LocalStore { store, runtime })
    }

    /// Runs a future of the store's async API to completion.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        self.store.close();
    }
}

/// Parses `--expected-revision`: `any`, `no-stream`, `exists` or a revision number.
pub(crate) fn parse_expected_revision(text: &str) -> Result<ExpectedRevision, String> {
    match text {
        "any" => Ok(ExpectedRevision::Any),
        "no-stream" => Ok(ExpectedRevision::NoStream),
        "exists" => Ok(ExpectedRevision::StreamExists),
        number => number.parse().map(ExpectedRevision::Exact).map_err(|_| {
            format!("{number:?} is not one of any, no-stream, exists or a revision number")
        }),
    }
}

/// Checks a stream name given on the command line.
pub(crate) fn stream_name(name: &str) -> anyhow::Result<StreamName> {
    match StreamName::new(name) {
        Ok(stream) => Ok(stream),
        Err(error) => usage_bail!("{error}; give a non-empty stream name"),
    }
}

/// Adds what to do next to the store's errors that users meet.
pub(crate) fn explain(error: strata_core::Error) -> anyhow::Error {
    let hint = match &error {
        strata_core::Error::WrongExpectedRevision { stream, .. } => format!(
            "; read the stream (`strata read {stream}`) and retry with the right \
             --expected-revision, or `--expected-revision any` to skip the check"
        ),
        strata_core::Error::StreamDeleted { .. } => "; use another stream name".to_owned(),
        _ => String::new(),
    };
    anyhow::anyhow!("{error}{hint}")
}

/// A JSON syntax error as `line L, column C: what` (serde's own text without its position).
pub(crate) fn json_syntax_error(error: &serde_json::Error, line: usize) -> String {
    let message = error.to_string();
    let what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what);
    format!(
        "line {line}, column {}: malformed JSON ({what})",
        error.column()
    )
}
