//! `energyllm report DIR`: rebuilds `report.html` from an evaluation's results directory.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use energyllm_bench::html_report::write_html_report;

/// Arguments of `report`.
#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// A results directory written by `energyllm eval --out DIR` or `cargo xtask eval`.
    pub dir: PathBuf,
}

/// Runs `report`: writes DIR/report.html and says where.
pub fn run_report(args: &ReportArgs) -> anyhow::Result<()> {
    let path = write_html_report(&args.dir)
        .with_context(|| format!("building the report of {}", args.dir.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
