//! Progress bars for long commands: drawn on a terminal, hidden with `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` steps, each called `what` (runs, batches, steps…), with the elapsed time
/// and an estimate of what is left; hidden when `quiet`.
pub fn progress_bar(quiet: bool, total: u64, what: &str) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:30}} {{pos}}/{{len}} {what} ({{elapsed}}, about {{eta}} left) {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
