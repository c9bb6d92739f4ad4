//! `energyllm profile`: sweeps clocks × batch sizes × token configs through the `Engine` and
//! `FrequencyActuator` traits (batch level, EnergyLLM's schema and more), or samples the
//! simulator's iteration model (iteration level, what the tree models fit).

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};

use energyllm_core::registry::{find, ActuatorPlugin, EnginePlugin, PluginSpec};
use energyllm_core::{BatchingMode, Engine, FrequencyActuator, Mhz, PAPER_BATCHES, PAPER_FREQS_MHZ};
use energyllm_engines::{IterationModel, ModelSpec, SimEngineConfig, SimServer};
use energyllm_hw::{GpuSpec, SharedSimGpu, SimGpu};
use energyllm_models::profile::write_rows;

use energyllm_bench::profiler::{
    profile_batches, sample_iterations, IterationSampler, ProfileSettings, TokenConfig,
};

use crate::progress::progress_bar;

/// Profile level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileLevel {
    /// Whole batches through the Engine and FrequencyActuator traits (EnergyLLM's schema).
    Batch,
    /// Single iterations sampled from the simulator's iteration model (what `fit gbt` reads).
    Iteration,
}

/// Arguments of `profile`.
#[derive(Args, Clone, Debug)]
pub struct ProfileArgs {
    /// Batch level (through the traits) or iteration level (simulator only).
    #[arg(long, value_enum, default_value_t = ProfileLevel::Batch)]
    pub level: ProfileLevel,
    /// Engine to profile, NAME or NAME:key=value,… (`energyllm list` shows them). `sim` with the
    /// `sim` actuator shares one simulated GPU between them.
    #[arg(long, default_value = "sim")]
    pub engine: String,
    /// Actuator that sets the clock and reads energy, NAME or NAME:key=value,….
    #[arg(long, default_value = "sim")]
    pub actuator: String,
    /// Built-in GPU profile of the simulated pair.
    #[arg(long, default_value = "a100-40gb")]
    pub gpu: String,
    /// Built-in model profile of the simulated pair.
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
    /// Clocks in MHz, comma-separated. Default: the EnergyLLM paper's 15 clocks (705–1410).
    #[arg(long, value_delimiter = ',')]
    pub freqs: Vec<u32>,
    /// Batch sizes, comma-separated. Default: 1,2,4,8,16,32,64.
    #[arg(long, value_delimiter = ',')]
    pub batch_sizes: Vec<u32>,
    /// Token configs INPUTxOUTPUT, comma-separated (batch level).
    #[arg(long, value_delimiter = ',', default_value = "50x50,250x150,500x300")]
    pub token_configs: Vec<String>,
    /// Runs of each point (batch level).
    #[arg(long, default_value_t = 3)]
    pub repeats: u32,
    /// Iterations to sample (iteration level).
    #[arg(long, default_value_t = 20_000)]
    pub samples: usize,
    /// Seed of the iteration sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CSV file to write.
    #[arg(long)]
    pub output: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn freqs_or_default(freqs: &[u32]) -> Vec<Mhz> {
    if freqs.is_empty() {
        PAPER_FREQS_MHZ.iter().map(|&f| Mhz(f)).collect()
    } else {
        freqs.iter().map(|&f| Mhz(f)).collect()
    }
}

/// The engine and actuator a profile runs on. The simulated pair shares one GPU, as a live
/// engine and its actuator share the physical one; any other pair comes from the registries.
fn build_pair(args: &ProfileArgs) -> anyhow::Result<(Box<dyn Engine>, Box<dyn FrequencyActuator>)> {
    energyllm_models::link();
    let engine = PluginSpec::parse(&args.engine)?;
    let actuator = PluginSpec::parse(&args.actuator)?;
    if engine.name == "sim" && actuator.name == "sim" {
        let empty = |s: &PluginSpec| s.config.as_object().is_none_or(|m| m.is_empty());
        if !empty(&engine) || !empty(&actuator) {
            bail!("configure the simulated engine and GPU with --gpu and --model, not with parameters");
        }
        let gpu = GpuSpec::builtin(&args.gpu)?;
        let model = ModelSpec::builtin(&args.model)?;
        let shared = SharedSimGpu::new(SimGpu::with_count(gpu, model.tensor_parallel));
        // Static batches: each runs alone to completion, the semantics of EnergyLLM's profile.
        let config = SimEngineConfig { batching: BatchingMode::Static, ..SimEngineConfig::default() };
        let server = SimServer::new(config, model, shared.clone())?;
        return Ok((Box::new(server), Box::new(shared)));
    }
    let e = (find::<EnginePlugin>(&engine.name)?.build)(&engine.config)?;
    let a = (find::<ActuatorPlugin>(&actuator.name)?.build)(&actuator.config)?;
    Ok((e, a))
}

/// Runs `profile`.
pub fn run_profile(args: &ProfileArgs) -> anyhow::Result<()> {
    let freqs = freqs_or_default(&args.freqs);
    match args.level {
        ProfileLevel::Batch => {
            let token_configs = args
                .token_configs
                .iter()
                .map(|s| s.parse::<TokenConfig>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let settings = ProfileSettings {
                freqs,
                batch_sizes: if args.batch_sizes.is_empty() {
                    PAPER_BATCHES.to_vec()
                } else {
                    args.batch_sizes.clone()
                },
                token_configs,
                repeats: args.repeats,
            };
            let (mut engine, mut actuator) = build_pair(args)?;
            let bar = progress_bar(args.quiet, settings.points() as u64, "batches");
            let rows = profile_batches(engine.as_mut(), actuator.as_mut(), &settings, |done, _| {
                bar.set_position(done as u64)
            })?;
            bar.finish_and_clear();
            write_rows(&args.output, &rows)?;
            println!(
                "profiled {} batches ({} clocks × {} batch sizes × {} token configs × {} repeats) on {} / {}; wrote {}",
                rows.len(),
                settings.freqs.len(),
                settings.batch_sizes.len(),
                settings.token_configs.len(),
                settings.repeats,
                engine.name(),
                actuator.name(),
                args.output.display()
            );
        }
        ProfileLevel::Iteration => {
            if args.engine != "sim" || args.actuator != "sim" {
                bail!(
                    "iteration-level profiles come from the simulator's iteration model only (the Engine trait \
                     reports requests, not iterations): drop --engine/--actuator or use --level batch"
                );
            }
            let sampler = IterationSampler {
                model: ModelSpec::builtin(&args.model)?,
                gpu: GpuSpec::builtin(&args.gpu)?,
                timing: IterationModel::default(),
                max_batched_tokens: SimEngineConfig::default().max_num_batched_tokens,
                max_batch: 256,
                max_context: 4096,
            };
            let rows = sample_iterations(&sampler, &freqs, args.samples, args.seed)?;
            write_rows(&args.output, &rows)?;
            println!(
                "sampled {} iterations of {} on {} at {} clocks (seed {}); wrote {}",
                rows.len(),
                sampler.model.name,
                sampler.gpu.name,
                freqs.len(),
                args.seed,
                args.output.display()
            );
        }
    }
    Ok(())
}
