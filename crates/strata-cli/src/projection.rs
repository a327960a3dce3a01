//! `strata projection`: manage the JavaScript projections of a running server through its
//! Projections service.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_grpc::client::{DeleteStreams, ProjectionInfo, ProjectionMode, ProjectionsAdmin};

use crate::data::{credentials_from_env, usage_bail};

#[derive(Args)]
pub(crate) struct ProjectionArgs {
    /// The server, e.g. kurrentdb://admin:changeit@localhost:2113?tlsCaFile=ca.pem.
    /// Default: STRATA_SERVER. Credentials not in the URL come from STRATA_USER and
    /// STRATA_PASSWORD.
    #[arg(long, value_name = "URL", global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: ProjectionCommand,
}

/// The query: from a file or given inline.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct QueryArgs {
    /// A file holding the JavaScript query (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The JavaScript query itself.
    #[arg(long, value_name = "JS")]
    query: Option<String>,
}

#[derive(Subcommand)]
enum ProjectionCommand {
    /// List every projection with its status.
    List,
    /// Create a continuous projection (or, with --one-time, one the server names).
    Create {
        /// The name (not given with --one-time).
        #[arg(required_unless_present = "one_time")]
        name: Option<String>,
        #[command(flatten)]
        query: QueryArgs,
        /// Run over what is there, then stop.
        #[arg(long, conflicts_with_all = ["emit", "track_emitted_streams", "name"])]
        one_time: bool,
        /// Allow emit / linkTo / copyTo.
        #[arg(long)]
        emit: bool,
        /// Record the streams it emits to (so a delete can remove them); needs --emit.
        #[arg(long, requires = "emit")]
        track_emitted_streams: bool,
    },
    /// Show one projection's statistics.
    Show { name: String },
    /// Print a projection's state as JSON.
    State {
        name: String,
        /// A partition (default: the root state).
        #[arg(long, default_value = "")]
        partition: String,
    },
    /// Print a projection's result as JSON.
    Result {
        name: String,
        #[arg(long, default_value = "")]
        partition: String,
    },
    /// Replace a projection's query (it restarts from its checkpoint).
    Update {
        name: String,
        #[command(flatten)]
        query: QueryArgs,
        /// Turn emitting on or off (default: unchanged).
        #[arg(long, value_name = "BOOL")]
        emit: Option<bool>,
    },
    /// Start a stopped or faulted projection.
    Enable { name: String },
    /// Stop a projection after its current batch (with --abort: at once, the batch unwritten).
    Disable {
        name: String,
        #[arg(long)]
        abort: bool,
    },
    /// Rebuild a projection from the start (a new epoch).
    Reset { name: String },
    /// Delete a stopped projection and, as asked, its streams.
    Delete {
        name: String,
        #[arg(long)]
        delete_emitted_streams: bool,
        #[arg(long)]
        delete_state_stream: bool,
        #[arg(long)]
        delete_checkpoint_stream: bool,
    },
}

pub(crate) fn run(args: &ProjectionArgs) -> anyhow::Result<()> {
    let url = match &args.server {
        Some(url) => url.clone(),
        None => match std::env::var("STRATA_SERVER") {
            Ok(url) if !url.is_empty() => url,
            _ => usage_bail!(
                "say which server: --server URL (or STRATA_SERVER=URL); projections run inside `strata serve`"
            ),
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let admin = ProjectionsAdmin::connect(&url, url_credentials_or_env(&url))
            .await
            .context("cannot reach the server")?;
        execute(&admin, &args.command).await
    })
}

/// The URL's own credentials win; else the environment's.
fn url_credentials_or_env(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        None
    } else {
        credentials_from_env()
    }
}

fn read_query(query: &QueryArgs) -> anyhow::Result<String> {
    match (&query.file, &query.query) {
        (_, Some(text)) => Ok(text.clone()),
        (Some(path), None) if path.as_os_str() == "-" => {
            std::io::read_to_string(std::io::stdin()).context("cannot read the query from stdin")
        }
        (Some(path), None) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the query from {}", path.display())),
        (None, None) => usage_bail!("give the query: --file FILE or --query JS"),
    }
}

async fn execute(admin: &ProjectionsAdmin, command: &ProjectionCommand) -> anyhow::Result<()> {
    match command {
        ProjectionCommand::List => {
            let all = admin.statistics(None).await?;
            println!(
                "{:<40} {:<11} {:<18} {:>10} {:>9}",
                "NAME", "MODE", "STATUS", "EVENTS", "PROGRESS"
            );
            for info in all {
                println!(
                    "{:<40} {:<11} {:<18} {:>10} {:>8.1}%",
                    info.name,
                    info.mode,
                    info.status,
                    info.events_processed_after_restart,
                    info.progress
                );
            }
        }
        ProjectionCommand::Create {
            name,
            query,
            one_time,
            emit,
            track_emitted_streams,
        } => {
            let query = read_query(query)?;
            if *one_time {
                let before: Vec<String> = names(admin.statistics(None).await?);
                admin.create("", &query, ProjectionMode::OneTime).await?;
                let created: Vec<String> = names(admin.statistics(None).await?)
                    .into_iter()
                    .filter(|name| !before.contains(name))
                    .collect();
                match created.as_slice() {
                    [name] => println!("created one-time projection {name}"),
                    _ => println!("created a one-time projection (see `strata projection list`)"),
                }
            } else {
                let name = name.as_deref().unwrap_or_default();
                let mode = ProjectionMode::Continuous {
                    emit_enabled: *emit,
                    track_emitted_streams: *track_emitted_streams,
                };
                admin.create(name, &query, mode).await?;
                println!("created projection {name}");
            }
        }
        ProjectionCommand::Show { name } => {
            for info in admin.statistics(Some(name)).await? {
                print_info(&info);
            }
        }
        ProjectionCommand::State { name, partition } => {
            println!("{}", admin.state(name, partition).await?);
        }
        ProjectionCommand::Result { name, partition } => {
            println!("{}", admin.result(name, partition).await?);
        }
        ProjectionCommand::Update { name, query, emit } => {
            let query = read_query(query)?;
            admin.update(name, &query, *emit).await?;
            println!("updated projection {name}");
        }
        ProjectionCommand::Enable { name } => {
            admin.enable(name).await?;
            println!("enabled projection {name}");
        }
        ProjectionCommand::Disable { name, abort } => {
            admin.disable(name, !abort).await?;
            let how = if *abort { "aborted" } else { "disabled" };
            println!("{how} projection {name}");
        }
        ProjectionCommand::Reset { name } => {
            admin.reset(name).await?;
            println!("reset projection {name}");
        }
        ProjectionCommand::Delete {
            name,
            delete_emitted_streams,
            delete_state_stream,
            delete_checkpoint_stream,
        } => {
            let streams = DeleteStreams {
                emitted_streams: *delete_emitted_streams,
                state_stream: *delete_state_stream,
                checkpoint_stream: *delete_checkpoint_stream,
            };
            admin.delete(name, streams).await?;
            println!("deleted projection {name}");
        }
    }
    Ok(())
}

fn names(all: Vec<ProjectionInfo>) -> Vec<String> {
    all.into_iter().map(|info| info.name).collect()
}

fn print_info(info: &ProjectionInfo) {
    println!("name:             {}", info.name);
    println!("mode:             {}", info.mode);
    println!("status:           {}", info.status);
    if !info.state_reason.is_empty() {
        println!("reason:           {}", info.state_reason);
    }
    println!("position:         {}", info.position);
    println!("progress:         {:.1}%", info.progress);
    println!("events processed: {}", info.events_processed_after_restart);
    println!("partitions:       {}", info.partitions_cached);
    println!("epoch / version:  {} / {}", info.epoch, info.version);
}
