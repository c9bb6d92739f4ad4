//! `cargo xtask train`: the flags of a PPO training run, and its progress bar.

use std::path::PathBuf;

use clap::Args;

use energyllm_bench::train::{run_train, Features, Preset, Reward, TrainConfig, Trained, DEFAULT_TIMESTEPS};

use crate::args::named_value;
use crate::progress::progress_bar;

/// Arguments of `train`.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Environment steps (decision epochs) to train for, rounded up to whole rollouts.
    #[arg(long, default_value_t = DEFAULT_TIMESTEPS)]
    pub total_timesteps: u64,
    /// Seed of everything random (weights, episodes, actions, minibatch order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hyperparameter preset: `fast` (small networks, a policy in about a minute) or `paper`
    /// (the EnergyLLM paper's 256-256 ReLU, minibatch 64, 10 epochs).
    #[arg(long, default_value = "fast", value_parser = named_value(&Preset::ALL, Preset::name))]
    pub preset: Preset,
    /// Observation features: `token-aware` (16) or `paper` (the paper's 7, the "w/o token
    /// awareness" ablation).
    #[arg(long, default_value = "token-aware", value_parser = named_value(&Features::ALL, Features::name))]
    pub features: Features,
    /// Reward shape: `constrained` (energy with a Lagrangian SLO-attainment constraint, the
    /// default, which beat the paper's shape on the evaluation; BENCHMARKS.md), `paper` or
    /// `no-energy` (the "w/o energy reward" ablation).
    #[arg(long, default_value = "constrained", value_parser = named_value(&Reward::ALL, Reward::name))]
    pub reward: Reward,
    /// SLO attainment targeted by `--reward constrained`.
    #[arg(long, default_value_t = 0.95)]
    pub target_attainment: f64,
    /// Fix the clock (MHz): the "fixed clock" ablation (only batch caps are learned).
    #[arg(long)]
    pub fixed_clock: Option<u32>,
    /// Fix the batch cap: the "fixed batch" ablation (only clocks are learned).
    #[arg(long)]
    pub fixed_batch: Option<u32>,
    /// Train without the safety shield in the loop.
    #[arg(long)]
    pub no_shield: bool,
    /// More GPU profiles to draw episodes on besides the A100-40GB (domain randomisation), e.g.
    /// `--extra-gpu h100`; the checkpoint keeps the A100's action space.
    #[arg(long = "extra-gpu", value_name = "GPU")]
    pub extra_gpus: Vec<String>,
    /// Parallel environments (default: the preset's).
    #[arg(long)]
    pub envs: Option<usize>,
    /// Directory for curve.csv, curve.svg and checkpoints (default: results/train).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the final checkpoint here.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The training run these flags describe.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            total_timesteps: self.total_timesteps,
            seed: self.seed,
            preset: self.preset,
            features: self.features,
            reward: self.reward,
            target_attainment: self.target_attainment,
            fixed_clock: self.fixed_clock,
            fixed_batch: self.fixed_batch,
            no_shield: self.no_shield,
            extra_gpus: self.extra_gpus.clone(),
            envs: self.envs,
            out: self.out.clone(),
            checkpoint: self.checkpoint.clone(),
        }
    }
}

/// Trains with a progress bar and prints the run's summary; returns the checkpoint.
pub fn train(args: &TrainArgs, out: &std::path::Path) -> anyhow::Result<Trained> {
    let config = args.config();
    let bar = progress_bar(args.quiet, config.total_timesteps, "steps");
    let trained = run_train(&config, out, |steps, status| {
        bar.set_position(steps);
        bar.set_message(status);
    })?;
    bar.finish_and_clear();
    print!("{}", trained.summary);
    Ok(trained)
}
