//! The data subcommands: `append`, `read`, `tail`, `streams`, `metadata`, `delete`,
//! `tombstone`, `export`, `import`. Each is written once over `Arc<dyn EventStore>`: a local
//! data directory opened directly with the engine (`--data-dir`), or a running server
//! (`--server URL` or `STRATA_SERVER`) through `strata_remote::RemoteStore`.

pub(crate) mod append;
pub(crate) mod delete;
mod event_output;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod metadata;
mod ndjson;
mod output;
pub(crate) mod read;
pub(crate) mod streams;
pub(crate) mod tail;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_core::{EventStore, ExpectedRevision, StreamName};
use strata_engine::{Config, Store};
use strata_remote::{ConnectError, RemoteStore};

/// Segment size of a new store, in MiB, as `strata serve` uses.
const SEGMENT_SIZE_MIB_DEFAULT: u64 = 256;

/// Discovery interval of the official client for command-line use, in milliseconds.
const DISCOVERY_INTERVAL_MS: u64 = 50;

/// The environment variable that names a server when `--server` is not given.
const SERVER_ENV: &str = "STRATA_SERVER";
/// The login and password sent to a server whose URL carries none.
const USER_ENV: &str = "STRATA_USER";
const PASSWORD_ENV: &str = "STRATA_PASSWORD";

/// Credentials from `STRATA_USER` / `STRATA_PASSWORD`, when both are set and not empty.
pub(crate) fn credentials_from_env() -> Option<(String, String)> {
    let user = std::env::var(USER_ENV)
        .ok()
        .filter(|user| !user.is_empty())?;
    let password = std::env::var(PASSWORD_ENV).unwrap_or_default();
    Some((user, password))
}

/// `url` with the credentials of the environment when it carries none of its own.
pub(crate) fn with_env_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return url.to_owned();
    }
    match credentials_from_env() {
        Some((user, password)) => format!("{scheme}://{user}:{password}@{rest}"),
        None => url.to_owned(),
    }
}

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
        return Err(anyhow::Error::new($crate::data::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage_bail;

/// Where the data is: the `--data-dir` or `--server` every data subcommand takes.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Directory of a store, opened directly (no server may hold it).
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A running server, e.g. kdb://127.0.0.1:2113?tls=false, or
    /// kurrentdb://USER:PASSWORD@HOST:2113?tlsCaFile=CA.pem. Default: the environment
    /// variable STRATA_SERVER, when --data-dir is not given. Credentials not in the URL come
    /// from STRATA_USER and STRATA_PASSWORD.
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
}

/// The place the user chose, resolved.
enum Place {
    Directory(PathBuf),
    Server(String),
}

impl StoreArgs {
    /// `--server`, else `--data-dir`, else `STRATA_SERVER` (an empty value counts as unset).
    fn place(&self) -> anyhow::Result<Place> {
        if let Some(url) = &self.server {
            return Ok(Place::Server(url.clone()));
        }
        if let Some(dir) = &self.data_dir {
            return Ok(Place::Directory(dir.clone()));
        }
        match std::env::var(SERVER_ENV) {
            Ok(url) if !url.is_empty() => Ok(Place::Server(url)),
            _ => usage_bail!(
                "say where the data is: --data-dir DIR for a local store, or --server URL \
                 (or {SERVER_ENV}=URL) for a running server"
            ),
        }
    }
}

/// Whether a subcommand may create a local store that does not exist yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Create the store with segments of this many MiB if the directory is empty or absent.
    WithSegmentSizeMib(u64),
    /// Refuse a directory that holds no store.
    Never,
}

/// An open store (local or remote) and the runtime its async API runs on. A local store is
/// closed on drop.
pub(crate) struct OpenStore {
    pub(crate) store: Arc<dyn EventStore>,
    engine: Option<Arc<Store>>,
    /// How the user named the store, for messages: `--data-dir DIR` or `--server URL`.
    pub(crate) place: String,
    runtime: tokio::runtime::Runtime,
}

impl OpenStore {
    /// Opens what `args` names, turning errors into ones that say what to do.
    pub(crate) fn open(args: &StoreArgs, create: Create) -> anyhow::Result<OpenStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime; check the process may create threads")?;
        match args.place()? {
            Place::Directory(dir) => {
                let engine = open_engine(&dir, create)?;
                Ok(OpenStore {
                    store: engine.clone(),
                    engine: Some(engine),
                    place: format!("--data-dir {}", dir.display()),
                    runtime,
                })
            }
            Place::Server(url) => {
                let connect_url = with_quick_discovery(&with_env_credentials(&url));
                let store = match runtime.block_on(RemoteStore::connect(&connect_url)) {
                    Ok(store) => store,
                    Err(error @ ConnectError::InvalidUrl { .. }) => usage_bail!("{error}"),
                    Err(error) => return Err(error).context("cannot reach the server"),
                };
                Ok(OpenStore {
                    store: Arc::new(store),
                    engine: None,
                    place: format!("--server '{url}'"),
                    runtime,
                })
            }
        }
    }

    /// Runs a future of the store's async API to completion.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl Drop for OpenStore {
    fn drop(&mut self) {
        if let Some(engine) = &self.engine {
            engine.close();
        }
    }
}

/// The official client waits its discovery interval (500 ms by default) even before the
/// first attempt on a single node, which would double the time of a short command: unless
/// the user chose one, the command line uses 50 ms.
fn with_quick_discovery(url: &str) -> String {
    if url.to_ascii_lowercase().contains("discoveryinterval=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}discoveryInterval={DISCOVERY_INTERVAL_MS}")
}

/// Opens the existing store in `data_dir` (for `strata forget`).
pub(crate) fn open_engine_existing(data_dir: &Path) -> anyhow::Result<Arc<Store>> {
    open_engine(data_dir, Create::Never)
}

/// Opens the engine on `data_dir`.
fn open_engine(data_dir: &Path, create: Create) -> anyhow::Result<Arc<Store>> {
    // Every store has a `log/` directory; opening any other directory would create one.
    let holds_store = data_dir.join("log").is_dir();
    let segment_size_mib = match create {
        Create::WithSegmentSizeMib(mib) => mib,
        Create::Never if holds_store => SEGMENT_SIZE_MIB_DEFAULT,
        Create::Never => anyhow::bail!(
            "{} holds no store: pass the --data-dir of an existing store, or create one \
             with `strata append`, `strata import` or `strata serve`",
            data_dir.display()
        ),
    };
    let config = Config {
        segment_size_bytes: segment_size_mib * 1024 * 1024,
        ..Config::default()
    };
    match Store::open(data_dir, config) {
        Ok(store) => Ok(store),
        Err(strata_core::Error::DirectoryInUse { .. }) => anyhow::bail!(
            "a server (or another strata command) holds {}; reach it with --server URL \
             (e.g. --server 'kdb://127.0.0.1:2113?tls=false'), or stop it first",
            data_dir.display()
        ),
        Err(error) => Err(error).with_context(|| {
            format!(
                "cannot open the store in {}; check that it is a Strata data directory \
                 readable and writable by this user",
                data_dir.display()
            )
        }),
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
        strata_core::Error::Io { .. } => {
            "; check that the disk or the server is reachable and run the command again".to_owned()
        }
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

#[cfg(test)]
mod tests {
    use super::with_quick_discovery;

    #[test]
    fn quick_discovery_is_added_unless_chosen() {
        assert_eq!(
            with_quick_discovery("kdb://h:1?tls=false"),
            "kdb://h:1?tls=false&discoveryInterval=50"
        );
        assert_eq!(
            with_quick_discovery("kdb://h:1"),
            "kdb://h:1?discoveryInterval=50"
        );
        let chosen = "kdb://h:1?tls=false&DiscoveryInterval=900";
        assert_eq!(with_quick_discovery(chosen), chosen);
    }
}
