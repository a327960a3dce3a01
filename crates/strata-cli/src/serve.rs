//! `strata serve`: the KurrentDB-compatible server over the embedded engine.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_engine::{Config, Store};
use strata_server::{ServeConfig, Server};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Directory of the store (created if absent).
    #[arg(long, value_name = "DIR", default_value = "./strata-data")]
    data_dir: PathBuf,
    /// Port for gRPC and HTTP; 0 picks a free one.
    #[arg(long, default_value_t = 2113)]
    port: u16,
    /// Address to listen on (repeatable); default: 127.0.0.1 and ::1.
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,
    /// Serve without TLS (HTTP/2 with prior knowledge). Required for now: TLS is not
    /// implemented yet.
    #[arg(long)]
    insecure: bool,
}

pub(crate) fn run_blocking(args: ServeArgs) -> anyhow::Result<()> {
    if !args.insecure {
        anyhow::bail!(
            "TLS is not supported yet: run `strata serve --insecure` and connect with \
             `kurrentdb://localhost:{}?tls=false`",
            args.port
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime; check the process may create threads")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.data_dir, Config::default()).with_context(|| {
        format!(
            "cannot open the store in {}; choose another directory with --data-dir",
            args.data_dir.display()
        )
    })?;
    let mut config = ServeConfig {
        port: args.port,
        ..ServeConfig::default()
    };
    if !args.bind.is_empty() {
        config.bind = args.bind;
    }
    let server = Server::bind(&config).await?;
    let addresses: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    // One line on stdout when ready: scripts and tests wait for it.
    println!("strata serve: ready on {}", addresses.join(", "));
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    server.run(store.clone(), stop_signal()).await?;
    store.close();
    eprintln!("strata serve: stopped");
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
