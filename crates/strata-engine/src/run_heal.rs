//! Rebuilding a sorted run found damaged while the store serves (`Run::replacement`).
//!
//! A run covers the log range of the index files it was written beside (one per index
//! save, merged since), and holds exactly what they hold: the same streams' records and
//! the same secondary keys' positions. So the run of `[from, to)` is rebuilt from the
//! index files of that range — each read whole and checked against its CRC32C, as the
//! open checks them — one run per file, then merged pairwise into the run's own name. A
//! secondary key's index revisions continue from its positions in the files before
//! `from`, counted from their summaries (`index_summary`). The log is not read: the index
//! files are what the log gave at each save, and a file that fails its checksum makes the
//! rebuild fail (the next open then rebuilds the index from the log).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_core::{Error, Result};

use crate::index_file::{list_index_files, run_entries_of, summarize};
use crate::index_summary::read_summary;
use crate::run_file::{Run, merge_runs, sort_entries, write_run};

/// Writes the run of `[from, to)` again at `run_path` (`<data dir>/index-runs/…`) from the
/// index files in `<data dir>/index/`.
pub(crate) fn rebuild_from_index_files(run_path: &Path, from: u64, to: u64) -> Result<()> {
    let index_dir = run_path
        .parent()
        .and_then(Path::parent)
        .map(|data_dir| data_dir.join("index"))
        .ok_or_else(|| corrupt(run_path, "has no data directory to rebuild it from"))?;
    let mut counts: HashMap<(u8, String), u64> = HashMap::new();
    let mut parts: Vec<PathBuf> = Vec::new();
    let mut at = from;
    let result = (|| {
        for (_, path) in list_index_files(&index_dir)? {
            if at >= to {
                break;
            }
            if let Some(summary) = read_summary(&path)
                && summary.covers_to <= from
            {
                for (kind, name, count) in summary.postings {
                    *counts.entry((kind as u8, name)).or_insert(0) += count;
                }
                continue;
            }
            let bytes = std::fs::read(&path)
                .map_err(|error| Error::io(format!("reading {}", path.display()), error))?;
            let unusable = |reason: String| {
                corrupt(
                    run_path,
                    &format!("cannot be rebuilt: index file {} {reason}", path.display()),
                )
            };
            let summary = summarize(&bytes).map_err(unusable)?;
            if summary.covers_to <= from {
                for (kind, name, count) in summary.postings {
                    *counts.entry((kind as u8, name)).or_insert(0) += count;
                }
                continue;
            }
            let (coverage, mut entries) = run_entries_of(&bytes, &mut counts).map_err(unusable)?;
            if coverage.covers_from != at || coverage.covers_to > to {
                return Err(unusable(format!(
                    "covers [{}, {}), not the range from {at} within the run",
                    coverage.covers_from, coverage.covers_to
                )));
            }
            sort_entries(&mut entries)?;
            let part = part_path(run_path, parts.len());
            write_run(&part, coverage.covers_from, coverage.covers_to, entries)?;
            parts.push(part);
            at = coverage.covers_to;
        }
        if at != to {
            return Err(corrupt(
                run_path,
                &format!("cannot be rebuilt: the index files end at {at}"),
            ));
        }
        merge_parts(run_path, &mut parts)
    })();
    for part in &parts {
        let _ = std::fs::remove_file(part);
    }
    result
}

/// Merges the runs `parts` (adjacent, oldest first) pairwise until one is left, written
/// at `run_path`.
fn merge_parts(run_path: &Path, parts: &mut Vec<PathBuf>) -> Result<()> {
    let mut made = parts.len();
    while parts.len() > 1 {
        let mut merged = Vec::with_capacity(parts.len().div_ceil(2));
        for pair in parts.chunks(2) {
            let [older, newer] = pair else {
                merged.push(pair[0].clone());
                continue;
            };
            let path = if parts.len() == 2 {
                run_path.to_path_buf()
            } else {
                made += 1;
                part_path(run_path, made)
            };
            merge_runs(&open_part(older)?, &open_part(newer)?, &path)?;
            for input in [older, newer] {
                let _ = std::fs::remove_file(input);
            }
            merged.push(path);
        }
        *parts = merged;
    }
    match parts.pop() {
        Some(last) if last != run_path => {
            std::fs::rename(&last, run_path)
                .map_err(|error| Error::io(format!("renaming {}", last.display()), error))?;
            if let Some(dir) = run_path.parent() {
                crate::segments::sync_dir(dir)?;
            }
            Ok(())
        }
        Some(_) => Ok(()),
        None => Err(corrupt(
            run_path,
            "cannot be rebuilt: no index file covers it",
        )),
    }
}

fn open_part(path: &Path) -> Result<Run> {
    Run::open_to_check(path).map_err(|reason| corrupt(path, &reason))
}

/// A run built on the way (`…run.heal<n>.tmp`: removed by the next open if left behind).
fn part_path(run_path: &Path, number: usize) -> PathBuf {
    let mut name = run_path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".heal{number}.tmp"));
    run_path.with_file_name(name)
}

fn corrupt(run_path: &Path, reason: &str) -> Error {
    Error::Corrupt {
        detail: format!("run {} {reason}", run_path.display()),
    }
}
