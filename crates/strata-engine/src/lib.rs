//! Strata's embedded storage engine: an append-only log of pre-zeroed segment files made
//! of CRC32C-framed records, written by one group-committing writer, indexed in memory
//! and checkpointed to index files. See `docs/ON_DISK_FORMAT.md` for the bytes.
//!
//! ```
//! use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};
//! use strata_engine::{Config, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), strata_core::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Config::small_for_tests())?;
//! let stream = StreamName::new("cart-1")?;
//! let event = ProposedEvent::json("ItemAdded", r#"{"sku":"A","quantity":2}"#);
//! let result = store.append(&stream, ExpectedRevision::NoStream, vec![event]).await?;
//! assert_eq!(result.current_revision.0, 0);
//! let events = store.read_stream(&stream, ReadStreamOptions::forwards()).await?.into_events();
//! assert_eq!(events[0].event_type, "ItemAdded");
//! store.close();
//! # Ok(())
//! # }
//! ```
//!
//! Dependencies, each for a reason: `crc32c` (hardware CRC32C for frame checksums),
//! `hashbrown` (the index maps), `parking_lot` (short, uncontended locks), `tokio` (its
//! channels: replies to async callers and the log-end watch; `block_in_place` and its blocking pool for reads), `bytes` (events share the
//! buffer they were read into), `async-trait` (the `EventStore` trait), `tracing` (logs),
//! `rustix` (the `O_DIRECT` flag, safely, for zero-filling new segments without the page
//! cache), `serde_json` (the verify report), `memmap2` (sparse reads
//! take events from a read-only map of the segment instead of a `pread` each: see
//! `segment_map` for what a map risks).
//!
//! Feature `fault-injection` (tests only): `Config::faults` puts a `faults::Faults` plan under
//! the segment files — failed writes, syncs and reads, and simulated power loss.
// Unsafe code is denied, and allowed only where a segment file is mapped (`segment_map`).
#![deny(unsafe_code)]

mod all_reader;
mod checked_files;
mod config;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod faults;
mod filtered_reader;
mod format;
mod id_file;
mod id_index;
mod index;
mod index_file;
mod index_file_mend;
mod index_load;
mod index_lookup;
mod index_saver;
mod index_summary;
mod indexed_reader;
mod io;
mod log_reader;
mod postings_lookup;
mod recovery;
mod repair;
mod replay;
mod resolved_reader;
mod run_file;
mod run_filter;
mod run_heal;
mod run_record;
mod run_set;
mod scavenge;
mod scavenge_copy;
mod secondary;
mod segment_map;
mod segments;
mod shared;
mod store;
mod syncer;
mod tail;
mod verify;
mod writer;

pub use config::{Config, Durability};
pub use repair::{DroppedStream, Repair, RepairPlan};
pub use store::Store;
pub use strata_core::{ScavengeOptions, ScavengeProgress, ScavengeReport};
pub use syncer::{CommitObserver, CommitStats};
pub use verify::{VerifyProgress, VerifyReport, verify};
