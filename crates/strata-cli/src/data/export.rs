//! `strata export`: every record of `$all`, in order, as NDJSON (see `ndjson.rs`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_core::ReadAllOptions;

use super::ndjson;
use super::{Create, OpenStore, StoreArgs, explain};
use crate::progress;

/// Events asked of the store per page of `$all`: large, because over a server each page is
/// one call, and the official client's calls each wait tens of milliseconds for their
/// small writes (its connections keep Nagle's algorithm on; see docs/BENCHMARKS.md).
const PAGE_EVENTS_MAX: usize = 65_536;

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// File to write (replaced if it exists). Default: stdout.
    #[arg(long, value_name = "FILE")]
    to: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let open = OpenStore::open(&args.store, Create::Never)?;
    let mut out: Box<dyn Write> = match &args.to {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| {
                format!(
                    "cannot create {}; check the directory exists and is writable",
                    path.display()
                )
            })?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
    };
    let last = open
        .block_on(open.store.last_position())
        .map_err(explain)?
        .map_or(0, |position| position.0);
    // Positions are offsets in the log, so the bar counts log bytes: rate and ETA hold
    // whatever the size of the events.
    let bar = progress::bytes_bar("exporting", last);
    let mut options = ReadAllOptions::forwards().max_count(PAGE_EVENTS_MAX);
    let mut exported = 0u64;
    loop {
        let page = open
            .block_on(open.store.read_all(options.clone()))
            .map_err(explain)?;
        for event in &page.events {
            let written = out
                .write_all(ndjson::encode(event).as_bytes())
                .and_then(|()| out.write_all(b"\n"));
            if let Err(error) = written {
                bar.finish_and_clear();
                if error.kind() == io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(error).context("cannot write the export; check the disk has room");
            }
            bar.set_position(event.position.0.min(last));
        }
        exported += page.events.len() as u64;
        if page.is_end {
            break;
        }
        options = options.from_position(page.next_position);
    }
    let flushed = out.flush();
    bar.finish_and_clear();
    match flushed {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            return Err(error).context("cannot write the export; check the disk has room");
        }
        _ => {}
    }
    if let Some(path) = &args.to {
        eprintln!("exported {exported} events to {}", path.display());
    }
    Ok(())
}
