//! `strata scavenge` (give back the disk space of events no read can return any more) and
//! `strata forget` (tombstone streams and remove their events' bytes at once), on a local
//! store (a data directory or PostgreSQL: `--store postgres://...`), or — `strata scavenge
//! --server URL` — on a running server through its HTTP admin routes (docs/SCAVENGING.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use strata_core::{EventStore, ExpectedRevision};
use strata_engine::{Config, ScavengeOptions, ScavengeReport, Store};
use strata_postgres::{PostgresConfig, PostgresScavenge, PostgresStore, Vacuum};

use crate::data::{explain, open_engine_existing, stream_name};
use crate::progress;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["data_dir", "server", "store"])))]
pub(crate) struct ScavengeArgs {
    /// Directory of the store (no server may hold it).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Scavenge a running server instead: kurrentdb://admin:changeit@localhost:2113?tls=false
    /// or http://127.0.0.1:2113 (credentials not in the URL come from STRATA_USER and
    /// STRATA_PASSWORD; the caller must be in $admins or $ops). Interrupting the command
    /// leaves the server's scavenge running.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    postgres: PostgresArgs,
    /// Share of the time the scavenge works, 1 to 100 (it sleeps the rest, leaving the
    /// disk to others).
    #[arg(long, value_name = "PERCENT", default_value_t = 100,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    throttle_percent: u8,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ForgetArgs {
    /// Streams to forget.
    #[arg(required = true, value_name = "STREAM")]
    streams: Vec<String>,
    /// Directory of the store (no server may hold it).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "store",
        conflicts_with = "store"
    )]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    postgres: PostgresArgs,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// A PostgreSQL store instead of a data directory (servers may keep serving it).
#[derive(Args)]
struct PostgresArgs {
    /// The PostgreSQL store: postgres://USER@HOST[:PORT]/DB (servers using it may keep
    /// running).
    #[arg(long, visible_alias = "postgres", value_name = "URL")]
    store: Option<String>,
    /// The store's schema in that database.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "public",
        requires = "store"
    )]
    store_schema: String,
    /// What PostgreSQL does once the rows are deleted: `none` (autovacuum later), `plain`
    /// (VACUUM: the space is reused, reads and appends go on) or `full` (VACUUM FULL: the
    /// files shrink, but reads and appends of every node wait meanwhile). Default: plain
    /// for scavenge, full for forget.
    #[arg(long, value_name = "KIND", value_parser = ["none", "plain", "full"], requires = "store")]
    vacuum: Option<String>,
}

impl PostgresArgs {
    fn vacuum(&self, default: Vacuum) -> Vacuum {
        match self.vacuum.as_deref() {
            Some("none") => Vacuum::None,
            Some("plain") => Vacuum::Plain,
            Some("full") => Vacuum::Full,
            _ => default,
        }
    }

    /// Opens the store, runs `work` on it, closes it.
    fn with_store<T>(
        &self,
        url: &str,
        work: impl AsyncFnOnce(&PostgresStore) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let config = PostgresConfig::new(url.to_owned()).with_schema(self.store_schema.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async {
            let store = PostgresStore::open(config)
                .await
                .with_context(|| format!("cannot open the PostgreSQL store at {url}"))?;
            let result = work(&store).await;
            store.close().await;
            result
        })
    }
}

pub(crate) fn run_scavenge(args: &ScavengeArgs) -> anyhow::Result<()> {
    let report = match (&args.data_dir, &args.server, &args.postgres.store) {
        (_, Some(url), _) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(scavenge_server(url, args.throttle_percent))?
        }
        (_, None, Some(url)) => {
            let bar = progress::bytes_bar("scavenging", 0);
            let updates = bar.clone();
            let options = ScavengeOptions {
                throttle_percent: args.throttle_percent,
                progress: Some(Box::new(move |step| {
                    updates.set_length(step.segments_total);
                    updates.set_position(step.segments_done);
                })),
                ..ScavengeOptions::default()
            };
            let settings = PostgresScavenge {
                vacuum: args.postgres.vacuum(Vacuum::Plain),
                ..PostgresScavenge::default()
            };
            let report = args.postgres.with_store(url, async |store| {
                store
                    .scavenge_with(options, settings)
                    .await
                    .map_err(explain)
                    .context("the scavenge failed")
            })?;
            bar.finish_and_clear();
            print_report(&report, args.json, None, true);
            return Ok(());
        }
        (Some(dir), None, None) => {
            check_store_dir(dir)?;
            scavenge(dir, args.throttle_percent)?
        }
        (None, None, None) => {
            bail!("say what to scavenge: --data-dir DIR, --store URL or --server URL")
        }
    };
    print_report(&report, args.json, None, false);
    Ok(())
}

/// How often `--server` asks how far the scavenge has got.
const SERVER_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Starts a scavenge on the server (or follows the one under way) and waits for its end,
/// showing its progress.
async fn scavenge_server(url: &str, throttle_percent: u8) -> anyhow::Result<ScavengeReport> {
    let api = crate::connector::Api::new(url, "/v1/admin/scavenges")?;
    let started = api
        .call(
            reqwest::Method::POST,
            "",
            Some(serde_json::json!({ "throttle_percent": throttle_percent })),
        )
        .await?;
    let Some(id) = started["id"].as_str().map(str::to_owned) else {
        bail!("the server's answer names no scavenge: {started}");
    };
    if started["result"] == "in_progress" {
        eprintln!("scavenge {id} was already running on the server; following it");
    }
    let bar = progress::bytes_bar("scavenging", 0);
    let job = loop {
        let job = api
            .call(reqwest::Method::GET, &format!("/{id}"), None)
            .await?;
        let progress = &job["progress"];
        bar.set_length(progress["bytes_total"].as_u64().unwrap_or(0));
        bar.set_position(progress["bytes_done"].as_u64().unwrap_or(0));
        if job["state"] != "running" {
            break job;
        }
        tokio::time::sleep(SERVER_POLL_INTERVAL).await;
    };
    bar.finish_and_clear();
    if job["state"] == "failed" {
        bail!(
            "the server's scavenge {id} failed: {}",
            job["error"].as_str().unwrap_or("no reason given")
        );
    }
    report_from_json(&job["report"])
        .with_context(|| format!("the server's scavenge {id} ended without a report: {job}"))
}

/// The report a server sends (`ScavengeReport::to_json`).
fn report_from_json(report: &serde_json::Value) -> anyhow::Result<ScavengeReport> {
    let number = |key: &str| {
        report[key]
            .as_u64()
            .with_context(|| format!("the report has no {key}"))
    };
    Ok(ScavengeReport {
        allocated_bytes_before: number("allocated_bytes_before")?,
        allocated_bytes_after: number("allocated_bytes_after")?,
        events_removed: number("events_removed")?,
        frame_bytes_removed: number("frame_bytes_removed")?,
        segments_considered: number("segments_considered")?,
        segments_rewritten: number("segments_rewritten")?,
        segments_deferred: number("segments_deferred")?,
        stopped: report["stopped"].as_bool().unwrap_or(false),
        elapsed: std::time::Duration::from_secs_f64(
            report["elapsed_seconds"].as_f64().unwrap_or(0.0).max(0.0),
        ),
    })
}

pub(crate) fn run_forget(args: &ForgetArgs) -> anyhow::Result<()> {
    let streams = args
        .streams
        .iter()
        .map(|name| stream_name(name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names: Vec<String> = streams.iter().map(ToString::to_string).collect();
    let Some(dir) = &args.data_dir else {
        let url = args.postgres.store.as_deref().unwrap_or_default();
        let vacuum = args.postgres.vacuum(Vacuum::Full);
        let report = args.postgres.with_store(url, async |store| {
            store
                .forget(&streams, vacuum)
                .await
                .map_err(explain)
                .context("forgetting the streams failed")
        })?;
        print_report(&report, args.json, Some(&names), true);
        return Ok(());
    };
    check_store_dir(dir)?;
    {
        let store = open_engine_existing(dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        for stream in &streams {
            match runtime.block_on(store.tombstone_stream(stream, ExpectedRevision::Any)) {
                Ok(_) | Err(strata_core::Error::StreamDeleted { .. }) => {}
                Err(error) => return Err(explain(error)),
            }
        }
        store.close();
    }
    let report = scavenge(dir, 100)?;
    print_report(&report, args.json, Some(&names), false);
    Ok(())
}

fn check_store_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("log").is_dir() {
        bail!(
            "{} holds no store: pass the --data-dir of an existing store",
            dir.display()
        );
    }
    Ok(())
}

fn scavenge(dir: &Path, throttle_percent: u8) -> anyhow::Result<ScavengeReport> {
    let bar = progress::bytes_bar("scavenging", 0);
    let updates = bar.clone();
    let options = ScavengeOptions {
        throttle_percent,
        progress: Some(Box::new(move |step| {
            updates.set_length(step.bytes_total);
            updates.set_position(step.bytes_done);
        })),
        ..ScavengeOptions::default()
    };
    let report = match Store::scavenge_closed(dir, Config::default(), options) {
        Ok(report) => report,
        Err(strata_core::Error::DirectoryInUse { .. }) => bail!(
            "a server (or another strata command) holds {}; stop it first",
            dir.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "cannot scavenge the store in {}; check that it is a Strata data directory \
                     readable and writable by this user",
                    dir.display()
                )
            });
        }
    };
    bar.finish_and_clear();
    Ok(report)
}

fn print_report(report: &ScavengeReport, json: bool, forgotten: Option<&[String]>, postgres: bool) {
    if json {
        let mut value = report.to_json();
        if let (Some(streams), Some(object)) = (forgotten, value.as_object_mut()) {
            object.insert("forgotten_streams".into(), serde_json::json!(streams));
        }
        println!("{value}");
        return;
    }
    if let Some(streams) = forgotten {
        println!("forgotten:           {}", streams.join(", "));
    }
    if postgres {
        println!(
            "streams cleaned:     {} of {}",
            report.segments_rewritten, report.segments_considered
        );
        if report.segments_deferred > 0 {
            println!(
                "streams deferred:    {} (metadata changed meanwhile; run again)",
                report.segments_deferred
            );
        }
        println!("events removed:      {}", report.events_removed);
        println!(
            "bytes removed:       {} (data and metadata of the deleted rows)",
            human_bytes(report.frame_bytes_removed)
        );
        println!(
            "size of the tables:  {} → {} ({} given back)",
            human_bytes(report.allocated_bytes_before),
            human_bytes(report.allocated_bytes_after),
            human_bytes(
                report
                    .allocated_bytes_before
                    .saturating_sub(report.allocated_bytes_after)
            )
        );
        println!("time:                {:.2} s", report.elapsed.as_secs_f64());
        return;
    }
    println!(
        "segments rewritten:  {} of {}",
        report.segments_rewritten, report.segments_considered
    );
    if report.segments_deferred > 0 {
        println!(
            "segments deferred:   {} (metadata changed meanwhile; run again)",
            report.segments_deferred
        );
    }
    if report.stopped {
        println!("stopped early:       run again to finish");
    }
    println!("events removed:      {}", report.events_removed);
    println!(
        "bytes removed:       {}",
        human_bytes(report.frame_bytes_removed)
    );
    println!(
        "disk space of log:   {} → {} ({} given back)",
        human_bytes(report.allocated_bytes_before),
        human_bytes(report.allocated_bytes_after),
        human_bytes(
            report
                .allocated_bytes_before
                .saturating_sub(report.allocated_bytes_after)
        )
    );
    println!("time:                {:.2} s", report.elapsed.as_secs_f64());
}

fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
