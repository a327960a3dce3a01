//! Test helper for `tests/scavenge_crash.rs`, not a tool: opens the store in `DATA_DIR`
//! (fsync durability, small segments), prints `ready`, scavenges it with the given
//! throttle (percent of the time working), prints `done EVENTS_REMOVED` and exits. The
//! test SIGKILLs it at random moments.
//!
//! Usage: `strata-scavenge-child DATA_DIR THROTTLE_PERCENT [THREADS]` (threads: 1).

use std::io::Write;
use std::process::ExitCode;

use strata_engine::{Config, Durability, ScavengeOptions, Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(data_dir), Some(throttle_percent)) = (
        args.get(1),
        args.get(2).and_then(|percent| percent.parse::<u8>().ok()),
    ) else {
        eprintln!("usage: strata-scavenge-child DATA_DIR THROTTLE_PERCENT");
        return ExitCode::from(2);
    };
    let config = Config {
        durability: Durability::Fsync,
        ..Config::small_for_tests()
    };
    let store = match Store::open(data_dir, config) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("strata-scavenge-child: {error}");
            return ExitCode::FAILURE;
        }
    };
    print_line("ready\n");
    let threads = args
        .get(3)
        .and_then(|threads| threads.parse::<usize>().ok())
        .unwrap_or(1);
    let report = store.scavenge(ScavengeOptions {
        throttle_percent,
        threads,
        ..ScavengeOptions::default()
    });
    match report {
        Ok(report) => {
            store.close();
            print_line(&format!("done {}\n", report.events_removed));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("strata-scavenge-child: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.flush();
}
