//! `cargo xtask sweep`: energy and SLO attainment per method as the arrival rate and the
//! end-to-end SLO move, under the EnergyLLM paper's protocol.

use anyhow::Context as _;
use clap::Args;

use energyllm_bench::eval::CLAIRVOYANT;
use energyllm_bench::sweep::{parse_points, sweep, to_csv, to_markdown};

use crate::eval::{EvalArgs, Protocol, PAPER_POLICIES};
use crate::progress::progress_bar;

/// Arguments of `sweep`: the evaluation's own flags plus the two axes.
#[derive(Args, Clone, Debug)]
pub struct SweepArgs {
    /// Arrival rates in requests/s: A..B (5 points), A..B:STEP or A,B,C.
    #[arg(long, default_value = "0.2..2.0")]
    pub arrival_rates: String,
    /// End-to-end SLOs in seconds, same forms.
    #[arg(long, default_value = "8..14:2")]
    pub slo: String,
    /// Everything else, as for `eval` (default methods: every deployable one).
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// Runs `sweep`: Markdown tables per SLO, and `sweep.csv` / `sweep.md` in `--out`.
pub fn run_sweep(args: &SweepArgs) -> anyhow::Result<()> {
    if args.eval.table.is_some() {
        anyhow::bail!("--table does not apply to a sweep, which sweeps the paper's protocol; drop it");
    }
    let mut eval = EvalArgs { protocol: Protocol::Paper, ..args.eval.clone() };
    if eval.policies.is_empty() {
        // The clairvoyant search is too slow to repeat at every point.
        eval.policies =
            PAPER_POLICIES.iter().filter(|p| !p.starts_with(CLAIRVOYANT)).map(|p| (*p).to_owned()).collect();
    }
    let settings = eval.settings()?;
    let rates = parse_points(&args.arrival_rates, "arrival rates")?;
    let slos = parse_points(&args.slo, "SLOs")?;
    let bar = progress_bar(eval.quiet, (rates.len() * slos.len()) as u64, "points");
    let points = sweep(&settings, &rates, &slos, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let md = to_markdown(&points);
    print!("{md}");
    if let Some(dir) = &eval.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("sweep.csv"), to_csv(&points))
            .with_context(|| format!("writing {}", dir.join("sweep.csv").display()))?;
        std::fs::write(dir.join("sweep.md"), &md)
            .with_context(|| format!("writing {}", dir.join("sweep.md").display()))?;
        println!("wrote {}", dir.display());
    }
    Ok(())
}
