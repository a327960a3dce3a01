//! `strata verify`: checks a store's checksums and index entries.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::progress;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Directory of the store to check.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Verifies the store; `Ok(false)` when problems were found.
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<bool> {
    let dir = &args.data_dir;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the --data-dir of an existing store",
            dir.display()
        );
    }
    let bar = progress::bytes_bar("verifying", 0);
    let report = strata_engine::verify(dir, &mut |step: strata_engine::VerifyProgress| {
        bar.set_length(step.total_bytes);
        bar.set_position(step.checked_bytes);
    })
    .with_context(|| {
        format!(
            "cannot verify the store in {}; check that it is a Strata data directory \
             and readable by this user",
            dir.display()
        )
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if !report.is_ok() {
        eprintln!(
            "error: the store in {} has problems (above); keep a copy of the directory \
             before any repair (`strata repair --help`)",
            dir.display()
        );
    }
    Ok(report.is_ok())
}
