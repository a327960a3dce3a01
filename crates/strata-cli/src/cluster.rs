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

/// One leader-only job's progress: its checkpoint against the end of what it reads.
struct JobLag {
    /// `persistent`, `projection` or `connector`.
    kind: &'static str,
    /// The group (`<source>::<group>`), projection name or connector id.
    name: String,
    /// A stream, or `$all` (category and filtered sources read `$all` too).
    source: String,
    /// The last checkpointed revision (stream source) or `$all` position; `None`: none yet.
    checkpoint: Option<u64>,
    /// The source's last revision or `$all`'s last position; `None`: empty.
    end: Option<u64>,
}

impl JobLag {
    /// Events of the source after the checkpoint: revisions of a stream source, positions
    /// of `$all` (gapless on PostgreSQL, so every event of the log, system ones included).
    /// `None` before the first checkpoint.
    fn lag(&self) -> Option<u64> {
        Some(self.end.unwrap_or(0).saturating_sub(self.checkpoint?))
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "checkpoint": self.checkpoint,
            "end": self.end,
            "lag": self.lag(),
        })
    }
}

/// The progress of every persistent group, projection and connector stored in `config`'s
/// schema, read from the store (no job is started here).
async fn job_lags(config: &PostgresConfig) -> anyhow::Result<Vec<JobLag>> {
    use strata_core::EventStore;
    let store = strata_postgres::PostgresStore::open(config.clone())
        .await
        .context("cannot open the cluster's store")?;
    let result = async {
        let all_end = store.last_position().await?.map(|position| position.0);
        let mut jobs = Vec::new();
        for (source, group, checkpoint) in strata_persistent::stored_progress(&*store).await? {
            let (source, end) = match &source {
                strata_persistent::SubscriptionSource::All => ("$all".to_owned(), all_end),
                strata_persistent::SubscriptionSource::Stream(stream) => (
                    stream.to_string(),
                    stream_end(&*store, stream.as_str()).await?,
                ),
            };
            jobs.push(JobLag {
                kind: "persistent",
                name: format!("{source}::{group}"),
                source,
                checkpoint,
                end,
            });
        }
        for (name, checkpoint) in strata_server::stored_projection_positions(&*store).await? {
            jobs.push(JobLag {
                kind: "projection",
                name,
                source: "$all".to_owned(),
                checkpoint,
                end: all_end,
            });
        }
        for (id, source, checkpoint) in strata_connectors::stored_progress(&*store).await? {
            let (source, end) = match source {
                strata_connectors::Source::Stream { stream } => {
                    let end = stream_end(&*store, &stream).await?;
                    (stream, end)
                }
                strata_connectors::Source::All { .. }
                | strata_connectors::Source::Category { .. } => ("$all".to_owned(), all_end),
            };
            jobs.push(JobLag {
                kind: "connector",
                name: id,
                source,
                checkpoint,
                end,
            });
        }
        anyhow::Ok(jobs)
    }
    .await;
    store.close().await;
    result
}

/// The last revision of `stream` (`None`: no events).
async fn stream_end(
    store: &dyn strata_core::EventStore,
    stream: &str,
) -> anyhow::Result<Option<u64>> {
    use strata_core::{StreamName, StreamState};
    Ok(match store.stream_state(&StreamName::new(stream)?).await? {
        StreamState::At(revision) => Some(revision.0),
        StreamState::NoStream | StreamState::Tombstoned => None,
    })
}

fn state_of(member: &strata_core::Member) -> &'static str {
    if member.leader {
        "leader"
    } else if member.alive {
        "follower"
    } else {
        "dead"
    }
}

async fn status(config: &PostgresConfig, json: bool) -> anyhow::Result<()> {
    let status = strata_postgres::cluster_status(config)
        .await
        .context("cannot read the cluster's members")?;
    let jobs = job_lags(config)
        .await
        .context("cannot read the progress of the cluster's jobs")?;
    // Leader-only jobs run on the leader; a follower runs none.
    let jobs_of =
        |member: &strata_core::Member| -> &[JobLag] { if member.leader { &jobs } else { &[] } };
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
                    "state": state_of(member),
                    "jobs": jobs_of(member).iter().map(JobLag::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let unassigned: Vec<serde_json::Value> = if status.members.iter().any(|m| m.leader) {
            Vec::new()
        } else {
            jobs.iter().map(JobLag::to_json).collect()
        };
        println!(
            "{}",
            serde_json::json!({
                "epoch": status.epoch,
                "members": members,
                "jobs_without_leader": unassigned,
            })
        );
        return Ok(());
    }
    println!("leadership term (epoch): {}", status.epoch);
    println!("{:<38} {:<28} {:<9}", "NODE", "ADDRESS", "STATE");
    for member in &status.members {
        println!(
            "{:<38} {:<28} {:<9}",
            member.node_id,
            format!("{}:{}", member.address.host, member.address.port),
            state_of(member)
        );
    }
    let runner = status
        .members
        .iter()
        .find(|member| member.leader)
        .map_or_else(
            || "no leader: not running".to_owned(),
            |leader| format!("on {}", leader.node_id),
        );
    println!();
    println!("jobs ({runner}):");
    println!(
        "{:<11} {:<40} {:<20} {:>12} {:>12} {:>10}",
        "KIND", "NAME", "SOURCE", "CHECKPOINT", "END", "LAG"
    );
    let shown =
        |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |value| value.to_string());
    for job in &jobs {
        println!(
            "{:<11} {:<40} {:<20} {:>12} {:>12} {:>10}",
            job.kind,
            job.name,
            job.source,
            shown(job.checkpoint),
            shown(job.end),
            shown(job.lag())
        );
    }
    Ok(())
}
