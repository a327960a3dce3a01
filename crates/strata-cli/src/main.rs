//! `strata`: the command that assembles Strata's crates.
//!
//! Exit codes: 0 success, 1 an operational error or a failed check, 2 a usage error.
#![forbid(unsafe_code)]

mod bench;
mod progress;
mod serve;
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
        strata serve --data-dir /var/lib/strata --tls-cert node.crt --tls-key node.key\n\n\
        With TLS, clients connect with `kurrentdb://localhost:2113` and trust the certificate's CA;\n\
        with --insecure, with `kurrentdb://localhost:2113?tls=false`. SIGINT or SIGTERM stop the\n\
        server after in-flight appends finish.")]
    Serve(serve::ServeArgs),
    /// Check every checksum and index entry of a store and report what was found.
    #[command(
        after_help = "Example:\n  strata verify --data-dir /var/lib/strata\n\n\
        Exit code 0 when the store is sound, 1 when problems were found or it could not be read."
    )]
    Verify(verify::VerifyArgs),
    /// Run the standard embedded workload against a fresh store and print the figures.
    #[command(
        after_help = "Example:\n  strata bench --data-dir /tmp/strata-bench\n  \
        strata bench --data-dir /tmp/strata-bench --json --cleanup\n\n\
        The data directory must be empty or absent: the bench never writes into an existing store.\n\
        The store is left in place for `strata verify` unless --cleanup is given."
    )]
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run_blocking(args).map(|()| true),
        Command::Verify(args) => verify::run(&args),
        Command::Bench(args) => bench::run_blocking(args).map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
