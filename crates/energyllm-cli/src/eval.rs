//! `energyllm eval` and `cargo xtask eval`: the flags of an evaluation, the tables of record, and
//! printing them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use energyllm_bench::eval::{energy_floor_of, evaluate, EvalSettings, WorkloadSource, CLAIRVOYANT};
use energyllm_bench::report::{headline, markdown_table_ci, shield_note, write_outputs, TABLE_NOTE};
use energyllm_core::registry::PluginSpec;
use energyllm_core::{BatchingMode, Slo};
use energyllm_sim::SimSetup;
use energyllm_workload::{ArrivalPattern, LengthDataset, ReadOptions, Replay, Trace, TraceFormat};

use crate::args::named_value;
use crate::progress::progress_bar;

/// The methods `eval` compares when none are named.
pub const DEFAULT_POLICIES: &[&str] = &[
    "static-high",
    "dvfs-only",
    "batch-only",
    "reactive-dvfs",
    "token-aware",
    "dynamollm",
    "throttllem",
    "voltana",
    "heuristic",
    "fixed:freq=1200,batch=16",
    "ppo",
    "clairvoyant",
];

/// Batching semantics, for the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Batching {
    /// Each batch runs to completion before the next is admitted (the EnergyLLM paper's setting).
    Static,
    /// vLLM-style continuous batching up to the batch cap.
    Continuous,
}

/// The experiments `eval --table` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    /// The configured setting.
    Main,
    /// The PPO agent against its ablations: w/o RL (the heuristic), w/o energy reward, fixed
    /// clock 1200 MHz, fixed batch 16, w/o token-aware state.
    Ablation,
    /// The same methods on another model and on another GPU.
    CrossModel,
    /// One long run.
    Long,
    /// Every table.
    All,
}

/// The SLO flags every command that judges latency takes.
#[derive(Args, Clone, Debug)]
pub struct SloArgs {
    /// End-to-end latency SLO, in seconds.
    #[arg(long, default_value_t = 11.0)]
    pub slo_e2e: f64,
    /// Time-to-first-token SLO, in seconds (off by default).
    #[arg(long)]
    pub slo_ttft: Option<f64>,
    /// Time-per-output-token SLO, in seconds (off by default).
    #[arg(long)]
    pub slo_tpot: Option<f64>,
}

impl SloArgs {
    /// The SLO, with every target checked to be a positive number of seconds.
    pub fn slo(&self) -> anyhow::Result<Slo> {
        for (flag, v) in
            [("--slo-e2e", Some(self.slo_e2e)), ("--slo-ttft", self.slo_ttft), ("--slo-tpot", self.slo_tpot)]
        {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                anyhow::bail!("{flag} must be a positive number of seconds, got {v}");
            }
        }
        Ok(Slo { e2e_s: self.slo_e2e, ttft_s: self.slo_ttft, tpot_s: self.slo_tpot })
    }
}

/// Arguments of `eval`.
#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// A method to compare, as NAME or NAME:key=value,… (repeat for several). Default: every
    /// baseline, fixed:freq=1200,batch=16 and the clairvoyant reference. `energyllm list` shows
    /// the names; `clairvoyant[:window_s=10,clock_stride=2]` is the non-deployable reference.
    #[arg(long = "policy", value_name = "SPEC")]
    pub policies: Vec<String>,
    /// Mean arrival rate, in requests per second.
    #[arg(long, default_value_t = 0.8)]
    pub arrival_rate: f64,
    /// Arrival process at that mean rate: poisson, gamma:cv=C, onoff:on_s=A,off_s=B,off_ratio=R,
    /// or diurnal:period_s=P,amplitude=A,peak_s=T.
    #[arg(long, default_value = "poisson", value_name = "SPEC")]
    pub arrival: String,
    /// Replay this trace (a file in any supported format, or a bundled trace name) instead of
    /// drawing arrivals; lengths come from the trace unless --dataset is also given.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Format of --trace and --dataset files (default: detected from the content).
    #[arg(long, value_parser = named_value(&TraceFormat::ALL, TraceFormat::name))]
    pub trace_format: Option<TraceFormat>,
    /// Multiply the trace's arrival times by this (2 = half the rate).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Multiply the trace's arrival rate by this (2 = gaps halved).
    #[arg(long, default_value_t = 1.0)]
    pub rate_scale: f64,
    /// Replay only the trace's arrivals before this many seconds (after scaling).
    #[arg(long)]
    pub trace_window: Option<f64>,
    /// Skip (and count) invalid lines of --trace and --dataset files instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Arrival window of each run, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// The latency SLO.
    #[command(flatten)]
    pub slo: SloArgs,
    /// Independent runs per method (same workloads for every method).
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
    /// Seed of the first run; run i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Lengths to draw from: a processed dataset ({"input_len", "output_len"} JSON lines), a trace
    /// in any supported format, or a bundled name (`energyllm dataset list`). Default: the bundled
    /// ShareGPT-like sample.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Built-in GPU profile.
    #[arg(long, default_value = "a100-40gb")]
    pub gpu: String,
    /// Built-in model profile.
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
    /// Batching semantics.
    ///
    /// Continuous by default: with chat-length answers (ShareGPT's mean is about 350 tokens),
    /// static batches of 8 cannot keep up with 0.8 req/s on an A100 in the calibrated simulator,
    /// and every method would sit far below the SLO.
    #[arg(long, value_enum, default_value_t = Batching::Continuous)]
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
    /// Which experiment: `main` (the setting above), `ablation` (PPO against its ablations),
    /// `cross-model` (the same methods on
    /// Qwen2.5-7B/A100 and on Llama-3.1-8B/H100, no retraining), `long` (one 30-minute run, so
    /// start-up transients do not dominate; no clairvoyant search, which grows with the run's
    /// length squared), or `all`. Default: main.
    #[arg(long, value_enum)]
    pub table: Option<Table>,
    /// A smoke run: 2 runs of 30 s (the long table: 5 minutes).
    #[arg(long)]
    pub quick: bool,
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
        let read = ReadOptions { format: self.trace_format, skip_invalid: self.skip_invalid };
        let dataset = match &self.dataset {
            Some(path) => {
                let (d, report) = LengthDataset::open(&path.to_string_lossy(), &read)?;
                if let Some(note) = report.skipped_note() {
                    eprintln!("note: {}: {note}", d.name);
                }
                d
            }
            None => LengthDataset::sharegpt_like(),
        };
        let workload = match &self.trace {
            Some(spec) => {
                let (trace, report) = Trace::open(spec, &read)?;
                if let Some(note) = report.skipped_note() {
                    eprintln!("note: {}: {note}", trace.name);
                }
                let replay = Replay {
                    trace,
                    time_scale: self.time_scale,
                    rate_scale: self.rate_scale,
                    window_s: self.trace_window,
                };
                replay.factor()?;
                WorkloadSource::Replay { replay, draw_lengths: self.dataset.is_some() }
            }
            None => WorkloadSource::Sampled(ArrivalPattern::parse(&self.arrival)?),
        };
        let mut setup = SimSetup::builtin(&self.gpu, &self.model)?;
        setup.controller.slo = self.slo.slo()?;
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
            workload,
            runs: self.runs,
            seed: self.seed,
        })
    }
}

/// The experiments `args` asks for: a name (empty for a single table) and the arguments of each.
pub fn experiments(args: &EvalArgs) -> Vec<(String, EvalArgs)> {
    let mut base = args.clone();
    if args.quick {
        base.runs = base.runs.min(2);
        base.duration = base.duration.min(30.0);
    }
    let table = args.table.unwrap_or(Table::Main);
    let mut out = Vec::new();
    if matches!(table, Table::Main | Table::All) {
        out.push(("main".to_owned(), base.clone()));
    }
    if matches!(table, Table::Ablation | Table::All) {
        let methods = [
            "static-high",
            "ppo",
            "heuristic",
            "ppo:variant=no-energy",
            "ppo:variant=fixed-clock-1200",
            "ppo:variant=fixed-batch-16",
            "ppo:variant=paper-features",
        ];
        out.push((
            "ablation".to_owned(),
            EvalArgs { policies: methods.map(String::from).to_vec(), ..base.clone() },
        ));
    }
    if matches!(table, Table::CrossModel | Table::All) {
        out.push((
            "cross-model-qwen2.5-7b".to_owned(),
            EvalArgs { model: "qwen2.5-7b".into(), ..base.clone() },
        ));
        out.push(("cross-model-h100".to_owned(), EvalArgs { gpu: "h100".into(), ..base.clone() }));
    }
    if matches!(table, Table::Long | Table::All) {
        let mut long =
            EvalArgs { runs: 1, duration: if args.quick { 300.0 } else { 1800.0 }, ..base.clone() };
        let names: Vec<String> = if long.policies.is_empty() {
            DEFAULT_POLICIES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            long.policies.clone()
        };
        long.policies = names.into_iter().filter(|p| !p.starts_with(CLAIRVOYANT)).collect();
        out.push(("long".to_owned(), long));
    }
    if out.len() == 1 && args.table.is_none() {
        out[0].0.clear();
    }
    out
}

/// Runs `eval`: prints each table and writes its files when `--out` is given (into a
/// subdirectory per experiment when there are several).
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    for (name, mut exp) in experiments(args) {
        if !name.is_empty() {
            println!("## {name}\n");
            exp.out = args.out.as_ref().map(|d| d.join(&name));
        }
        run_one(&exp)?;
        println!();
    }
    Ok(())
}

fn run_one(args: &EvalArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let total = settings.policies.len() as u64 * u64::from(settings.runs);
    let bar = progress_bar(args.quiet, total, "runs");
    let results = evaluate(&settings, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let floor = energy_floor_of(&settings)?;
    let text = format!(
        "{} × {} runs, SLO {} s end to end, {} on {}; {}:\n\n{}\n{}\n{}{}Energy floor (every token at its most \
         efficient clock × batch, SLO ignored; no method can go below): {:.1} J/request busy, {:.1} J/request board.\n",
        settings.policies.len(),
        settings.runs,
        settings.setup.controller.slo.e2e_s,
        settings.setup.model.name,
        settings.setup.gpu.name,
        settings.describe_workload(),
        markdown_table_ci(&results),
        TABLE_NOTE,
        headline(&results),
        shield_note(&results),
        floor.per_request_j(),
        floor.total_per_request_j()
    );
    print!("{text}");
    if let Some(dir) = &args.out {
        write_outputs(dir, &settings, &results, &text)
            .with_context(|| format!("writing results to {}", dir.display()))?;
        println!("\nwrote {}", dir.display());
    }
    Ok(())
}
