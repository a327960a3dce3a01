//! Binding the listeners and serving until a stop signal.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use strata_core::EventStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::connections::{
    Admission, CONNECTIONS_MAX_DEFAULT, ConnectionLimit, FirstRequestWatch, HEADER_TIMEOUT_DEFAULT,
};
use crate::quick_ack;
use crate::tls::{HANDSHAKE_TIMEOUT, TlsError, TlsFiles, acceptor};

/// How long in-flight calls may run on after a stop signal; subscriptions never end by
/// themselves, so they are cut after this.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Addresses to listen on; all share one port.
    pub bind: Vec<IpAddr>,
    /// `0` picks a free port (the same on every address).
    pub port: u16,
    /// `None` serves without TLS (HTTP/2 with prior knowledge, and HTTP/1.1).
    pub tls: Option<TlsFiles>,
    /// Connections open at once, over all addresses; one more is answered `UNAVAILABLE`
    /// (gRPC) or 503 (HTTP/1.1) and closed.
    pub connections_max: usize,
    /// How long a client may take to send a request's head: a new connection that has not
    /// sent a whole first request head by then is closed, and so is an HTTP/1.1
    /// connection that starts a later head (or stays idle between requests) that long.
    pub header_timeout: Duration,
    /// Catch-up subscriptions served at once; one more is refused `RESOURCE_EXHAUSTED`.
    pub subscriptions_max: usize,
    /// Catch-up subscriptions (gRPC and HTTP) one connection may hold at once; one more is
    /// refused `RESOURCE_EXHAUSTED` (gRPC) or 429 (HTTP).
    pub subscriptions_per_connection_max: usize,
    /// Catch-up subscriptions (gRPC and HTTP) the connections from one client address may
    /// hold at once together; one more is refused `RESOURCE_EXHAUSTED` (gRPC) or 429 (HTTP).
    pub subscriptions_per_address_max: usize,
    /// What `/info` and the startup log name as the store (`engine`, `postgres`, ...).
    pub store_kind: String,
    /// How many persistent-subscription groups may exist, and the bytes each may hold.
    pub persistent_limits: strata_grpc::PersistentLimits,
    /// The HTTP API's options (its `store_kind` is taken from the field above).
    pub http: strata_http::HttpOptions,
    /// Authentication and ACLs, and the passwords of the built-in users created at first
    /// start. The default serves without them, as KurrentDB's insecure mode does.
    pub security: strata_auth::SecurityOptions,
    /// The node's place in its cluster (docs/CLUSTER.md); `None` is a single node, always
    /// the leader. Persistent subscriptions and projections run on the leader only.
    pub leadership: Option<Arc<strata_core::Leadership>>,
    /// Which projections run (KurrentDB's `--run-projections`); user projections and their
    /// service only with [`crate::RunProjections::All`], the default.
    pub run_projections: crate::RunProjections,
}

impl Default for ServeConfig {
    /// Localhost on the KurrentDB port: both 127.0.0.1 and ::1, because clients resolve
    /// `localhost` to either.
    fn default() -> Self {
        Self {
            bind: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            port: 2113,
            tls: None,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            header_timeout: HEADER_TIMEOUT_DEFAULT,
            subscriptions_max: strata_grpc::SUBSCRIPTIONS_MAX_DEFAULT,
            subscriptions_per_connection_max: strata_core::CONNECTION_SUBSCRIPTIONS_MAX_DEFAULT,
            subscriptions_per_address_max: strata_core::ADDRESS_SUBSCRIPTIONS_MAX_DEFAULT,
            store_kind: "engine".to_owned(),
            persistent_limits: strata_grpc::PersistentLimits::default(),
            http: strata_http::HttpOptions::default(),
            security: strata_auth::SecurityOptions {
                authentication: false,
                ..strata_auth::SecurityOptions::default()
            },
            leadership: None,
            run_projections: crate::RunProjections::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(
        "cannot listen on {address}: {source}; is another server using the port? choose one with --port"
    )]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no address to listen on: give at least one --bind")]
    NoAddress,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot set up users and ACLs: {0}")]
    Security(#[from] strata_auth::AuthError),
    #[error("cannot restore the projections: {0}")]
    Projections(#[from] strata_projections::ProjectionError),
    #[error("serving on {address} failed: {source}")]
    Serve {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bound listeners, not yet serving.
pub struct Server {
    listeners: Vec<TcpListener>,
    local_addrs: Vec<SocketAddr>,
    tls: Option<TlsAcceptor>,
    connections: ConnectionLimit,
    header_timeout: Duration,
    subscriptions_max: usize,
    subscriptions_per_connection_max: usize,
    /// The subscription places of each client address, shared by every listener.
    address_subscriptions: strata_core::AddressSubscriptions,
    store_kind: String,
    persistent_limits: strata_grpc::PersistentLimits,
    http: strata_http::HttpOptions,
    security: strata_auth::SecurityOptions,
    /// Users and ACLs once set up ([`Server::secure`]).
    secured: Option<Arc<strata_auth::Security>>,
    /// The node's metrics, when the caller feeds them too ([`Server::with_metrics`]).
    metrics: Option<Arc<strata_http::Metrics>>,
    /// More routes served beside the API ([`Server::with_routes`]).
    routes: Option<axum::Router>,
    leadership: Option<Arc<strata_core::Leadership>>,
    /// What the store can run besides reads and writes ([`Server::with_maintenance`]).
    maintenance: Option<Arc<dyn strata_core::Maintenance>>,
    /// Automatic scavenging ([`Server::with_auto_scavenge`]).
    auto_scavenge: Option<strata_operations::AutoScavenge>,
    run_projections: crate::RunProjections,
}

impl Server {
    /// Binds every address of `config` on one port.
    ///
    /// # Errors
    /// [`ServeError::Tls`] when the certificate or key cannot be used;
    /// [`ServeError::Bind`] when an address cannot be bound.
    pub async fn bind(config: &ServeConfig) -> Result<Server, ServeError> {
        let tls = config.tls.as_ref().map(acceptor).transpose()?;
        let (first, rest) = config.bind.split_first().ok_or(ServeError::NoAddress)?;
        let first_listener = bind_one(SocketAddr::new(*first, config.port)).await?;
        let port = local_addr(&first_listener)?.port();
        let mut listeners = vec![first_listener];
        for address in rest {
            listeners.push(bind_one(SocketAddr::new(*address, port)).await?);
        }
        let local_addrs = listeners.iter().map(local_addr).collect::<Result<_, _>>()?;
        Ok(Server {
            listeners,
            local_addrs,
            tls,
            connections: ConnectionLimit::new(config.connections_max),
            header_timeout: config.header_timeout,
            subscriptions_max: config.subscriptions_max,
            subscriptions_per_connection_max: config.subscriptions_per_connection_max,
            address_subscriptions: strata_core::AddressSubscriptions::new(
                config.subscriptions_per_address_max,
            ),
            store_kind: config.store_kind.clone(),
            persistent_limits: config.persistent_limits,
            http: config.http.clone(),
            security: config.security.clone(),
            secured: None,
            metrics: None,
            routes: None,
            leadership: config.leadership.clone(),
            maintenance: None,
            auto_scavenge: None,
            run_projections: config.run_projections,
        })
    }

    /// Lets operators scavenge the store and checkpoint its indexes (gRPC `Operations`,
    /// `/v1/admin/scavenges`); without it those calls answer that the store cannot.
    #[must_use]
    pub fn with_maintenance(mut self, maintenance: Arc<dyn strata_core::Maintenance>) -> Self {
        self.maintenance = Some(maintenance);
        self
    }

    /// Scavenges on `auto`'s schedule, through the same job manager as operators.
    #[must_use]
    pub fn with_auto_scavenge(mut self, auto: strata_operations::AutoScavenge) -> Self {
        self.auto_scavenge = Some(auto);
        self
    }

    /// Serves `metrics` at `/metrics` and counts into them, so the caller can feed them
    /// what only it knows (the store's group commits, say); a fresh set otherwise.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<strata_http::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves `routes` too (e.g. `strata_http::connectors_router`), under the same
    /// metrics, request ids, limits and TLS; added to any given before.
    #[must_use]
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.routes = Some(match self.routes.take() {
            Some(before) => before.merge(routes),
            None => routes,
        });
        self
    }

    /// The HTTP options the API will serve with (body limits and timeouts).
    pub fn http_options(&self) -> &strata_http::HttpOptions {
        &self.http
    }

    /// Runs leader-only work (persistent subscriptions, projections) on the leader of
    /// `leadership`'s cluster only (docs/CLUSTER.md).
    pub fn with_leadership(mut self, leadership: Arc<strata_core::Leadership>) -> Self {
        self.leadership = Some(leadership);
        self
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Sets up users and ACLs over `store` as the configuration asks (with authentication,
    /// creating the built-in users in a new store), so a caller can do it before announcing
    /// that the server is ready. [`Server::run`] does it otherwise.
    ///
    /// # Errors
    /// [`ServeError::Security`] when those streams cannot be read or written.
    pub async fn secure(
        &mut self,
        store: Arc<dyn EventStore>,
    ) -> Result<Arc<strata_auth::Security>, ServeError> {
        if let Some(secured) = &self.secured {
            return Ok(Arc::clone(secured));
        }
        let secured = strata_auth::Security::open(store, self.security.clone()).await?;
        self.secured = Some(Arc::clone(&secured));
        Ok(secured)
    }

    /// The gRPC front end's options; logs what is served.
    fn grpc_options(
        &self,
        security: Option<Arc<strata_auth::Security>>,
    ) -> strata_grpc::GrpcOptions {
        tracing::info!(
            strata_version = strata_grpc::STRATA_VERSION,
            kurrentdb_compatible_version = strata_grpc::KURRENTDB_COMPATIBLE_VERSION,
            store = %self.store_kind,
            "serving"
        );
        let advertised = self.local_addrs[0];
        strata_grpc::GrpcOptions {
            subscriptions_max: self.subscriptions_max,
            persistent_limits: self.persistent_limits,
            security,
            leadership: self.leadership.clone(),
            ..strata_grpc::GrpcOptions::new(strata_grpc::Advertised::new(
                advertised.ip().to_string(),
                advertised.port(),
            ))
        }
    }

    /// Serves `store` until `stop` completes, then lets in-flight calls finish for a grace
    /// period.
    ///
    /// # Errors
    /// [`ServeError::Serve`] when a listener fails; [`ServeError::Security`] when the
    /// built-in users or settings cannot be read or written.
    pub async fn run<S: EventStore>(
        mut self,
        store: Arc<S>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let shared: Arc<dyn EventStore> = store.clone();
        let security = self.secure(shared).await?;
        let metrics = self
            .metrics
            .take()
            .unwrap_or_else(|| Arc::new(strata_http::Metrics::new()));
        if let Some(leadership) = &self.leadership {
            let leadership = Arc::clone(leadership);
            metrics.on_scrape(move |metrics| {
                metrics.set_cluster(leadership.is_leader(), leadership.view().epoch);
            });
        }
        // Both front ends count what they read and write through the same store.
        let store = Arc::new(strata_http::MeteredStore::new(store, Arc::clone(&metrics)));
        // Projections run where the store is served: every stored enabled projection starts
        // here from its checkpoint (docs/PROJECTIONS.md).
        // In a cluster they run on the leader only, and their writes are fenced.
        let projected: Arc<dyn EventStore> = match &self.leadership {
            Some(leadership) => Arc::new(strata_core::FencedStore::new(
                store.clone(),
                Arc::clone(leadership),
            )),
            None => store.clone(),
        };
        // With `run_projections` other than `all`, no manager: the services are left out.
        let projections = if self.run_projections.runs_user_projections() {
            Some(
                strata_projections::ProjectionManager::start(
                    projected,
                    Arc::new(strata_projections::QuickJsEngine),
                    strata_projections::SandboxLimits::default(),
                )
                .await?,
            )
        } else {
            tracing::info!(run_projections = %self.run_projections, "running no user projections");
            None
        };
        if let Some(projections) = &projections {
            let sampled = Arc::downgrade(projections);
            metrics.on_scrape(move |metrics| {
                if let Some(statistics) = sampled.upgrade().and_then(|p| p.try_statistics()) {
                    let samples: Vec<strata_http::ProjectionSample> = statistics
                        .into_iter()
                        .map(|projection| strata_http::ProjectionSample {
                            name: projection.name,
                            status: projection.status,
                            progress: f64::from(projection.progress) / 100.0,
                            events_processed_after_restart: projection
                                .events_processed_after_restart,
                        })
                        .collect();
                    metrics.set_projections(&samples);
                }
            });
            if let Some(leadership) = &self.leadership {
                crate::leader_only::follow(leadership, Arc::downgrade(projections)).await;
            }
        }
        // Scavenges, shutdown and index merges, for gRPC and HTTP alike (docs/SCAVENGING.md).
        let scavenges = strata_operations::ScavengeJobs::new(
            store.clone(),
            self.maintenance.clone(),
            self.local_addrs[0].to_string(),
        );
        // Runs of earlier lives, from the `$scavenges` streams.
        scavenges.load_history().await;
        let operations =
            strata_operations::NodeOperations::new(scavenges.clone(), self.maintenance.clone());
        let automatic = self
            .auto_scavenge
            .take()
            .map(|auto| scavenges.spawn_automatic(auto));
        let grpc_options = strata_grpc::GrpcOptions {
            projections: projections.clone(),
            operations: Some(operations.clone()),
            subscription_progress: metrics.grpc_subscriptions().clone(),
            ..self.grpc_options(Some(Arc::clone(&security)))
        };
        let services = strata_grpc::services_with(Arc::clone(&store), grpc_options);
        let persistent_subscriptions = services.persistent_subscriptions;
        let streams = services.streams;
        let http_options = strata_http::HttpOptions {
            store_kind: self.store_kind.clone(),
            kurrentdb_compatible_version: strata_grpc::KURRENTDB_COMPATIBLE_VERSION.to_owned(),
            leadership: self.leadership.clone(),
            ..self.http.clone()
        };
        let mut http = strata_http::HttpApi::new(
            store,
            Arc::clone(&persistent_subscriptions),
            Arc::clone(&metrics),
            http_options,
        );
        http = http.with_security(Arc::clone(&security));
        if let Some(projections) = &projections {
            http = http.with_projections(Arc::clone(projections));
        }
        let scavenge_routes = strata_http::scavenges_router(
            operations.clone(),
            Arc::clone(&security),
            self.http.clone(),
        );
        let mut router = services
            .routes
            .into_axum_router()
            .merge(http.router())
            .merge(scavenge_routes);
        if let Some(routes) = self.routes.take() {
            router = router.merge(routes);
        }
        let router = router.fallback(strata_http::fallback);
        let router = strata_http::track(crate::dispatch::Dispatch::new(streams, router), metrics);
        let (stopping, stopped) = watch::channel(false);
        let http = Arc::new(connection_builder(self.header_timeout));
        let mut serving = tokio::task::JoinSet::new();
        for (listener, address) in self.listeners.into_iter().zip(self.local_addrs) {
            let accepting = Accepting {
                tls: self.tls.clone(),
                router: router.clone(),
                http: Arc::clone(&http),
                limit: self.connections.clone(),
                header_timeout: self.header_timeout,
                subscriptions_per_connection_max: self.subscriptions_per_connection_max,
                address_subscriptions: self.address_subscriptions.clone(),
            };
            serving.spawn(accepting.serve(listener, stopped.clone()));
            tracing::debug!(%address, "accepting connections");
        }
        let shutdown = operations.clone();
        tokio::spawn(async move {
            // A signal, or an operator's Shutdown call.
            tokio::select! {
                () = stop => {}
                () = shutdown.shutdown_requested() => {}
            }
            let _ = stopping.send(true);
        });
        let mut stopped = stopped;
        let _ = stopped.wait_for(|&stop| stop).await;
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(outcome) = serving.join_next().await {
                if let Ok(Err(error)) = outcome {
                    return Err(error);
                }
            }
            Ok(())
        })
        .await;
        let outcome = match finished {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::info!("cutting calls still open after the grace period (subscriptions)");
                serving.abort_all();
                Ok(())
            }
        };
        // A scavenge stops after its segment, and groups and projections write their last
        // checkpoints, while the store is still open.
        if let Some(automatic) = automatic {
            automatic.abort();
        }
        scavenges.shutdown().await;
        persistent_subscriptions.shutdown().await;
        if let Some(projections) = projections {
            projections.shutdown().await;
        }
        outcome
    }
}

/// HTTP/1.1 and HTTP/2 on one connection, as the client chooses, with the head deadline
/// on every HTTP/1.1 request (and between them), and keep-alive pings on HTTP/2 that close
/// connections whose peer is gone.
fn connection_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .enable_connect_protocol()
        // gRPC answers need no `Date`; `Tracked` dates the others (strata-http tracked.rs).
        .auto_date_header(false);
    builder
}

/// How often an HTTP/2 connection is pinged, and how long the answer may take before the
/// connection is closed as dead.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What one listener needs to accept and serve connections.
struct Accepting {
    tls: Option<TlsAcceptor>,
    router: strata_http::Tracked<crate::dispatch::Dispatch>,
    http: Arc<auto::Builder<TokioExecutor>>,
    limit: ConnectionLimit,
    header_timeout: Duration,
    subscriptions_per_connection_max: usize,
    address_subscriptions: strata_core::AddressSubscriptions,
}

impl Accepting {
    /// Accepts connections and serves each (HTTP/2 or HTTP/1.1; over TLS as ALPN chose)
    /// until the stop signal; then waits for the open connections to finish.
    async fn serve(
        self,
        listener: TcpListener,
        mut stopped: watch::Receiver<bool>,
    ) -> Result<(), ServeError> {
        let graceful = GracefulShutdown::new();
        let this = Arc::new(self);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = quick_ack::accept(&listener) => accepted,
                _ = stopped.wait_for(|&stop| stop) => break,
            };
            let admission = this.limit.admit();
            if let Admission::Close = admission {
                continue;
            }
            let (this, watcher) = (Arc::clone(&this), graceful.watcher());
            tokio::spawn(async move {
                let Some(tls) = this.tls.clone() else {
                    return this
                        .serve_admitted(tcp, admission, peer, false, watcher)
                        .await;
                };
                // The handshake counts against the head deadline too.
                let Ok(Ok(stream)) = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT.min(this.header_timeout),
                    tls.accept(tcp),
                )
                .await
                else {
                    return;
                };
                // Failed logins are slowed down per address (strata-auth reads it).
                this.serve_admitted(stream, admission, peer, true, watcher)
                    .await;
            });
        }
        graceful.shutdown().await;
        Ok(())
    }

    /// Serves one connection from `peer`, or refuses it when it is over the limit. A
    /// connection that has not sent a whole request head within the head deadline is
    /// closed. `secure`: over TLS, where failed logins are slowed down per address.
    async fn serve_admitted<I>(
        &self,
        io: I,
        admission: Admission,
        peer: SocketAddr,
        secure: bool,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _permit = match admission {
            Admission::Serve(permit) => permit,
            Admission::Refuse(refusing) => return self.limit.refuse(io, refusing).await,
            Admission::Close => return,
        };
        // Every request of this connection carries its subscription places (counted
        // against its client address's too) and, over TLS, its source address (failed
        // logins are slowed down per address).
        let subscriptions = self
            .address_subscriptions
            .connection(peer.ip(), self.subscriptions_per_connection_max);
        let source = secure.then(|| strata_auth::SourceAddress(peer.ip()));
        let (service, first_request) =
            FirstRequestWatch::new(self.router.clone(), subscriptions, source);
        let connection = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let watched = watcher.watch(connection);
        tokio::pin!(watched);
        tokio::select! {
            _ = watched.as_mut() => return,
            () = tokio::time::sleep(self.header_timeout) => {}
        }
        if !first_request.arrived() {
            // Dropping the connection closes it: nothing was asked, nothing is lost.
            tracing::debug!("closing a connection that sent no request head in time");
            return;
        }
        let _ = watched.await;
    }
}

async fn bind_one(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServeError> {
    listener.local_addr().map_err(|source| ServeError::Serve {
        address: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        source,
    })
}
