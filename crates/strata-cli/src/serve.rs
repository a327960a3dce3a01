//! `strata serve`: the KurrentDB-compatible server over the embedded engine, or over
//! PostgreSQL with `--store postgres://...`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use strata_core::EventStore;
use strata_engine::{Config, Store};
use strata_postgres::{PostgresConfig, PostgresStore};
use strata_server::{ServeConfig, Server, TlsFiles};

use crate::serve_config::{IndexMemory, LogFormat, Resolved};

pub(crate) use crate::serve_config::ServeArgs;

pub(crate) fn run_blocking(args: ServeArgs) -> anyhow::Result<()> {
    let print_only = args.print_config();
    let config = args.resolve()?;
    if print_only {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime; check the process may create threads")?;
    runtime.block_on(serve(config))
}

/// Log lines on stderr, as text or one JSON object per line; text is coloured only when
/// stderr is a terminal and `NO_COLOR` is unset.
fn init_logging(config: &Resolved) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log_level {:?} is not a tracing filter", config.log_level))?;
    // Styling is not only for people: the formatter writes each request span's styled field
    // when the span is made, on every call, whether or not a line is logged in it.
    let coloured = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(coloured)
        .with_writer(std::io::stderr);
    let installed = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

async fn serve(args: Resolved) -> anyhow::Result<()> {
    let config = serve_config(&args)?;
    let auto_scavenge = args
        .scavenge
        .as_ref()
        .map(crate::serve_config::AutoScavengeConfig::to_auto)
        .transpose()?;
    let dev_banner = args.dev.then(|| DevBanner {
        admin_password: args.default_admin_password.clone(),
        ca_file: args.data_dir.join("dev-tls").join("node.crt"),
    });
    if let Some(url) = &args.store {
        let mut postgres = PostgresConfig::new(url.clone()).with_schema(args.store_schema.clone());
        // Each node's sessions carry its id, so an operator can tell them apart.
        let node_id = uuid::Uuid::new_v4();
        postgres.application_name = format!("strata-{}", &node_id.simple().to_string()[..12]);
        let store = PostgresStore::open(postgres).await.with_context(|| {
            format!(
                "cannot open the store in PostgreSQL schema {:?}",
                args.store_schema
            )
        })?;
        let metrics = postgres_metrics(&store);
        let cluster = ClusterJoin {
            node_id,
            postgres: store.config().clone(),
            advertise_host: args.advertise_host.clone(),
            advertise_port: args.advertise_port,
        };
        run_server(
            &config,
            dev_banner.as_ref(),
            store.clone(),
            metrics,
            &args.connectors,
            Some(cluster),
            Housekeeping {
                maintenance: Some(store.clone()),
                auto_scavenge: auto_scavenge.clone(),
            },
        )
        .await?;
        store.close().await;
    } else {
        let engine_config = Config {
            segment_size_bytes: args.segment_size_mib * 1024 * 1024,
            index_memory_tail_only: args.index_memory == IndexMemory::Tail,
            ..Config::default()
        };
        let store = Store::open(&args.data_dir, engine_config).with_context(|| {
            format!(
                "cannot open the store in {}; choose another directory with --data-dir",
                args.data_dir.display()
            )
        })?;
        let metrics = engine_metrics(&store);
        run_server(
            &config,
            dev_banner.as_ref(),
            store.clone(),
            metrics,
            &args.connectors,
            None,
            Housekeeping {
                maintenance: Some(store.clone()),
                auto_scavenge,
            },
        )
        .await?;
        store.close();
    }
    eprintln!("strata serve: stopped");
    Ok(())
}

fn serve_config(args: &Resolved) -> anyhow::Result<ServeConfig> {
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
        bind: args.bind.clone(),
        port: args.port,
        tls,
        connections_max: args.max_connections,
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
        subscriptions_max: args.max_subscriptions,
        subscriptions_per_connection_max: args.max_subscriptions_per_connection,
        subscriptions_per_address_max: args.max_subscriptions_per_address,
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
        http: strata_http::HttpOptions {
            body_bytes_max: usize::try_from(args.http_body_max_kib * 1024).unwrap_or(usize::MAX),
            body_timeout: std::time::Duration::from_millis(args.http_body_timeout_ms),
            heartbeat_interval: std::time::Duration::from_millis(args.http_heartbeat_ms),
            subscriptions_max: args.http_max_subscriptions,
            ..strata_http::HttpOptions::default()
        },
        run_projections: args.run_projections,
        ..ServeConfig::default()
    };
    // Authentication (and with it the built-in users) comes with TLS.
    config.security = strata_auth::SecurityOptions {
        admin_password: args.default_admin_password.clone(),
        ops_password: args.default_ops_password.clone(),
        allow_anonymous: args.allow_anonymous,
        authentication: config.tls.is_some(),
    };
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
/// Metrics fed by the engine too: its group commits, and its appends in flight.
fn engine_metrics(store: &Arc<Store>) -> Arc<strata_http::Metrics> {
    struct Commits(Arc<strata_http::Metrics>);
    impl strata_engine::CommitObserver for Commits {
        fn committed(&self, stats: &strata_engine::CommitStats) {
            self.0
                .record_commit(stats.requests, stats.bytes, stats.sync, stats.flush);
        }
    }
    let metrics = Arc::new(strata_http::Metrics::new());
    store.observe_commits(Arc::new(Commits(Arc::clone(&metrics))));
    // Weak: the store holds the metrics (as its observer), not the other way round.
    let weak = Arc::downgrade(store);
    metrics.on_scrape(move |metrics| {
        if let Some(store) = weak.upgrade() {
            metrics.set_appends_in_flight_kib(store.appends_in_flight_kib() as u64);
        }
    });
    metrics
}

/// Metrics fed by the PostgreSQL store too: its group commits and its reader connections.
fn postgres_metrics(store: &Arc<PostgresStore>) -> Arc<strata_http::Metrics> {
    struct Commits(Arc<strata_http::Metrics>);
    impl strata_postgres::CommitObserver for Commits {
        fn committed(&self, commit: &strata_postgres::GroupCommit) {
            self.0.record_commit(
                commit.requests,
                commit.bytes,
                std::time::Duration::ZERO,
                commit.duration,
            );
        }
    }
    let metrics = Arc::new(strata_http::Metrics::new());
    store.observe_commits(Arc::new(Commits(Arc::clone(&metrics))));
    let weak = Arc::downgrade(store);
    metrics.on_scrape(move |metrics| {
        if let Some(store) = weak.upgrade() {
            metrics.set_postgres_reader_connections(store.reader_connections_open());
        }
    });
    metrics
}

/// How a node on PostgreSQL joins its cluster.
struct ClusterJoin {
    node_id: uuid::Uuid,
    postgres: PostgresConfig,
    advertise_host: Option<String>,
    advertise_port: Option<u16>,
}

/// What the server may run on the store besides serving it.
struct Housekeeping {
    /// Scavenges and index checkpoints; `None` for a store that cannot.
    maintenance: Option<Arc<dyn strata_core::Maintenance>>,
    /// The `[scavenge]` schedule.
    auto_scavenge: Option<strata_operations::AutoScavenge>,
}

async fn run_server<S: EventStore>(
    config: &ServeConfig,
    dev_banner: Option<&DevBanner>,
    store: Arc<S>,
    metrics: Arc<strata_http::Metrics>,
    declared_connectors: &[strata_connectors::ConnectorDefinition],
    cluster: Option<ClusterJoin>,
    housekeeping: Housekeeping,
) -> anyhow::Result<()> {
    let secure = config.tls.is_some();
    let mut server = Server::bind(config)
        .await?
        .with_metrics(Arc::clone(&metrics));
    // Scavenges (operators' and automatic ones) on a store that can run them.
    if let Some(maintenance) = housekeeping.maintenance {
        server = server.with_maintenance(maintenance);
    }
    if let Some(auto) = housekeeping.auto_scavenge {
        server = server.with_auto_scavenge(auto);
    }
    let membership = cluster.map(|join| {
        let bound = server.local_addrs()[0];
        let advertised = strata_core::NodeAddress {
            host: join
                .advertise_host
                .unwrap_or_else(|| bound.ip().to_string()),
            port: join.advertise_port.unwrap_or(bound.port()),
        };
        eprintln!(
            "strata serve: joining the cluster of schema {:?} as {}:{}",
            join.postgres.schema, advertised.host, advertised.port
        );
        strata_postgres::PostgresCluster::join(
            join.postgres,
            strata_postgres::ClusterOptions {
                node_id: join.node_id,
                ..strata_postgres::ClusterOptions::new(advertised)
            },
        )
    });
    let leadership = membership
        .as_ref()
        .map(strata_postgres::PostgresCluster::leadership);
    if let Some(leadership) = &leadership {
        server = server.with_leadership(Arc::clone(leadership));
    }
    // Users exist before the server says it is ready.
    let shared: Arc<dyn EventStore> = store.clone();
    let security = server.secure(Arc::clone(&shared)).await?;
    for definition in declared_connectors {
        definition
            .validate()
            .context("cannot apply [[connectors]]")?;
    }
    // Connectors run beside the server, on the leader only in a cluster (each term opens
    // them afresh from the store); a broker that is down shows as retrying. They are
    // managed over HTTP at /connectors (ops and admins) and measured at /metrics.
    let (current, running) = tokio::sync::watch::channel(None);
    let connectors = Arc::new(LeaderConnectors {
        store: match &leadership {
            Some(leadership) => Arc::new(strata_core::FencedStore::new(
                shared,
                Arc::clone(leadership),
            )),
            None => shared,
        },
        declared: declared_connectors.to_vec(),
        lock: tokio::sync::Mutex::new(()),
        current,
    });
    match &leadership {
        None => connectors.start_checked().await?,
        Some(leadership) => {
            strata_server::follow_leadership(
                leadership,
                Arc::downgrade(&connectors),
                |connectors| {
                    Box::pin(async move {
                        if let Err(error) = connectors.start_checked().await {
                            eprintln!("strata serve: connectors not started: {error:#}");
                        }
                    })
                },
                |connectors| Box::pin(async move { connectors.stop().await }),
            )
            .await;
        }
    }
    let routes =
        strata_http::connectors_router(running.clone(), security, server.http_options().clone());
    server = server.with_routes(routes);
    let refresh = strata_http::spawn_connector_metrics(
        running,
        Arc::clone(&metrics),
        std::time::Duration::from_secs(2),
    );
    // A node of a cluster says it is ready once it knows who leads (itself after one lease
    // when it takes the leader lock; the table may still name a leader that died), so
    // leader-only calls made right after work.
    if let Some(leadership) = &leadership {
        let mut view = leadership.watch();
        let elected = view.wait_for(|view| view.settled);
        if tokio::time::timeout(LEADER_WAIT, elected).await.is_err() {
            eprintln!(
                "strata serve: no cluster leader after {LEADER_WAIT:?}; serving as a follower \
                 until one is elected"
            );
        }
        // A leader's connectors are up before it says it is ready (the leadership watcher
        // starts them too; starting is idempotent).
        let leads = leadership.watch().borrow().role == strata_core::NodeRole::Leader;
        if leads && let Err(error) = connectors.start_checked().await {
            eprintln!("strata serve: connectors not started: {error:#}");
        }
    }
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
    } else if config.security.allow_anonymous {
        eprintln!("strata serve: TLS and users on; anonymous callers allowed what ACLs grant");
    }
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    let served = server.run(store, stop_signal()).await;
    refresh.abort();
    connectors.stop().await;
    if let Some(membership) = membership {
        membership.leave().await;
    }
    served?;
    Ok(())
}

/// How long a node of a cluster waits to learn its leader before it says it is ready.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The connectors, while this node runs them (always for a single node; while it leads,
/// in a cluster: each term opens them afresh from the store), published to the HTTP
/// management routes and the metrics through `current`.
struct LeaderConnectors {
    store: Arc<dyn EventStore>,
    declared: Vec<strata_connectors::ConnectorDefinition>,
    /// Orders starts and stops.
    lock: tokio::sync::Mutex<()>,
    current: tokio::sync::watch::Sender<Option<Arc<strata_connectors::Connectors>>>,
}

impl LeaderConnectors {
    async fn start_checked(&self) -> anyhow::Result<()> {
        let _started = self.lock.lock().await;
        if self.current.borrow().is_some() {
            return Ok(());
        }
        let connectors = strata_connectors::Connectors::open(Arc::clone(&self.store))
            .await
            .context("cannot load the connectors")?;
        for (id, outcome) in connectors
            .declare(self.declared.clone())
            .await
            .context("cannot apply [[connectors]]")?
        {
            eprintln!("strata serve: connector {id}: {outcome:?}");
        }
        self.current.send_replace(Some(Arc::new(connectors)));
        Ok(())
    }

    async fn stop(&self) {
        let _stopped = self.lock.lock().await;
        if let Some(connectors) = self.current.send_replace(None) {
            connectors.shutdown().await;
        }
    }
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
