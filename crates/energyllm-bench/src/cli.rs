//! The command-line surface shared by the `energyllm` binary and `cargo xtask`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use energyllm_core::registry::{
    list, ActuatorPlugin, EnginePlugin, PerfModelPlugin, Plugin, PluginSpec, PolicyPlugin,
};
use energyllm_core::{BatchingMode, Slo};

use crate::driver::SimSetup;
use crate::eval::{evaluate, EvalSettings};
use crate::report::{markdown_table, write_outputs};
use crate::workload::LengthDataset;

/// The methods `eval` compares when none are named.
pub const DEFAULT_POLICIES: &[&str] = &["static-high", "fixed:freq=1200,batch=16"];

/// Batching semantics, for the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Batching {
    /// Each batch runs to completion before the next is admitted (the EnergyLLM paper's setting).
    Static,
    /// vLLM-style continuous batching up to the batch cap.
    Continuous,
}

/// Arguments of `eval`.
#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// A method to compare, as NAME or NAME:key=value,… (repeat for several). Default: static-high
    /// and fixed:freq=1200,batch=16. `energyllm list` shows the names.
    #[arg(long = "policy", value_name = "SPEC")]
    pub policies: Vec<String>,
    /// Poisson arrival rate, in requests per second.
    #[arg(long, default_value_t = 0.8)]
    pub arrival_rate: f64,
    /// Arrival window of each run, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// End-to-end latency SLO, in seconds.
    #[arg(long, default_value_t = 11.0)]
    pub slo_e2e: f64,
    /// Time-to-first-token SLO, in seconds (off by default).
    #[arg(long)]
    pub slo_ttft: Option<f64>,
    /// Time-per-output-token SLO, in seconds (off by default).
    #[arg(long)]
    pub slo_tpot: Option<f64>,
    /// Independent runs per method (same workloads for every method).
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
    /// Seed of the first run; run i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JSON-lines file of {"input_len", "output_len"} to draw request lengths from. Default: the
    /// bundled ShareGPT-like sample.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Built-in GPU profile.
    #[arg(long, default_value = "a100-40gb")]
    pub gpu: String,
    /// Built-in model profile.
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
    /// Batching semantics.
    #[arg(long, value_enum, default_value_t = Batching::Static)]
    pub batching: Batching,
    /// Seconds between timed decisions (the controller also decides when a batch completes).
    #[arg(long, default_value_t = 1.0)]
    pub decision_interval: f64,
    /// Directory for table.md, summary/runs/requests JSON and CSV.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl EvalArgs {
    /// The evaluation these arguments describe.
    pub fn settings(&self) -> anyhow::Result<EvalSettings> {
        let names: Vec<&str> = if self.policies.is_empty() {
            DEFAULT_POLICIES.to_vec()
        } else {
            self.policies.iter().map(String::as_str).collect()
        };
        let policies = names.iter().map(|s| PluginSpec::parse(s)).collect::<Result<Vec<_>, _>>()?;
        let dataset = match &self.dataset {
            Some(path) => LengthDataset::load_jsonl(path)?,
            None => LengthDataset::sharegpt_like(),
        };
        let mut setup = SimSetup::builtin(&self.gpu, &self.model)?;
        setup.controller.slo = Slo { e2e_s: self.slo_e2e, ttft_s: self.slo_ttft, tpot_s: self.slo_tpot };
        setup.controller.batching = match self.batching {
            Batching::Static => BatchingMode::Static,
            Batching::Continuous => BatchingMode::Continuous,
        };
        setup.controller.decision_interval_s = Some(self.decision_interval);
        setup.controller.validate()?;
        Ok(EvalSettings {
            policies,
            setup,
            dataset,
            arrival_rate_rps: self.arrival_rate,
            duration_s: self.duration,
            runs: self.runs,
            seed: self.seed,
        })
    }
}

/// Runs `eval`: prints the table and writes the files when `--out` is given.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let total = settings.policies.len() as u64 * u64::from(settings.runs);
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} runs ({elapsed}, about {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results = evaluate(&settings, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let summaries: Vec<_> = results.iter().map(|r| r.summary.clone()).collect();
    println!(
        "{} × {} runs of {} s at {} req/s, SLO {} s end to end, {} on {} ({}):\n",
        settings.policies.len(),
        settings.runs,
        settings.duration_s,
        settings.arrival_rate_rps,
        settings.setup.controller.slo.e2e_s,
        settings.setup.model.name,
        settings.setup.gpu.name,
        settings.dataset.name
    );
    print!("{}", markdown_table(&summaries));
    if let Some(dir) = &args.out {
        write_outputs(dir, &settings, &results)
            .with_context(|| format!("writing results to {}", dir.display()))?;
        println!("\nwrote {}", dir.display());
    }
    Ok(())
}

fn list_kind<P: Plugin>(out: &mut String) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let plugins = list::<P>()?;
    let _ = writeln!(out, "{}:", P::KIND);
    if plugins.is_empty() {
        let _ = writeln!(out, "  (none installed)");
    }
    for p in plugins {
        let _ = writeln!(out, "  {:<16} {}", p.name(), p.description());
    }
    Ok(())
}

/// What `energyllm list` prints: every installed plugin, by kind.
pub fn list_plugins() -> anyhow::Result<String> {
    energyllm_policy::link();
    let mut out = String::new();
    list_kind::<PolicyPlugin>(&mut out)?;
    list_kind::<ActuatorPlugin>(&mut out)?;
    list_kind::<EnginePlugin>(&mut out)?;
    list_kind::<PerfModelPlugin>(&mut out)?;
    Ok(out)
}
