//! `strata cluster`: the members and leader of a PostgreSQL cluster, read from its
//! membership tables, and a request that the leader resign (docs/CLUSTER.md).

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_postgres::PostgresConfig;

#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// The cluster's database: postgres://USER@HOST[:PORT]/DB (default: STRATA_STORE).
    #[arg(long, value_name = "URL", env = "STRATA_STORE", global = true)]
    store: Option<String>,
    /// The schema the nodes share [default: public].
    #[arg(
        long,
        value_name = "NAME",
        env = "STRATA_STORE_SCHEMA",
        global = true,
        default_value = "public"
    )]
    store_schema: String,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The members (address, alive, leader) and the leadership term.
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the leader to give up the leadership; another node takes over within a few
    /// seconds, and the old leader stays a follower for three leases.
    Resign,
}

pub(crate) fn run(args: &ClusterArgs) -> anyhow::Result<()> {
    let Some(url) = &args.store else {
        crate::data::usage_bail!(
            "give the cluster's database with --store postgres://... or STRATA_STORE"
        );
    };
    let config = PostgresConfig::new(url.clone()).with_schema(args.store_schema.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match args.command {
            ClusterCommand::Status { json } => status(&config, json).await,
            ClusterCommand::Resign => {
                match strata_postgres::request_resignation(&config)
                    .await
                    .context("cannot ask the leader to resign")?
                {
                    Some(node) => println!("asked leader {node} to resign"),
                    None => anyhow::bail!("no node leads the cluster now; nothing to resign"),
                }
                Ok(())
            }
        }
    })
}

async fn status(config: &PostgresConfig, json: bool) -> anyhow::Result<()> {
    let status = strata_postgres::cluster_status(config)
        .await
        .context("cannot read the cluster's members")?;
    if json {
        let members: Vec<serde_json::Value> = status
            .members
            .iter()
            .map(|member| {
                serde_json::json!({
                    "node_id": member.node_id.to_string(),
                    "host": member.address.host,
                    "port": member.address.port,
                    "alive": member.alive,
                    "state": if member.leader { "leader" } else if member.alive { "follower" } else { "dead" },
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "epoch": status.epoch, "members": members })
        );
        return Ok(());
    }
    println!("leadership term (epoch): {}", status.epoch);
    println!("{:<38} {:<28} {:<9}", "NODE", "ADDRESS", "STATE");
    for member in &status.members {
        let state = if member.leader {
            "leader"
        } else if member.alive {
            "follower"
        } else {
            "dead"
        };
        println!(
            "{:<38} {:<28} {:<9}",
            member.node_id,
            format!("{}:{}", member.address.host, member.address.port),
            state
        );
    }
    Ok(())
}
