//! `strata serve`: the KurrentDB-compatible server over the embedded engine, or over
//! PostgreSQL with `--store postgres://...`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_core::EventStore;
use strata_engine::{Config, Store};
use strata_postgres::{PostgresConfig, PostgresStore};
use strata_server::{ServeConfig, Server, TlsFiles};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Directory of the store (created if absent).
    #[arg(long, value_name = "DIR", default_value = "./strata-data")]
    data_dir: PathBuf,
    /// Keep the events in PostgreSQL instead of --data-dir: postgres://USER@HOST[:PORT]/DB.
    /// Several servers may share one database (and schema).
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    store: Option<String>,
    /// With --store: the schema holding Strata's tables (created when absent).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "public",
        requires = "store"
    )]
    store_schema: String,
    /// Port for gRPC and HTTP; 0 picks a free one.
    #[arg(long, default_value_t = 2113)]
    port: u16,
    /// Size of each new segment file of the log, in MiB (at least 17: one 16 MiB event must
    /// fit). Fixed when the store is created; an existing store keeps its own.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(17..=4095))]
    segment_size_mib: u64,
    /// Address to listen on (repeatable); default: 127.0.0.1 and ::1.
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,
    /// Serve without TLS (HTTP/2 with prior knowledge) and without authentication: every
    /// caller may do everything; clients add `?tls=false`.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure: bool,
    /// TLS with a self-signed certificate generated into the data directory, users and
    /// ACLs on; prints a connection string. For trying Strata out securely on one machine.
    #[arg(long, conflicts_with_all = ["insecure", "tls_cert", "tls_key"])]
    dev: bool,
    /// With TLS: let callers without credentials do what ACLs grant to `$all` (off by
    /// default, as in KurrentDB since 23.10).
    #[arg(long, conflicts_with = "insecure")]
    allow_anonymous: bool,
    /// Password of the built-in `admin` user when a new store creates it.
    #[arg(long, value_name = "PASSWORD", env = "STRATA_DEFAULT_ADMIN_PASSWORD", default_value = strata_auth::DEFAULT_PASSWORD, hide_env_values = true)]
    default_admin_password: String,
    /// Password of the built-in `ops` user when a new store creates it.
    #[arg(long, value_name = "PASSWORD", env = "STRATA_DEFAULT_OPS_PASSWORD", default_value = strata_auth::DEFAULT_PASSWORD, hide_env_values = true)]
    default_ops_password: String,
    /// PEM file with the server's certificate chain (TLS is the default).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM file with the server's private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Connections open at once (all addresses together); one more is answered
    /// UNAVAILABLE (gRPC) or 503 (HTTP) and closed.
    #[arg(long, value_name = "N", default_value_t = strata_server::CONNECTIONS_MAX_DEFAULT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Catch-up subscriptions served at once; one more is refused RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = strata_grpc::SUBSCRIPTIONS_MAX_DEFAULT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_subscriptions: usize,
    /// Persistent-subscription groups that may exist at once; creating one more is refused
    /// (RESOURCE_EXHAUSTED).
    #[arg(long, value_name = "N", default_value_t = strata_grpc::PersistentLimits::default().groups_max)]
    persistent_groups_max: usize,
    /// MiB of events one persistent-subscription group holds read and unacknowledged before
    /// it stops reading its source.
    #[arg(long, value_name = "MIB", default_value_t = window_mib_default(), value_parser = clap::value_parser!(u64).range(1..=65_536))]
    persistent_window_mib: u64,
}

fn window_mib_default() -> u64 {
    let bytes = strata_grpc::PersistentLimits::default().window_bytes_max;
    u64::try_from(bytes / (1024 * 1024)).unwrap_or(u64::MAX)
}

pub(crate) fn run_blocking(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime; check the process may create threads")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(&args)?;
    let dev_banner = args.dev.then(|| DevBanner {
        admin_password: args.default_admin_password.clone(),
        ca_file: args.data_dir.join("dev-tls").join("node.crt"),
    });
    if let Some(url) = &args.store {
        let postgres = PostgresConfig::new(url.clone()).with_schema(args.store_schema.clone());
        let store = PostgresStore::open(postgres).await.with_context(|| {
            format!(
                "cannot open the store in PostgreSQL schema {:?}",
                args.store_schema
            )
        })?;
        run_server(&config, dev_banner.as_ref(), store.clone()).await?;
        store.close().await;
    } else {
        let engine_config = Config {
            segment_size_bytes: args.segment_size_mib * 1024 * 1024,
            ..Config::default()
        };
        let store = Store::open(&args.data_dir, engine_config).with_context(|| {
            format!(
                "cannot open the store in {}; choose another directory with --data-dir",
                args.data_dir.display()
            )
        })?;
        run_server(&config, dev_banner.as_ref(), store.clone()).await?;
        store.close();
    }
    eprintln!("strata serve: stopped");
    Ok(())
}

fn serve_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let tls = match (args.insecure, &args.tls_cert, &args.tls_key) {
        (true, _, _) => None,
        (false, None, None) if args.dev => Some(dev_certificate(&args.data_dir)?),
        (false, Some(certificate_chain), Some(private_key)) => Some(TlsFiles {
            certificate_chain: certificate_chain.clone(),
            private_key: private_key.clone(),
        }),
        _ => anyhow::bail!(
            "TLS needs a certificate: give --tls-cert FILE and --tls-key FILE (PEM), or serve \
             without TLS with --insecure (clients then connect with \
             `kurrentdb://localhost:{}?tls=false`)",
            args.port
        ),
    };
    let mut config = ServeConfig {
        port: args.port,
        tls,
        connections_max: args.max_connections,
        subscriptions_max: args.max_subscriptions,
        store_kind: if args.store.is_some() {
            "postgres"
        } else {
            "engine"
        }
        .to_owned(),
        persistent_limits: strata_grpc::PersistentLimits {
            groups_max: args.persistent_groups_max,
            window_bytes_max: usize::try_from(args.persistent_window_mib * 1024 * 1024)
                .unwrap_or(usize::MAX),
        },
        ..ServeConfig::default()
    };
    if !args.bind.is_empty() {
        config.bind = args.bind.clone();
    }
    if config.tls.is_some() {
        config.security = Some(strata_auth::SecurityOptions {
            admin_password: args.default_admin_password.clone(),
            ops_password: args.default_ops_password.clone(),
            allow_anonymous: args.allow_anonymous,
        });
    }
    Ok(config)
}

/// The certificate of `serve --dev`: made once for localhost, kept in the data directory.
fn dev_certificate(data_dir: &std::path::Path) -> anyhow::Result<TlsFiles> {
    let dir = data_dir.join("dev-tls");
    let files = TlsFiles {
        certificate_chain: dir.join("node.crt"),
        private_key: dir.join("node.key"),
    };
    if files.certificate_chain.exists() && files.private_key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("cannot generate a self-signed certificate")?;
    std::fs::write(&files.certificate_chain, certified.cert.pem())
        .with_context(|| format!("cannot write {}", files.certificate_chain.display()))?;
    std::fs::write(&files.private_key, certified.key_pair.serialize_pem())
        .with_context(|| format!("cannot write {}", files.private_key.display()))?;
    Ok(files)
}

/// What `serve --dev` prints so a newcomer can connect.
struct DevBanner {
    admin_password: String,
    ca_file: PathBuf,
}

/// Binds, says it is ready, and serves `store` until a stop signal.
async fn run_server<S: EventStore>(
    config: &ServeConfig,
    dev_banner: Option<&DevBanner>,
    store: Arc<S>,
) -> anyhow::Result<()> {
    let secure = config.tls.is_some();
    let mut server = Server::bind(config).await?;
    // Users exist before the server says it is ready.
    let shared: Arc<dyn EventStore> = store.clone();
    server.secure(shared).await?;
    let addresses: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    eprintln!(
        "strata serve: Strata {}, speaking the KurrentDB {} client protocol, store: {}",
        strata_grpc::STRATA_VERSION,
        strata_grpc::KURRENTDB_COMPATIBLE_VERSION,
        config.store_kind
    );
    if let (Some(banner), Some(address)) = (dev_banner, server.local_addrs().first()) {
        let ca_file = std::fs::canonicalize(&banner.ca_file).unwrap_or(banner.ca_file.clone());
        eprintln!(
            "strata serve: development mode (self-signed certificate); connect with\n  \
             kurrentdb://admin:{}@localhost:{}?tlsCaFile={}\n\
             (the admin password is the one the store was created with)",
            banner.admin_password,
            address.port(),
            ca_file.display()
        );
    }
    // One line on stdout when ready: scripts and tests wait for it.
    println!("strata serve: ready on {}", addresses.join(", "));
    if !secure {
        eprintln!("strata serve: serving without TLS or authentication (--insecure)");
    } else if config
        .security
        .as_ref()
        .is_some_and(|security| security.allow_anonymous)
    {
        eprintln!("strata serve: TLS and users on; anonymous callers allowed what ACLs grant");
    }
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    server.run(store, stop_signal()).await?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                eprintln!("strata serve: cannot watch SIGTERM ({error}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
