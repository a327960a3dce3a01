//! Progress bars on stderr, hidden when stderr is not a terminal so that logs and pipes
//! stay clean.

use std::fmt::Write;
use std::io::IsTerminal;

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A bar counting `unit` up to `total`, labelled `label`.
pub(crate) fn bar(label: &str, total: u64, unit: &str) -> ProgressBar {
    let template =
        format!("{{prefix:>20}} {{wide_bar}} {{human_pos}}/{{human_len}} {unit} {{rate}} {{eta}}");
    labelled(label, total, &template)
}

/// A bar counting bytes up to `total_bytes`.
pub(crate) fn bytes_bar(label: &str, total_bytes: u64) -> ProgressBar {
    labelled(
        label,
        total_bytes,
        "{prefix:>20} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
}

fn labelled(label: &str, total: u64, template: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, out: &mut dyn Write| {
            let _ = write!(out, "{}/s", HumanCount(state.per_sec() as u64));
        })
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(total), target).with_style(style);
    bar.set_prefix(label.to_owned());
    bar
}
