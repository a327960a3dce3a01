//! `strata serve`'s options: every one from a flag, a `STRATA_*` environment variable, or
//! the `--config` TOML file, in that order of precedence, then the default. Unknown keys in
//! the file are errors that name the key. docs/CONFIG.md lists every key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

/// The options as given on the command line (or in `STRATA_*`); `None` when neither says.
#[derive(Args, Debug, Default)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of the options below (keys in snake_case, e.g. `data_dir`).
    #[arg(long, value_name = "FILE", env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (flags > environment > file > defaults) as TOML
    /// and exit.
    #[arg(long)]
    print_config: bool,
    /// Directory of the store (created if absent) [default: ./strata-data].
    #[arg(long, value_name = "DIR", env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the events in PostgreSQL instead of --data-dir: postgres://USER@HOST[:PORT]/DB.
    /// Several servers may share one database (and schema).
    #[arg(
        long,
        value_name = "URL",
        env = "STRATA_STORE",
        conflicts_with = "data_dir"
    )]
    store: Option<String>,
    /// With --store: the schema holding Strata's tables (created when absent) [default: public].
    #[arg(long, value_name = "NAME", env = "STRATA_STORE_SCHEMA")]
    store_schema: Option<String>,
    /// Port for gRPC and HTTP; 0 picks a free one [default: 2113].
    #[arg(long, env = "STRATA_PORT")]
    port: Option<u16>,
    /// Size of each new segment file of the log, in MiB (17 to 4095: one 16 MiB event must
    /// fit). Fixed when the store is created; an existing store keeps its own [default: 256].
    #[arg(long, value_name = "MIB", env = "STRATA_SEGMENT_SIZE_MIB")]
    segment_size_mib: Option<u64>,
    /// What the embedded engine's index keeps in memory: `whole` (every position) or
    /// `tail` (only the log after the on-disk sorted runs; the rest is read from them)
    /// [default: tail].
    #[arg(long, value_name = "WHAT", env = "STRATA_INDEX_MEMORY")]
    index_memory: Option<IndexMemory>,
    /// Address to listen on (repeatable; comma-separated in STRATA_BIND); default: 127.0.0.1
    /// and ::1.
    #[arg(long, value_name = "ADDR", env = "STRATA_BIND", value_delimiter = ',')]
    bind: Vec<IpAddr>,
    /// Serve without TLS (HTTP/2 with prior knowledge); clients add `?tls=false`.
    #[arg(long, env = "STRATA_INSECURE")]
    insecure: bool,
    /// TLS with a self-signed certificate generated into the data directory, users and
    /// ACLs on; prints a connection string. For trying Strata out securely on one machine.
    #[arg(long, env = "STRATA_DEV")]
    dev: bool,
    /// With TLS: let callers without credentials do what ACLs grant to `$all` (off by
    /// default, as in KurrentDB since 23.10).
    #[arg(long, env = "STRATA_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Password of the built-in `admin` user when a new store creates it [default: changeit].
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "STRATA_DEFAULT_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    default_admin_password: Option<String>,
    /// Password of the built-in `ops` user when a new store creates it [default: changeit].
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "STRATA_DEFAULT_OPS_PASSWORD",
        hide_env_values = true
    )]
    default_ops_password: Option<String>,
    /// PEM file with the server's certificate chain (TLS is the default).
    #[arg(long, value_name = "FILE", env = "STRATA_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM file with the server's private key.
    #[arg(long, value_name = "FILE", env = "STRATA_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Connections open at once (all addresses together); one more is answered
    /// UNAVAILABLE (gRPC) or 503 (HTTP) and closed.
    #[arg(long, value_name = "N", env = "STRATA_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Milliseconds a client may take to send a request head (gRPC and HTTP); a connection
    /// that sends none in time, or idles that long between HTTP/1.1 requests, is closed.
    #[arg(long, value_name = "MS", env = "STRATA_HEADER_TIMEOUT_MS")]
    header_timeout_ms: Option<u64>,
    /// Catch-up subscriptions served at once over gRPC; one more is refused RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", env = "STRATA_MAX_SUBSCRIPTIONS")]
    max_subscriptions: Option<usize>,
    /// Catch-up subscriptions one client connection may hold at once (gRPC and HTTP); one
    /// more is refused RESOURCE_EXHAUSTED (gRPC) or 429 (HTTP).
    #[arg(
        long,
        value_name = "N",
        env = "STRATA_MAX_SUBSCRIPTIONS_PER_CONNECTION"
    )]
    max_subscriptions_per_connection: Option<usize>,
    /// Catch-up subscriptions the connections from one client address may hold at once
    /// together (gRPC and HTTP); one more is refused RESOURCE_EXHAUSTED (gRPC) or 429 (HTTP).
    #[arg(long, value_name = "N", env = "STRATA_MAX_SUBSCRIPTIONS_PER_ADDRESS")]
    max_subscriptions_per_address: Option<usize>,
    /// Persistent-subscription groups that may exist at once; creating one more is refused.
    #[arg(long, value_name = "N", env = "STRATA_PERSISTENT_GROUPS_MAX")]
    persistent_groups_max: Option<usize>,
    /// MiB of events one persistent-subscription group holds read and unacknowledged before
    /// it stops reading its source (1 to 65536).
    #[arg(long, value_name = "MIB", env = "STRATA_PERSISTENT_WINDOW_MIB")]
    persistent_window_mib: Option<u64>,
    /// Largest HTTP request body, in KiB; larger ones are refused 413.
    #[arg(long, value_name = "KIB", env = "STRATA_HTTP_BODY_MAX_KIB")]
    http_body_max_kib: Option<u64>,
    /// Milliseconds a client may take to send a whole HTTP request body; a slower one is
    /// answered 408 and its connection closed.
    #[arg(long, value_name = "MS", env = "STRATA_HTTP_BODY_TIMEOUT_MS")]
    http_body_timeout_ms: Option<u64>,
    /// Milliseconds between heartbeats of an idle HTTP subscription.
    #[arg(long, value_name = "MS", env = "STRATA_HTTP_HEARTBEAT_MS")]
    http_heartbeat_ms: Option<u64>,
    /// Catch-up subscriptions served over HTTP at once; one more is refused 429.
    #[arg(long, value_name = "N", env = "STRATA_HTTP_MAX_SUBSCRIPTIONS")]
    http_max_subscriptions: Option<usize>,
    /// Log lines as `text` or `json` (one object per line) on stderr.
    #[arg(long, value_name = "FORMAT", env = "STRATA_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Which log lines to write, as a tracing filter (`info`, `strata_http=debug,warn`).
    #[arg(long, value_name = "FILTER", env = "STRATA_LOG_LEVEL")]
    log_level: Option<String>,
    /// With --store: the host other nodes' gossip and `not-leader` answers give clients for
    /// this node [default: the first bound address].
    #[arg(long, value_name = "HOST", env = "STRATA_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// With --store: the port gossip gives clients for this node [default: the bound port].
    #[arg(long, value_name = "PORT", env = "STRATA_ADVERTISE_PORT")]
    advertise_port: Option<u16>,
    /// Which projections run, as KurrentDB's option: `none`, `system` or `all` (any case).
    /// System projections are Strata's indexes, always on; `none` and `system` run no user
    /// projection and serve no Projections service [default: all].
    #[arg(long, value_name = "WHICH", env = "STRATA_RUN_PROJECTIONS")]
    run_projections: Option<strata_server::RunProjections>,
}

/// What the embedded engine's index keeps in memory (docs/ENGINE.md, "Index").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IndexMemory {
    /// Every position of every stream and secondary index.
    Whole,
    /// Only the log after the sorted runs (`Config::index_memory_tail_only`).
    Tail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// The options of a config file: the same names as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    store: Option<String>,
    store_schema: Option<String>,
    port: Option<u16>,
    segment_size_mib: Option<u64>,
    index_memory: Option<IndexMemory>,
    bind: Option<Vec<IpAddr>>,
    insecure: Option<bool>,
    dev: Option<bool>,
    allow_anonymous: Option<bool>,
    default_admin_password: Option<String>,
    default_ops_password: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    max_subscriptions: Option<usize>,
    max_subscriptions_per_connection: Option<usize>,
    max_subscriptions_per_address: Option<usize>,
    persistent_groups_max: Option<usize>,
    persistent_window_mib: Option<u64>,
    http_body_max_kib: Option<u64>,
    http_body_timeout_ms: Option<u64>,
    http_heartbeat_ms: Option<u64>,
    http_max_subscriptions: Option<usize>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    advertise_host: Option<String>,
    advertise_port: Option<u16>,
    run_projections: Option<String>,
    /// `[[connectors]]`: connectors declared here (see docs/CONNECTORS.md).
    connectors: Option<Vec<strata_connectors::ConnectorDefinition>>,
    /// `[scavenge]`: automatic scavenging (see docs/SCAVENGING.md).
    scavenge: Option<AutoScavengeConfig>,
}

/// The `[scavenge]` table: automatic scavenging.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AutoScavengeConfig {
    /// `every 6h` (s, m, h, d) or `MINUTE HOUR * * *` (UTC).
    pub(crate) schedule: String,
    /// Skip a run when the last one removed nothing and nothing was written since.
    #[serde(default = "skip_when_idle_default")]
    pub(crate) skip_when_idle: bool,
    /// Share of the time an automatic run works, 1 to 100.
    #[serde(default = "auto_throttle_default")]
    pub(crate) throttle_percent: u8,
    /// Skip a run when the store estimates it would remove fewer bytes than this
    /// (0, the default: no threshold).
    #[serde(default)]
    pub(crate) min_reclaimable_bytes: u64,
}

fn skip_when_idle_default() -> bool {
    true
}

fn auto_throttle_default() -> u8 {
    50
}

impl AutoScavengeConfig {
    /// The checked schedule.
    ///
    /// # Errors
    /// A schedule that does not parse, or a throttle outside 1–100.
    pub(crate) fn to_auto(&self) -> anyhow::Result<strata_operations::AutoScavenge> {
        anyhow::ensure!(
            (1..=100).contains(&self.throttle_percent),
            "[scavenge] throttle_percent is {}; it must be 1 to 100",
            self.throttle_percent
        );
        Ok(strata_operations::AutoScavenge {
            schedule: strata_operations::Schedule::parse(&self.schedule)?,
            skip_when_idle: self.skip_when_idle,
            throttle_percent: self.throttle_percent,
            min_reclaimable_bytes: self.min_reclaimable_bytes,
        })
    }
}

/// The effective options, after precedence and defaults.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Resolved {
    pub(crate) data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store: Option<String>,
    pub(crate) store_schema: String,
    pub(crate) port: u16,
    pub(crate) segment_size_mib: u64,
    pub(crate) index_memory: IndexMemory,
    pub(crate) bind: Vec<IpAddr>,
    pub(crate) insecure: bool,
    pub(crate) dev: bool,
    pub(crate) allow_anonymous: bool,
    #[serde(skip)]
    pub(crate) default_admin_password: String,
    #[serde(skip)]
    pub(crate) default_ops_password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) max_connections: usize,
    pub(crate) header_timeout_ms: u64,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_subscriptions_per_connection: usize,
    pub(crate) max_subscriptions_per_address: usize,
    pub(crate) persistent_groups_max: usize,
    pub(crate) persistent_window_mib: u64,
    pub(crate) http_body_max_kib: u64,
    pub(crate) http_body_timeout_ms: u64,
    pub(crate) http_heartbeat_ms: u64,
    pub(crate) http_max_subscriptions: usize,
    pub(crate) log_format: LogFormat,
    pub(crate) log_level: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) advertise_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) advertise_port: Option<u16>,
    #[serde(serialize_with = "as_text")]
    pub(crate) run_projections: strata_server::RunProjections,
    /// From the file only; never printed back (they hold secrets).
    #[serde(skip)]
    pub(crate) connectors: Vec<strata_connectors::ConnectorDefinition>,
    /// Automatic scavenging (file only); a table, so printed last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scavenge: Option<AutoScavengeConfig>,
}

impl ServeArgs {
    pub(crate) fn print_config(&self) -> bool {
        self.print_config
    }

    /// Applies the precedence: these arguments (flags, then `STRATA_*`), the config file,
    /// the defaults; then checks the result.
    ///
    /// # Errors
    /// An unreadable or invalid file (an unknown key is named), or values out of range.
    pub(crate) fn resolve(self) -> anyhow::Result<Resolved> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        anyhow::ensure!(
            !((self.data_dir.is_some() || file.data_dir.is_some())
                && (self.store.is_some() || file.store.is_some())),
            "data_dir and store exclude each other: keep the events on local disk or in PostgreSQL"
        );
        let file_run_projections = file
            .run_projections
            .as_deref()
            .map(str::parse::<strata_server::RunProjections>)
            .transpose()?;
        let defaults = strata_server::ServeConfig::default();
        let http_defaults = strata_http::HttpOptions::default();
        let persistent_defaults = strata_grpc::PersistentLimits::default();
        let resolved = Resolved {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./strata-data")),
            store: self.store.or(file.store),
            store_schema: self
                .store_schema
                .or(file.store_schema)
                .unwrap_or_else(|| "public".to_owned()),
            port: self.port.or(file.port).unwrap_or(defaults.port),
            segment_size_mib: self
                .segment_size_mib
                .or(file.segment_size_mib)
                .unwrap_or(256),
            index_memory: self
                .index_memory
                .or(file.index_memory)
                .unwrap_or(IndexMemory::Tail),
            bind: if self.bind.is_empty() {
                file.bind.unwrap_or(defaults.bind)
            } else {
                self.bind
            },
            insecure: self.insecure || file.insecure.unwrap_or(false),
            dev: self.dev || file.dev.unwrap_or(false),
            allow_anonymous: self.allow_anonymous || file.allow_anonymous.unwrap_or(false),
            default_admin_password: self
                .default_admin_password
                .or(file.default_admin_password)
                .unwrap_or_else(|| strata_auth::DEFAULT_PASSWORD.to_owned()),
            default_ops_password: self
                .default_ops_password
                .or(file.default_ops_password)
                .unwrap_or_else(|| strata_auth::DEFAULT_PASSWORD.to_owned()),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.connections_max),
            header_timeout_ms: self
                .header_timeout_ms
                .or(file.header_timeout_ms)
                .unwrap_or(defaults.header_timeout.as_millis() as u64),
            max_subscriptions: self
                .max_subscriptions
                .or(file.max_subscriptions)
                .unwrap_or(defaults.subscriptions_max),
            max_subscriptions_per_connection: self
                .max_subscriptions_per_connection
                .or(file.max_subscriptions_per_connection)
                .unwrap_or(defaults.subscriptions_per_connection_max),
            max_subscriptions_per_address: self
                .max_subscriptions_per_address
                .or(file.max_subscriptions_per_address)
                .unwrap_or(defaults.subscriptions_per_address_max),
            persistent_groups_max: self
                .persistent_groups_max
                .or(file.persistent_groups_max)
                .unwrap_or(persistent_defaults.groups_max),
            persistent_window_mib: self
                .persistent_window_mib
                .or(file.persistent_window_mib)
                .unwrap_or((persistent_defaults.window_bytes_max / (1024 * 1024)) as u64),
            http_body_max_kib: self
                .http_body_max_kib
                .or(file.http_body_max_kib)
                .unwrap_or((http_defaults.body_bytes_max / 1024) as u64),
            http_body_timeout_ms: self
                .http_body_timeout_ms
                .or(file.http_body_timeout_ms)
                .unwrap_or(http_defaults.body_timeout.as_millis() as u64),
            http_heartbeat_ms: self
                .http_heartbeat_ms
                .or(file.http_heartbeat_ms)
                .unwrap_or(http_defaults.heartbeat_interval.as_millis() as u64),
            http_max_subscriptions: self
                .http_max_subscriptions
                .or(file.http_max_subscriptions)
                .unwrap_or(http_defaults.subscriptions_max),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log_level: self
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            advertise_host: self.advertise_host.or(file.advertise_host),
            advertise_port: self.advertise_port.or(file.advertise_port),
            run_projections: self
                .run_projections
                .or(file_run_projections)
                .unwrap_or(defaults.run_projections),
            connectors: file.connectors.unwrap_or_default(),
            scavenge: file.scavenge,
        };
        resolved.check()?;
        Ok(resolved)
    }
}

fn as_text<S: serde::Serializer>(
    value: &impl std::fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("config file {}: {}", path.display(), error.message()))
}

impl Resolved {
    fn check(&self) -> anyhow::Result<()> {
        let range = |name: &str, value: u64, low: u64, high: u64| {
            anyhow::ensure!(
                (low..=high).contains(&value),
                "{name} is {value}; it must be {low} to {high}"
            );
            Ok(())
        };
        range("segment_size_mib", self.segment_size_mib, 17, 4095)?;
        range(
            "persistent_window_mib",
            self.persistent_window_mib,
            1,
            65_536,
        )?;
        range("max_connections", self.max_connections as u64, 1, u64::MAX)?;
        range(
            "max_subscriptions",
            self.max_subscriptions as u64,
            1,
            u64::MAX,
        )?;
        range(
            "max_subscriptions_per_connection",
            self.max_subscriptions_per_connection as u64,
            1,
            u64::MAX,
        )?;
        range(
            "max_subscriptions_per_address",
            self.max_subscriptions_per_address as u64,
            1,
            u64::MAX,
        )?;
        range("http_body_max_kib", self.http_body_max_kib, 1, 1024 * 1024)?;
        range("http_heartbeat_ms", self.http_heartbeat_ms, 10, 3_600_000)?;
        range("header_timeout_ms", self.header_timeout_ms, 10, 3_600_000)?;
        range(
            "http_body_timeout_ms",
            self.http_body_timeout_ms,
            10,
            3_600_000,
        )?;
        range(
            "http_max_subscriptions",
            self.http_max_subscriptions as u64,
            1,
            u64::MAX,
        )?;
        anyhow::ensure!(!self.bind.is_empty(), "bind needs at least one address");
        anyhow::ensure!(
            !(self.insecure && (self.tls_cert.is_some() || self.tls_key.is_some())),
            "insecure and tls_cert/tls_key exclude each other: serve with TLS or without"
        );
        anyhow::ensure!(
            !(self.dev && (self.insecure || self.tls_cert.is_some())),
            "dev makes its own certificate: it excludes insecure and tls_cert/tls_key"
        );
        anyhow::ensure!(
            !(self.allow_anonymous && self.insecure),
            "allow_anonymous applies with TLS; insecure serves without authentication at all"
        );
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "TLS needs both tls_cert and tls_key"
        );
        anyhow::ensure!(
            self.store.is_some() || self.store_schema == "public",
            "store_schema applies to a PostgreSQL store: give store as well"
        );
        let mut ids = std::collections::HashSet::new();
        if let Some(scavenge) = &self.scavenge {
            scavenge.to_auto()?;
        }
        for connector in &self.connectors {
            connector.validate()?;
            anyhow::ensure!(
                ids.insert(connector.id.as_str()),
                "connector {} is declared twice in [[connectors]]",
                connector.id
            );
        }
        Ok(())
    }

    /// The configuration as TOML, as `--print-config` shows it.
    pub(crate) fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot print the configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    /// The error `strata serve --config FILE` gives for a file holding `contents`.
    fn error_from_file(contents: &str) -> anyhow::Error {
        let config = file(contents);
        let path = config.path().to_str().unwrap();
        Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap_err()
    }

    #[test]
    fn index_memory_comes_from_the_flag_or_the_file_and_refuses_other_words() {
        let config = file("index_memory = \"tail\"\n");
        let path = config.path().to_str().unwrap();
        let from_file = Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap();
        assert_eq!(from_file.index_memory, IndexMemory::Tail);
        let flag_wins = Cli::parse_from(["x", "--config", path, "--index-memory", "whole"])
            .args
            .resolve()
            .unwrap();
        assert_eq!(flag_wins.index_memory, IndexMemory::Whole);
        let default = Cli::parse_from(["x"]).args.resolve().unwrap();
        assert_eq!(default.index_memory, IndexMemory::Tail);
        assert!(Cli::try_parse_from(["x", "--index-memory", "some"]).is_err());
        let error = error_from_file("index_memory = \"half\"\n");
        assert!(format!("{error:#}").contains("half"), "{error:#}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let config = file("port = 3000\nmax_connections = 7\nlog_format = \"json\"\n");
        let path = config.path().to_str().unwrap();
        let resolved = Cli::parse_from(["x", "--config", path, "--port", "4000"])
            .args
            .resolve()
            .unwrap();
        assert_eq!(resolved.port, 4000);
        assert_eq!(resolved.max_connections, 7);
        assert_eq!(resolved.log_format, LogFormat::Json);
        assert_eq!(resolved.segment_size_mib, 256);
    }

    #[test]
    fn connectors_are_read_checked_and_never_printed() {
        let text = r#"
[[connectors]]
id = "orders-to-nats"
[connectors.source]
kind = "category"
category = "order"
[connectors.sink]
type = "nats"
url = "nats://app:s3cret@127.0.0.1:4222"
subject = "events.{category}.{stream}"
"#;
        let config = file(text);
        let path = config.path().to_str().unwrap();
        let resolved = Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap();
        assert_eq!(resolved.connectors.len(), 1);
        assert_eq!(resolved.connectors[0].id, "orders-to-nats");
        assert!(!resolved.to_toml().unwrap().contains("s3cret"));

        let error = error_from_file(&text.replace("{stream}", "{strem}"));
        assert!(
            error.to_string().contains("unknown placeholder {strem}"),
            "{error}"
        );

        // A transform is JavaScript in the definition; one that does not compile stops the
        // server from starting with the reason.
        let with_transform = text.replace(
            "id = \"orders-to-nats\"\n",
            "id = \"orders-to-nats\"\ntransform = '''\n(e) => ({ type: e.type + \"V2\" })\n'''\n",
        );
        let config = file(&with_transform);
        let path = config.path().to_str().unwrap();
        let resolved = Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap();
        assert!(
            resolved.connectors[0]
                .transform
                .as_deref()
                .is_some_and(|source| source.contains("e.type + \"V2\"")),
            "{:?}",
            resolved.connectors[0].transform
        );
        let error = error_from_file(&with_transform.replace("=> ({", "=> ({{"));
        assert!(
            error.to_string().contains("the transform does not compile"),
            "{error}"
        );
    }

    #[test]
    fn run_projections_comes_from_the_flag_or_the_file_in_any_case() {
        use strata_server::RunProjections;
        let none = Cli::parse_from(["x"]).args.resolve().unwrap();
        assert_eq!(none.run_projections, RunProjections::All);
        let config = file("run_projections = \"None\"\n");
        let path = config.path().to_str().unwrap();
        let resolved = Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap();
        assert_eq!(resolved.run_projections, RunProjections::None);
        assert!(
            resolved
                .to_toml()
                .unwrap()
                .contains("run_projections = \"none\"")
        );
        let resolved = Cli::parse_from(["x", "--config", path, "--run-projections", "System"])
            .args
            .resolve()
            .unwrap();
        assert_eq!(resolved.run_projections, RunProjections::System);

        let error = error_from_file("run_projections = \"some\"\n");
        assert!(
            error.to_string().contains("must be none, system or all"),
            "{error}"
        );
        let refused = Cli::try_parse_from(["x", "--run-projections", "some"]);
        assert!(refused.is_err());
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let error = error_from_file("port = 3000\nmax_conections = 7\n");
        assert!(error.to_string().contains("max_conections"), "{error}");
    }

    #[test]
    fn values_out_of_range_are_refused_wherever_they_come_from() {
        let error = error_from_file("segment_size_mib = 4\n");
        assert!(
            error.to_string().contains("segment_size_mib is 4"),
            "{error}"
        );
    }

    #[test]
    fn the_printed_configuration_reads_back_as_a_config_file() {
        let resolved = Cli::parse_from(["x", "--insecure", "--port", "0"])
            .args
            .resolve()
            .unwrap();
        let printed = resolved.to_toml().unwrap();
        let config = file(&printed);
        let path = config.path().to_str().unwrap();
        let again = Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap();
        assert_eq!(again, resolved);
    }

    #[test]
    fn the_scavenge_table_is_read_checked_and_printed_back() {
        let config = file(
            "port = 0\n[scavenge]\nschedule = \"every 6h\"\nmin_reclaimable_bytes = 1000000\n",
        );
        let path = config.path().to_str().unwrap();
        let resolved = Cli::parse_from(["x", "--config", path])
            .args
            .resolve()
            .unwrap();
        let table = resolved.scavenge.clone().unwrap();
        assert_eq!(
            table.to_auto().unwrap(),
            strata_operations::AutoScavenge {
                schedule: strata_operations::Schedule::Every(std::time::Duration::from_secs(
                    6 * 3600
                )),
                skip_when_idle: true,
                throttle_percent: 50,
                min_reclaimable_bytes: 1_000_000,
            }
        );
        let printed = file(&resolved.to_toml().unwrap());
        let again = Cli::parse_from(["x", "--config", printed.path().to_str().unwrap()])
            .args
            .resolve()
            .unwrap();
        assert_eq!(again, resolved);

        for (text, reason) in [
            (
                "[scavenge]\nschedule = \"every 6 weeks\"\n",
                "every 6 weeks",
            ),
            (
                "[scavenge]\nschedule = \"0 3 1 * *\"\n",
                "day, month and weekday",
            ),
            (
                "[scavenge]\nschedule = \"every 1h\"\nthrottle_percent = 0\n",
                "throttle_percent is 0",
            ),
            ("[scavenge]\nschedul = \"every 1h\"\n", "schedul"),
        ] {
            let bad = file(text);
            let error = Cli::parse_from(["x", "--config", bad.path().to_str().unwrap()])
                .args
                .resolve()
                .unwrap_err();
            assert!(format!("{error:#}").contains(reason), "{text}: {error:#}");
        }
    }
}
