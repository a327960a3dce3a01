//! `strata export`: every record of `$all`, in order, as NDJSON (see `ndjson.rs`). A write
//! that fails (a full disk, a reader that went away) fails the command: an export that died
//! half-way must not look like a backup.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use strata_core::{ReadAllOptions, RecordedEvent};

use super::ndjson;
use super::{Create, OpenStore, StoreArgs, explain};
use crate::progress;

/// Most events asked of the store per page of `$all`: large, because over a server each page
/// is one call, and the official client's calls each wait tens of milliseconds for their
/// small writes (its connections keep Nagle's algorithm on; see docs/BENCHMARKS.md).
const PAGE_EVENTS_MAX: usize = 65_536;

/// Bytes of events a page is sized for: a page asks for as many events as fit at the size of
/// the largest event of the page before (the first page assumes the store's largest event).
const PAGE_BYTES_TARGET: usize = 32 * 1024 * 1024;

/// What a stored event weighs in a page, beyond its data and metadata.
const EVENT_OVERHEAD_BYTES: usize = 256;

/// Capacity of the output buffer.
const OUTPUT_BUFFER_BYTES: usize = 1 << 20;

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// File to write (replaced if it exists). Default: stdout.
    #[arg(long, value_name = "FILE")]
    to: Option<PathBuf>,
    /// Also export the configuration and checkpoint streams of persistent subscriptions
    /// (left out by default: the places they hold mean nothing in another store).
    #[arg(long)]
    include_persistent_subscription_state: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Where the lines go, and how many went.
struct Output {
    writer: BufWriter<Box<dyn Write>>,
    file: Option<(PathBuf, File)>,
    events_written: u64,
}

impl Output {
    fn open(to: Option<&Path>) -> anyhow::Result<Output> {
        let (sink, file): (Box<dyn Write>, _) = match to {
            Some(path) => {
                let file = File::create(path).with_context(|| {
                    format!(
                        "cannot create {}; check the directory exists and is writable",
                        path.display()
                    )
                })?;
                let synced = file
                    .try_clone()
                    .with_context(|| format!("cannot write {}", path.display()))?;
                (Box::new(file), Some((path.to_owned(), synced)))
            }
            None => (Box::new(io::stdout()), None),
        };
        Ok(Output {
            writer: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, sink),
            file,
            events_written: 0,
        })
    }

    fn event(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let written = self
            .writer
            .write_all(ndjson::encode(event).as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"));
        written.map_err(|error| self.failed(error))?;
        self.events_written += 1;
        Ok(())
    }

    /// Flushes, and makes a regular file durable: success means the whole export is there.
    fn finish(&mut self) -> anyhow::Result<()> {
        self.writer.flush().map_err(|error| self.failed(error))?;
        if let Some((_, file)) = &self.file
            && file.metadata().is_ok_and(|metadata| metadata.is_file())
        {
            file.sync_all().map_err(|error| self.failed(error))?;
        }
        Ok(())
    }

    fn failed(&self, error: io::Error) -> anyhow::Error {
        let place = match &self.file {
            Some((path, _)) => path.display().to_string(),
            None => "stdout".to_owned(),
        };
        let next = if error.kind() == io::ErrorKind::BrokenPipe {
            "the reader of the output went away before the end"
        } else {
            "check the disk has room and run the export again"
        };
        anyhow::Error::new(error).context(format!(
            "cannot write the export to {place}: the export is incomplete; {next}"
        ))
    }
}

pub(crate) fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let open = OpenStore::open(&args.store, Create::Never)?;
    let mut out = Output::open(args.to.as_deref())?;
    let last = open
        .block_on(open.store.last_position())
        .map_err(explain)?
        .map_or(0, |position| position.0);
    // Positions are offsets in the log, so the bar counts log bytes: rate and ETA hold
    // whatever the size of the events.
    let bar = progress::bytes_bar("exporting", last);
    let mut page_events = page_events_for(open.store.limits().event_bytes_max);
    let mut options = ReadAllOptions::forwards();
    let mut left_out = 0u64;
    let exported = loop {
        let page = match open.block_on(open.store.read_all(options.clone().max_count(page_events)))
        {
            Ok(page) => page,
            Err(error) => break Err(explain(error)),
        };
        let mut largest_event_bytes = 0;
        let written = page.events.iter().try_for_each(|event| {
            largest_event_bytes = largest_event_bytes.max(event_bytes(event));
            bar.set_position(event.position.0.min(last));
            if !args.include_persistent_subscription_state
                && strata_persistent::is_group_state_stream(event.stream.as_str())
            {
                left_out += 1;
                return Ok(());
            }
            out.event(event)
        });
        if let Err(error) = written {
            break Err(error);
        }
        if page.is_end {
            break out.finish();
        }
        page_events = page_events_for(largest_event_bytes);
        options = options.from_position(page.next_position);
    };
    bar.finish_and_clear();
    exported?;
    if let Some(path) = &args.to {
        eprintln!(
            "exported {} events to {}",
            out.events_written,
            path.display()
        );
    }
    if left_out > 0 {
        eprintln!(
            "left out {left_out} events of persistent-subscription configuration and \
             checkpoints (--include-persistent-subscription-state keeps them)"
        );
    }
    Ok(())
}

/// Events per page for events of up to `event_bytes` each.
fn page_events_for(event_bytes: usize) -> usize {
    (PAGE_BYTES_TARGET / event_bytes.max(1)).clamp(1, PAGE_EVENTS_MAX)
}

fn event_bytes(event: &RecordedEvent) -> usize {
    event.data.len()
        + event.metadata.len()
        + event.stream.as_str().len()
        + event.event_type.len()
        + EVENT_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_about_the_byte_target_whatever_the_event_size() {
        assert_eq!(page_events_for(16 * 1024 * 1024), 2);
        assert_eq!(page_events_for(PAGE_BYTES_TARGET * 2), 1);
        assert_eq!(page_events_for(1_024), PAGE_BYTES_TARGET / 1_024);
        assert_eq!(page_events_for(100), PAGE_EVENTS_MAX);
        assert_eq!(page_events_for(0), PAGE_EVENTS_MAX);
    }
}
