//! `strata`: the command that assembles Strata's crates.
//!
//! Exit codes: 0 success, 1 an operational error or a failed check, 2 a usage error.
#![forbid(unsafe_code)]

mod bench;
mod cluster;
mod connector;
mod data;
mod progress;
mod projection;
mod repair;
mod scavenge;
mod serve;
mod serve_config;
mod user;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata, an event store", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the store over the KurrentDB gRPC protocol (and HTTP) on one port.
    #[command(after_help = "Example:\n  strata serve --insecure\n  \
        strata serve --data-dir /var/lib/strata --tls-cert node.crt --tls-key node.key\n  \
        strata serve --config strata.toml --print-config\n\n\
        Every option can also come from a STRATA_* environment variable or the --config file\n\
        (precedence: flags, environment, file, defaults); docs/CONFIG.md lists every key.\n\n\
        With TLS, clients connect with `kurrentdb://localhost:2113` and trust the certificate's CA;\n\
        with --insecure, with `kurrentdb://localhost:2113?tls=false`. SIGINT or SIGTERM stop the\n\
        server after in-flight appends finish.")]
    Serve(Box<serve::ServeArgs>),
    /// Check every checksum and index entry of a store and report what was found.
    #[command(
        after_help = "Example:\n  strata verify --data-dir /var/lib/strata\n\n\
        Exit code 0 when the store is sound, 1 when problems were found or it could not be read."
    )]
    Verify(verify::VerifyArgs),
    /// Give back the disk space of events no read can return any more (deleted,
    /// truncated, expired, superseded metadata, tombstoned streams).
    #[command(
        after_help = "Example:\n  strata scavenge --data-dir /var/lib/strata\n  \
        strata scavenge --data-dir /var/lib/strata --throttle-percent 50 --json\n  \
        strata scavenge --store postgres://postgres@db/strata --vacuum plain\n\n\
        Runs on a local store that no server holds; positions of the other events do not change.\n\
        Safe to interrupt (Ctrl-C, a crash): run it again to finish. docs/SCAVENGING.md."
    )]
    Scavenge(scavenge::ScavengeArgs),
    /// Tombstone streams and remove their events' bytes from the data directory at once.
    #[command(
        after_help = "Example:\n  strata forget person-42 --data-dir /var/lib/strata\n  \
        strata forget person-42 --store postgres://postgres@db/strata\n\n\
        The streams can never be written again. Their events' data and metadata are gone from\n\
        every file of the directory; the stream names stay (in the tombstone and the index files).\n\
        Blocks the file system freed are not overwritten: copies elsewhere (backups, exports) are\n\
        not touched."
    )]
    Forget(scavenge::ForgetArgs),
    /// Accept the loss of everything from a log position on, so a store that refuses to open
    /// opens again.
    #[command(
        after_help = "Example:\n  strata repair --data-dir /var/lib/strata --truncate-at 1048640\n  \
        strata repair --data-dir /var/lib/strata --truncate-at 1048640 --yes\n\n\
        Prints the events, streams and log positions it would drop; changes nothing without\n\
        --yes (exit code 1). The position must be where a transaction of the readable log ends:\n\
        the end named by the refused open or by `strata verify`. Keep a copy of the directory first."
    )]
    Repair(repair::RepairArgs),
    /// Run the standard embedded workload against a fresh store and print the figures.
    #[command(
        after_help = "Example:\n  strata bench --data-dir /tmp/strata-bench\n  \
        strata bench --data-dir /tmp/strata-bench --json --cleanup\n\n\
        The data directory must be empty or absent: the bench never writes into an existing store.\n\
        The store is left in place for `strata verify` unless --cleanup is given."
    )]
    Bench(bench::BenchArgs),
    /// Append events with JSON data to a stream, all of them atomically.
    #[command(after_help = "Examples:\n  \
        strata append order-42 --type OrderPlaced --data '{\"total\":10}' --data-dir ./strata-data\n  \
        strata append order-42 --type OrderPaid --data '{}' --id 5f0c6ad2-8f51-4d55-9b4e-0d2cbb1f7f10 \\\n    \
        --metadata '{\"by\":\"alice\"}' --server 'kdb://127.0.0.1:2113?tls=false'\n  \
        printf '{\"n\":1}\\n{\"n\":2}\\n' | strata append counter-1 --type Counted --data-dir ./strata-data\n\n\
        Without --data, each non-blank line of stdin is one event. Every line is checked before\n\
        anything is written: a malformed one is named by line and column and nothing is appended.\n\
        Creates a local store if the directory is empty or absent. Exit code 1 when the\n\
        --expected-revision check fails, 2 for malformed JSON.")]
    Append(data::append::AppendArgs),
    /// Read a stream, or the global log `$all` (optionally filtered).
    #[command(after_help = "Examples:\n  \
        strata read order-42 --data-dir ./strata-data\n  \
        strata read order-42 --backwards --count 1 --json --data-dir ./strata-data\n  \
        strata read '$all' --stream-prefix order- --server 'kdb://127.0.0.1:2113?tls=false'\n\n\
        Exit code 1 when the stream is not found (never written, or deleted).")]
    Read(data::read::ReadArgs),
    /// Follow a stream, or `$all`, live (like tail -f) until Ctrl-C.
    #[command(after_help = "Examples:\n  \
        strata tail order-42 --server 'kdb://127.0.0.1:2113?tls=false'\n  \
        strata tail '$all' --type-prefix Order --json --from-start --server 'kdb://127.0.0.1:2113?tls=false'\n\n\
        Starts at the end (only new events) unless --from-start. A local --data-dir is locked by\n\
        this command, so nothing else can append to it meanwhile: follow a live store with --server.")]
    Tail(data::tail::TailArgs),
    /// List streams with their event counts and last revisions.
    #[command(after_help = "Example:\n  strata streams --data-dir ./strata-data\n\n\
        Counted from one pass over `$all`: it includes events a stream's metadata hides, and\n\
        deleted streams. System and metadata streams are listed with --all; --categories and\n\
        --event-types count the events of each category or event type instead.")]
    Streams(data::streams::StreamsArgs),
    /// Get or set a stream's metadata.
    #[command(after_help = "Examples:\n  \
        strata metadata get order-42 --data-dir ./strata-data\n  \
        strata metadata set order-42 '{\"$maxCount\":100}' --data-dir ./strata-data")]
    Metadata(data::metadata::MetadataArgs),
    /// Soft-delete a stream: its events are hidden; appending again revives it.
    #[command(
        after_help = "Example:\n  strata delete order-42 --expected-revision 3 --data-dir ./strata-data"
    )]
    Delete(data::delete::DeleteArgs),
    /// Tombstone a stream: it can never be read or written again.
    #[command(
        after_help = "Example:\n  strata tombstone order-42 --data-dir ./strata-data\n\n\
        This cannot be undone."
    )]
    Tombstone(data::delete::DeleteArgs),
    /// Write every event of the store, in `$all` order, as NDJSON (one JSON object per line).
    #[command(after_help = "Examples:\n  \
        strata export --to backup.ndjson --data-dir ./strata-data\n  \
        strata export --server 'kdb://127.0.0.1:2113?tls=false' | gzip > backup.ndjson.gz\n\n\
        The format (docs/CLI.md) keeps stream, revision, id, type, content type, data and\n\
        metadata; `strata import` turns it back into the same streams. Persistent-subscription\n\
        configuration and checkpoints are left out unless --include-persistent-subscription-state.\n\
        Exit code 1 when the output cannot be written to the end (a full disk, a closed pipe):\n\
        the export is then incomplete.")]
    Export(data::export::ExportArgs),
    /// Append the events of an export, keeping ids, revisions and order; safe to re-run.
    #[command(after_help = "Example:\n  \
        strata import backup.ndjson --data-dir ./strata-copy\n\n\
        Re-running the same import writes nothing new: events already there are recognised by\n\
        their ids. A malformed line stops the import with its line number (exit code 2); every\n\
        event before that line is imported, nothing from it on. Creates a local store if needed.")]
    Import(data::import::ImportArgs),
    /// Manage the users of a running server: add, list, show, passwd, disable, enable, delete.
    #[command(after_help = "Examples:\n  \
        strata user add ada --password s3cret --group readers \\\n    \
        --server 'kurrentdb://admin:changeit@localhost:2113?tlsCaFile=ca.pem'\n  \
        STRATA_USER=admin STRATA_PASSWORD=changeit strata user list --server 'kurrentdb://localhost:2113?tlsCaFile=ca.pem'\n\n\
        Only admins manage users; a user may show itself and change its own password\n\
        (`strata user passwd LOGIN --current OLD --password NEW`).")]
    User(user::UserArgs),
    /// Manage the connectors of a running server: list, create, show, start, stop, reset,
    /// update, delete.
    #[command(after_help = "Examples:\n  \
        strata connector list --server 'kdb://127.0.0.1:2113?tls=false'\n  \
        strata connector create --file orders-to-nats.json --server 'kurrentdb://admin:changeit@localhost:2113?tlsCaFile=ca.pem'\n  \
        strata connector reset orders-to-nats --from end --server 'kdb://127.0.0.1:2113?tls=false'\n\n\
        Goes through the server's HTTP API (/connectors); only admins and ops manage connectors.\n\
        Secrets in definitions are never shown back.")]
    Connector(connector::ConnectorArgs),
    /// Manage the JavaScript projections of a running server: list, create, show, state,
    /// result, update, enable, disable, reset, delete.
    #[command(after_help = "Examples:\n  \
        strata projection create orders --file orders.js --server 'kdb://127.0.0.1:2113?tls=false'\n  \
        strata projection state orders --server 'kdb://127.0.0.1:2113?tls=false'\n  \
        strata projection disable orders --server 'kdb://127.0.0.1:2113?tls=false'\n\n\
        Projections run inside `strata serve`, so every command goes to a server (--server or\n\
        STRATA_SERVER); credentials as for `strata user`.")]
    Projection(projection::ProjectionArgs),
    /// The members and leader of a Strata cluster on PostgreSQL; ask the leader to resign.
    #[command(after_help = "Examples:\n  \
        strata cluster status --store postgres://postgres@db/strata\n  \
        strata cluster resign --store postgres://postgres@db/strata --store-schema shop\n\n\
        Reads the membership tables directly; docs/CLUSTER.md explains the states and the failover bound.")]
    Cluster(cluster::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run_blocking(*args).map(|()| true),
        Command::Verify(args) => verify::run(&args),
        Command::Repair(args) => repair::run(&args),
        Command::Scavenge(args) => scavenge::run_scavenge(&args).map(|()| true),
        Command::Forget(args) => scavenge::run_forget(&args).map(|()| true),
        Command::Bench(args) => bench::run_blocking(args).map(|()| true),
        Command::Append(args) => data::append::run(&args).map(|()| true),
        Command::Read(args) => data::read::run(&args).map(|()| true),
        Command::Tail(args) => data::tail::run(&args).map(|()| true),
        Command::Streams(args) => data::streams::run(&args).map(|()| true),
        Command::Metadata(args) => data::metadata::run(&args).map(|()| true),
        Command::Delete(args) => {
            data::delete::run(&args, data::delete::Deletion::Soft).map(|()| true)
        }
        Command::Tombstone(args) => {
            data::delete::run(&args, data::delete::Deletion::Tombstone).map(|()| true)
        }
        Command::Export(args) => data::export::run(&args).map(|()| true),
        Command::Import(args) => data::import::run(&args).map(|()| true),
        Command::User(args) => user::run(&args).map(|()| true),
        Command::Connector(args) => connector::run(&args).map(|()| true),
        Command::Projection(args) => projection::run(&args).map(|()| true),
        Command::Cluster(args) => cluster::run(&args).map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.is::<data::UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
