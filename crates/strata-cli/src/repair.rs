//! `strata repair`: accepts the loss of everything from a log position on, so that a
//! store which refuses to open opens again. Prints what it drops; acts only with `--yes`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args)]
pub(crate) struct RepairArgs {
    /// Directory of the store to repair (it must not be open elsewhere).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Log position from which everything is dropped: where a transaction of the readable
    /// log ends, usually the end that the refused open and `strata verify` name.
    #[arg(long, value_name = "POSITION")]
    truncate_at: u64,
    /// Do it. Without this flag nothing is changed: the command only prints what it would
    /// drop.
    #[arg(long)]
    yes: bool,
}

/// Plans the repair, prints it, and applies it with `--yes`; `Ok(false)` when nothing was
/// changed because `--yes` was not given.
pub(crate) fn run(args: &RepairArgs) -> anyhow::Result<bool> {
    let dir = &args.data_dir;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the --data-dir of an existing store",
            dir.display()
        );
    }
    let repair = strata_engine::Repair::plan(dir, args.truncate_at)
        .with_context(|| format!("cannot plan a repair of the store in {}", dir.display()))?;
    println!("{}", repair.plan_details());
    if !args.yes {
        eprintln!(
            "nothing was changed: run again with --yes to drop the above (keep a copy of \
             {} first)",
            dir.display()
        );
        return Ok(false);
    }
    repair
        .apply()
        .with_context(|| format!("repairing the store in {}", dir.display()))?;
    println!(
        "repaired: the log of {} now ends at {}",
        dir.display(),
        args.truncate_at
    );
    Ok(true)
}
