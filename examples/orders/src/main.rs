//! Orders on an embedded Strata store (or a running `strata serve`), with the order list in
//! PostgreSQL.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use orders::{POSTGRES_URL_DEFAULT, connect, demo};
use strata::RemoteStore;
use strata_engine::{Config, Store};

/// Places, pays, ships and cancels orders, then builds the order list in PostgreSQL.
#[derive(Parser)]
struct Args {
    /// PostgreSQL database for the order list.
    #[arg(long, env = "ORDERS_POSTGRES_URL", default_value = POSTGRES_URL_DEFAULT)]
    postgres: String,
    /// Schema of that database holding the order list and its checkpoint.
    #[arg(long, default_value = "orders_example")]
    schema: String,
    /// Store directory; default: a new temporary directory, removed at the end.
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    data_dir: Option<PathBuf>,
    /// Use a running server instead of an embedded store, e.g. `kdb://127.0.0.1:2113?tls=false`.
    #[arg(long, value_name = "URL", env = "STRATA_SERVER")]
    server: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("order list: schema {} of {}", args.schema, args.postgres);
    let client = connect(&args.postgres, &args.schema).await?;
    if let Some(url) = &args.server {
        let store = RemoteStore::connect_shared(url)
            .await
            .with_context(|| format!("cannot reach strata serve at {url}"))?;
        println!("store: strata serve at {url}");
        demo::run(store, client).await?;
        demo::print_rows(&demo::read_rows(&args.postgres, &args.schema).await?);
        return Ok(());
    }
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data_dir = args.data_dir.unwrap_or_else(|| temp.path().join("store"));
    let store = Store::open(&data_dir, Config::default())
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    println!("store: {}", data_dir.display());
    demo::run(store.clone(), client).await?;
    demo::print_rows(&demo::read_rows(&args.postgres, &args.schema).await?);
    store.close();
    Ok(())
}
