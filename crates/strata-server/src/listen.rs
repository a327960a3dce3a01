//! Binding the listeners and serving until a stop signal.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use strata_core::EventStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

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
    /// How many persistent-subscription groups may exist, and the bytes each may hold.
    pub persistent_limits: strata_grpc::PersistentLimits,
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
            persistent_limits: strata_grpc::PersistentLimits::default(),
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
    persistent_limits: strata_grpc::PersistentLimits,
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
            persistent_limits: config.persistent_limits,
        })
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Serves `store` until `stop` completes, then lets in-flight calls finish for a grace
    /// period.
    ///
    /// # Errors
    /// [`ServeError::Serve`] when a listener fails.
    pub async fn run<S: EventStore>(
        self,
        store: Arc<S>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let advertised = self.local_addrs[0];
        let services = strata_grpc::services_with(
            store,
            strata_grpc::Advertised::new(advertised.ip().to_string(), advertised.port()),
            self.persistent_limits,
        );
        let persistent_subscriptions = services.persistent_subscriptions;
        let router = services
            .routes
            .into_axum_router()
            .merge(crate::health::routes());
        let (stopping, stopped) = watch::channel(false);
        let mut serving = tokio::task::JoinSet::new();
        for (listener, address) in self.listeners.into_iter().zip(self.local_addrs) {
            let mut stopped = stopped.clone();
            let router = router.clone();
            match self.tls.clone() {
                Some(tls) => {
                    serving.spawn(serve_tls(listener, address, tls, router, stopped));
                }
                None => {
                    // gRPC answers are small and latency-bound: no Nagle delays.
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    serving.spawn(async move {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(async move {
                                let _ = stopped.wait_for(|&stop| stop).await;
                            })
                            .await
                            .map_err(|source| ServeError::Serve { address, source })
                    });
                }
            }
        }
        tokio::spawn(async move {
            stop.await;
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
        // Groups write their last checkpoints while the store is still open.
        persistent_subscriptions.shutdown().await;
        outcome
    }
}

/// Accepts TLS connections and serves each (HTTP/2 or HTTP/1.1, as ALPN chose) until the
/// stop signal; then waits for the open connections to finish.
async fn serve_tls(
    listener: TcpListener,
    address: SocketAddr,
    tls: TlsAcceptor,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|&stop| stop) => break,
        };
        let (tcp, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(%error, %address, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tls, router, watcher) = (tls.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await
            else {
                return;
            };
            let service = TowerToHyperService::new(router);
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let _ = watcher.watch(connection).await;
        });
    }
    graceful.shutdown().await;
    Ok(())
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
