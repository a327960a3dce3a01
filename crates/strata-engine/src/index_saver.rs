//! Writes index files on a thread of its own, so saving never delays acknowledgements.
//!
//! Files are written in the order they are handed over. After one fails, later ones are
//! dropped: a later file would leave a gap, and opening replays the log from the last
//! file written instead.

use std::path::PathBuf;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use crate::index::UnsavedStream;
use crate::index_file::write_index_file;
use crate::secondary::UnsavedPostings;

pub(crate) struct IndexFileContents {
    pub sequence: u64,
    pub covers_from: u64,
    pub covers_to: u64,
    pub streams: Vec<UnsavedStream>,
    pub postings: Vec<UnsavedPostings>,
    pub secondary_kept: bool,
}

/// What the saver's thread is handed, in order.
enum Work {
    File(IndexFileContents),
    /// Answered once every file handed over before it is written (or dropped).
    Flushed(Sender<()>),
}

pub(crate) struct IndexSaver {
    files: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

impl IndexSaver {
    pub(crate) fn start(index_dir: PathBuf) -> Self {
        let (files, to_write) = channel::<Work>();
        let thread = std::thread::Builder::new()
            .name("strata-index-saver".into())
            .spawn(move || {
                let mut failed = false;
                for work in to_write {
                    let contents = match work {
                        Work::File(contents) => contents,
                        Work::Flushed(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    if failed {
                        continue;
                    }
                    let written = write_index_file(
                        &index_dir,
                        contents.sequence,
                        contents.covers_from,
                        contents.covers_to,
                        &contents.streams,
                        &contents.postings,
                        contents.secondary_kept,
                    );
                    if let Err(error) = written {
                        tracing::warn!(%error, "could not save an index file; opening will replay the log after the last one saved");
                        failed = true;
                    }
                }
            })
            .ok();
        if thread.is_none() {
            tracing::warn!("could not start the index saver; opening will replay the whole log");
        }
        Self {
            files: Some(files),
            thread,
        }
    }

    pub(crate) fn save(&self, contents: IndexFileContents) {
        if let Some(files) = &self.files {
            let _ = files.send(Work::File(contents));
        }
    }

    /// Answers `done` once every file handed over so far is written (or dropped after a
    /// failure), so a caller can rely on the files being there.
    pub(crate) fn flushed(&self, done: Sender<()>) {
        match &self.files {
            Some(files) => {
                if let Err(unsent) = files.send(Work::Flushed(done))
                    && let Work::Flushed(done) = unsent.0
                {
                    let _ = done.send(());
                }
            }
            None => {
                let _ = done.send(());
            }
        }
    }

    /// Waits until every file handed over is written (or dropped after a failure).
    pub(crate) fn finish(&mut self) {
        self.files.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
