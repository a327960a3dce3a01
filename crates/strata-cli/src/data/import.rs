//! `strata import`: appends the events of an export, keeping their ids, streams, revisions
//! and order. Each run of consecutive events of one stream goes in one append whose
//! expected revision is the revision before its first event, so running an import again
//! re-sends the same ids at the same place and the store recognises them (idempotent
//! appends) instead of writing them twice.
//!
//! Users and default ACLs (`strata_auth::is_security_stream`) that the target already has
//! are kept: their streams are not written, except that users the target lacks are added to
//! its `$users` list (their own `$user-<login>` streams import as usual).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strata_core::{Error, EventStore, ExpectedRevision, ProposedEvent, StreamName, StreamState};

use super::ndjson::{self, Imported, ImportedEvent};
use super::{Create, OpenStore, StoreArgs, explain, usage_bail};
use crate::progress;

/// Most events in one append: large, because over a server each append is one call, which
/// costs the official client tens of milliseconds of waiting (see `export.rs`).
const BATCH_EVENTS_MAX: usize = 10_000;
/// Most bytes (as the limits count them) in one append: well under the append limit.
const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest line read: the largest event in base64, with room for its keys.
const LINE_BYTES_MAX: usize = 2 * strata_core::EVENT_BYTES_MAX;

/// A line without its line ending, if it is UTF-8 and complete.
fn line_text(bytes: &[u8]) -> Result<&str, String> {
    if bytes.len() > LINE_BYTES_MAX {
        return Err(format!(
            "the line is longer than {LINE_BYTES_MAX} bytes, more than any event can take"
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|error| format!("the line is not UTF-8 text ({error})"))?;
    Ok(text.trim_end_matches(['\n', '\r']))
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// NDJSON file written by `strata export`.
    file: PathBuf,
    /// Size of each segment file if this creates a local store, in MiB (as `strata serve`).
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(17..=4095))]
    segment_size_mib: u64,
    #[command(flatten)]
    store: StoreArgs,
}

/// Consecutive events of one stream with consecutive revisions, not yet appended.
struct Batch {
    stream: StreamName,
    first_revision: u64,
    first_line: usize,
    events: Vec<ProposedEvent>,
    size_bytes: usize,
}

impl Batch {
    fn takes(&self, imported: &ImportedEvent) -> bool {
        self.stream.as_str() == imported.stream
            && imported.revision == self.first_revision + self.events.len() as u64
            && self.events.len() < BATCH_EVENTS_MAX
            && self.size_bytes + imported.event.size_bytes() <= BATCH_BYTES_MAX
    }
}

/// What an import did, for its last line.
#[derive(Default)]
struct Tally {
    events: u64,
    tombstones: u64,
    /// Events of streams the target has tombstoned (a re-run after a tombstone line).
    skipped: u64,
    /// Events of the target's own users and settings left as they were.
    kept: u64,
}

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let file = File::open(&args.file).with_context(|| {
        format!(
            "cannot open {}; give the path of a file written by `strata export`",
            args.file.display()
        )
    })?;
    let size_bytes = file.metadata().map_or(0, |metadata| metadata.len());
    let open = OpenStore::open(
        &args.store,
        Create::WithSegmentSizeMib(args.segment_size_mib),
    )?;
    let bar = progress::bytes_bar("importing", size_bytes);
    let mut importer = Importer {
        open: &open,
        pending: None,
        tally: Tally::default(),
        kept_streams: HashMap::new(),
        target_logins: None,
    };
    let result = importer.lines(BufReader::with_capacity(1 << 20, file), &args.file, &bar);
    bar.finish_and_clear();
    result?;
    let tally = importer.tally;
    eprintln!(
        "imported {} events and {} tombstones from {} (those already in the store were \
         recognised by their ids and not written again){}",
        tally.events,
        tally.tombstones,
        args.file.display(),
        if tally.skipped > 0 {
            format!(
                "; {} events of streams tombstoned in the target were left out",
                tally.skipped
            )
        } else {
            String::new()
        }
    );
    if tally.kept > 0 {
        eprintln!(
            "kept the target's own users and settings: {} events of those streams in the              file were not written",
            tally.kept
        );
    }
    Ok(())
}

struct Importer<'a> {
    open: &'a OpenStore,
    pending: Option<Batch>,
    tally: Tally,
    /// For each users-or-settings stream seen: whether the target had it before the import.
    kept_streams: HashMap<StreamName, bool>,
    /// The logins in the target's `$users`, read when first needed.
    target_logins: Option<HashSet<String>>,
}

impl Importer<'_> {
    /// Imports every line; on a bad line, appends everything before it, then stops.
    fn lines(
        &mut self,
        reader: impl BufRead,
        path: &std::path::Path,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        let mut reader = reader;
        let mut buffer = Vec::new();
        for number in 1.. {
            buffer.clear();
            let read = (&mut reader)
                .take(LINE_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut buffer);
            let read = match read {
                Ok(read) => read,
                Err(error) => {
                    self.flush()?;
                    return Err(error).with_context(|| {
                        format!(
                            "cannot read line {number} of {}; every event before it was \
                             imported, run the same import again once the file reads",
                            path.display()
                        )
                    });
                }
            };
            if read == 0 {
                break;
            }
            bar.inc(read as u64);
            let line = match line_text(&buffer) {
                Ok(line) => line,
                Err(reason) => {
                    self.flush()?;
                    usage_bail!(
                        "{} line {number}: {reason}. Every event before line {number} was \
                         imported and nothing from it on",
                        path.display()
                    );
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let (imported, stream) = match ndjson::decode(line).and_then(checked_stream) {
                Ok(checked) => checked,
                Err(reason) => {
                    self.flush()?;
                    usage_bail!(
                        "{} line {number}: {reason}. Every event before line {number} was \
                         imported and nothing from it on; fix the line and run the same import \
                         again (events already imported are recognised by their ids)",
                        path.display()
                    );
                }
            };
            if strata_auth::is_security_stream(stream.as_str()) && self.keeps(&stream)? {
                if let Imported::Event(event) = imported {
                    self.add_user_to_target_list(&stream, event)?;
                }
                continue;
            }
            match imported {
                Imported::Event(event) => self.add(event, stream, number)?,
                Imported::Tombstone { .. } => {
                    self.flush()?;
                    self.tombstone(&stream, number)?;
                }
            }
        }
        self.flush()
    }

    fn add(
        &mut self,
        imported: ImportedEvent,
        stream: StreamName,
        line: usize,
    ) -> anyhow::Result<()> {
        if let Some(batch) = &mut self.pending
            && batch.takes(&imported)
        {
            batch.size_bytes += imported.event.size_bytes();
            batch.events.push(imported.event);
            return Ok(());
        }
        self.flush()?;
        self.pending = Some(Batch {
            stream,
            first_revision: imported.revision,
            first_line: line,
            size_bytes: imported.event.size_bytes(),
            events: vec![imported.event],
        });
        Ok(())
    }

    /// Whether `stream` (users or settings) is the target's own, decided when first seen:
    /// before this import wrote anything to it.
    fn keeps(&mut self, stream: &StreamName) -> anyhow::Result<bool> {
        if let Some(kept) = self.kept_streams.get(stream) {
            return Ok(*kept);
        }
        self.flush()?;
        let state = self
            .open
            .block_on(self.open.store.stream_state(stream))
            .map_err(explain)?;
        let kept = state != StreamState::NoStream;
        self.kept_streams.insert(stream.clone(), kept);
        Ok(kept)
    }

    /// A `$User` entry of the file's `$users` whose login the target does not list yet is
    /// added to the target's list; every other event of a kept stream is left out.
    fn add_user_to_target_list(
        &mut self,
        stream: &StreamName,
        imported: ImportedEvent,
    ) -> anyhow::Result<()> {
        let event = imported.event;
        let login = String::from_utf8_lossy(&event.data).into_owned();
        if stream.as_str() != strata_auth::USERS_STREAM
            || event.event_type != strata_auth::USER_EVENT_TYPE
        {
            self.tally.kept += 1;
            return Ok(());
        }
        if self.target_logins.is_none() {
            let listed = self
                .open
                .block_on(
                    self.open
                        .store
                        .read_stream(stream, strata_core::ReadStreamOptions::forwards()),
                )
                .map_err(explain)?
                .into_events()
                .into_iter()
                .map(|event| String::from_utf8_lossy(&event.data).into_owned())
                .collect();
            self.target_logins = Some(listed);
        }
        let logins = self.target_logins.get_or_insert_with(HashSet::new);
        if !logins.insert(login) {
            self.tally.kept += 1;
            return Ok(());
        }
        self.open
            .block_on(
                self.open
                    .store
                    .append(stream, ExpectedRevision::Any, vec![event]),
            )
            .map_err(explain)?;
        self.tally.events += 1;
        Ok(())
    }

    fn tombstone(&mut self, stream: &StreamName, line: usize) -> anyhow::Result<()> {
        let store = &self.open.store;
        match self
            .open
            .block_on(store.tombstone_stream(stream, ExpectedRevision::Any))
        {
            Ok(_) | Err(Error::StreamDeleted { .. }) => {
                self.tally.tombstones += 1;
                Ok(())
            }
            Err(error) => Err(stopped_at(explain(error), line)),
        }
    }

    /// Appends the pending batch at the place its revisions say.
    fn flush(&mut self) -> anyhow::Result<()> {
        let Some(batch) = self.pending.take() else {
            return Ok(());
        };
        let count = batch.events.len() as u64;
        let store = &*self.open.store;
        let expected = expected_before(batch.first_revision);
        let appended =
            self.open
                .block_on(store.append(&batch.stream, expected, batch.events.clone()));
        match appended {
            Ok(_) => {}
            // Part of the batch may be there from an interrupted run, split differently:
            // one event at a time, each already-imported one is recognised by its id.
            Err(Error::WrongExpectedRevision { .. }) => {
                self.open
                    .block_on(one_by_one(store, &batch))
                    .map_err(|error| stopped_at(error, batch.first_line))?;
            }
            Err(Error::StreamDeleted { .. }) => {
                self.tally.skipped += count;
                return Ok(());
            }
            Err(error) => return Err(stopped_at(explain(error), batch.first_line)),
        }
        self.tally.events += count;
        Ok(())
    }
}

/// The expected revision of an append whose first event has `revision`.
fn expected_before(revision: u64) -> ExpectedRevision {
    match revision.checked_sub(1) {
        Some(previous) => ExpectedRevision::Exact(previous),
        None => ExpectedRevision::NoStream,
    }
}

async fn one_by_one(store: &dyn EventStore, batch: &Batch) -> anyhow::Result<()> {
    for (offset, event) in batch.events.iter().enumerate() {
        let revision = batch.first_revision + offset as u64;
        match store
            .append(
                &batch.stream,
                expected_before(revision),
                vec![event.clone()],
            )
            .await
        {
            Ok(_) => {}
            Err(Error::WrongExpectedRevision { actual, .. }) => {
                let short = match actual {
                    StreamState::NoStream => true,
                    StreamState::At(last) => last.0.saturating_add(1) < revision,
                    StreamState::Tombstoned => false,
                };
                if short {
                    anyhow::bail!(
                        "stream {} in the target is at {actual}, and the file has no lines for \
                         the revisions before {revision}: an append cannot recreate them; give \
                         every revision of each stream from 0, as `strata export` does",
                        batch.stream
                    );
                }
                anyhow::bail!(
                    "stream {} in the target is at {actual} and holds other events than the \
                     export at revision {revision}; import into an empty store",
                    batch.stream
                )
            }
            Err(error) => return Err(explain(error)),
        }
    }
    Ok(())
}

fn stopped_at(error: anyhow::Error, line: usize) -> anyhow::Error {
    error.context(format!(
        "the import stopped at the append starting on line {line}: every event before that \
         line was imported; run the same import again once the cause is fixed"
    ))
}

/// The line's stream name, checked.
fn checked_stream(imported: Imported) -> Result<(Imported, StreamName), String> {
    let name = match &imported {
        Imported::Event(event) => event.stream.as_str(),
        Imported::Tombstone { stream } => stream.as_str(),
    };
    let stream = match StreamName::new(name) {
        Ok(stream) => stream,
        // Metadata streams of the longest names are two bytes over a caller's limit.
        Err(error) => match name
            .strip_prefix("$$")
            .and_then(|described| StreamName::new(described).ok())
        {
            Some(described) => described.metadata_stream(),
            None => return Err(error.to_string()),
        },
    };
    Ok((imported, stream))
}
