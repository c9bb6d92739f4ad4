//! `cargo xtask train`: PPO on the serving environment, with progress reports, a training curve
//! (CSV and SVG) and checkpoints.
//!
//! Two presets. `fast` (the default) is sized to train a policy in under a minute on a 2-core
//! machine: 64-64 tanh networks, 2 environments in parallel, 1024-step rollouts per
//! environment, minibatches of 256, 4 epochs, learning rate 1e-3. `paper` is the EnergyLLM
//! paper's configuration: 256-256 ReLU, 1 environment, 1024-step rollouts, minibatches of 64,
//! 10 epochs, 3e-4. Both share the paper's γ, λ, clip, entropy, value and gradient-norm
//! settings. The whole run is deterministic under `--seed`: the checkpoint it writes is the same
//! file every time (no wall times go into it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use energyllm_policy::env::Env;
use energyllm_policy::nn::Activation;
use energyllm_policy::ppo::{LagrangeConfig, Progress};
use energyllm_policy::{Checkpoint, FeatureSet, Ppo, PpoConfig};

use energyllm_sim::serving_env::{RewardMode, ServingEnv, ServingEnvConfig};

use crate::plots::training_curve_svg;
use crate::Error;

/// Training configuration presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Small networks and large minibatches: a policy in about a minute.
    Fast,
    /// The EnergyLLM paper's configuration (256-256 ReLU, minibatch 64, 10 epochs).
    Paper,
}

/// Observation feature sets, for the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Features {
    /// The 16 token-aware features.
    TokenAware,
    /// The paper's 7 features (the "w/o token awareness" ablation).
    Paper,
}

/// Reward shapes, for the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reward {
    /// The paper's: SLO hit/miss, energy per request, bonus under 180 J.
    Paper,
    /// SLO terms only (the "w/o energy reward" ablation).
    NoEnergy,
    /// Energy reward with a Lagrangian SLO-attainment constraint.
    Constrained,
}

impl Preset {
    /// Every preset, in the order the command line lists them.
    pub const ALL: [Preset; 2] = [Preset::Fast, Preset::Paper];

    /// The preset's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Fast => "fast",
            Preset::Paper => "paper",
        }
    }
}

impl Features {
    /// Every feature set, in the order the command line lists them.
    pub const ALL: [Features; 2] = [Features::TokenAware, Features::Paper];

    /// The feature set's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Features::TokenAware => "token-aware",
            Features::Paper => "paper",
        }
    }
}

impl Reward {
    /// Every reward shape, in the order the command line lists them.
    pub const ALL: [Reward; 3] = [Reward::Paper, Reward::NoEnergy, Reward::Constrained];

    /// The reward shape's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Reward::Paper => "paper",
            Reward::NoEnergy => "no-energy",
            Reward::Constrained => "constrained",
        }
    }
}

/// The default `--total-timesteps`.
pub const DEFAULT_TIMESTEPS: u64 = 655_360;

/// What to train and where to write it: the settings of `cargo xtask train`.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Environment steps (decision epochs) to train for, rounded up to whole rollouts.
    pub total_timesteps: u64,
    /// Seed of everything random (weights, episodes, actions, minibatch order).
    pub seed: u64,
    /// Hyperparameter preset.
    pub preset: Preset,
    /// Observation features.
    pub features: Features,
    /// Reward shape. Default: constrained, which beat the paper's shape on the evaluation
    /// (BENCHMARKS.md).
    pub reward: Reward,
    /// SLO attainment targeted by `--reward constrained`.
    pub target_attainment: f64,
    /// Fix the clock (MHz): the "fixed clock" ablation (only batch caps are learned).
    pub fixed_clock: Option<u32>,
    /// Fix the batch cap: the "fixed batch" ablation (only clocks are learned).
    pub fixed_batch: Option<u32>,
    /// Train without the safety shield in the loop.
    pub no_shield: bool,
    /// More GPU profiles to draw episodes on besides the A100-40GB (domain randomisation), e.g.
    /// `--extra-gpu h100`; the checkpoint keeps the A100's action space.
    pub extra_gpus: Vec<String>,
    /// Parallel environments (default: the preset's).
    pub envs: Option<usize>,
    /// Directory for curve.csv, curve.svg and checkpoints (default: results/train).
    pub out: Option<PathBuf>,
    /// Also write the final checkpoint here.
    pub checkpoint: Option<PathBuf>,
}

/// The default training run: the settings that make the shipped default checkpoint.
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            total_timesteps: DEFAULT_TIMESTEPS,
            seed: 0,
            preset: Preset::Fast,
            features: Features::TokenAware,
            reward: Reward::Constrained,
            target_attainment: 0.95,
            fixed_clock: None,
            fixed_batch: None,
            no_shield: false,
            extra_gpus: Vec::new(),
            envs: None,
            out: None,
            checkpoint: None,
        }
    }
}

impl TrainConfig {
    /// Whether these are the arguments that make the shipped default checkpoint.
    pub fn is_default_variant(&self) -> bool {
        self.total_timesteps == DEFAULT_TIMESTEPS
            && self.seed == 0
            && self.preset == Preset::Fast
            && self.features == Features::TokenAware
            && self.reward == Reward::Constrained
            && self.target_attainment == 0.95
            && self.fixed_clock.is_none()
            && self.fixed_batch.is_none()
            && !self.no_shield
            && self.extra_gpus.is_empty()
            && self.envs.is_none()
    }

    /// The PPO hyperparameters.
    pub fn ppo_config(&self) -> PpoConfig {
        let mut c = match self.preset {
            Preset::Paper => PpoConfig::default(),
            Preset::Fast => PpoConfig {
                learning_rate: 1e-3,
                n_steps: 1024,
                n_envs: 2,
                n_epochs: 4,
                batch_size: 256,
                hidden: vec![64, 64],
                activation: Activation::Tanh,
                ..PpoConfig::default()
            },
        };
        if let Some(n) = self.envs {
            c.n_envs = n;
        }
        if self.reward == Reward::Constrained {
            c.lagrange = Some(LagrangeConfig { lr: 0.5, initial: 1.0 });
        }
        c
    }

    /// The environment configuration.
    pub fn env_config(&self) -> ServingEnvConfig {
        let mut e = ServingEnvConfig {
            features: match self.features {
                Features::TokenAware => FeatureSet::TokenAware,
                Features::Paper => FeatureSet::Paper,
            },
            shield: !self.no_shield,
            allowed_freqs_mhz: self.fixed_clock.map(|f| vec![f]),
            allowed_batches: self.fixed_batch.map(|b| vec![b]),
            extra_gpus: self.extra_gpus.clone(),
            ..ServingEnvConfig::default()
        };
        e.reward.mode = match self.reward {
            Reward::Paper => RewardMode::Paper,
            Reward::NoEnergy => RewardMode::NoEnergy,
            Reward::Constrained => RewardMode::Constrained,
        };
        e.reward.target_attainment = self.target_attainment;
        e
    }
}

/// One row of the training curve.
#[derive(Clone, Debug, Default)]
struct CurveRow {
    timesteps: u64,
    episodes: usize,
    reward: f64,
    slo: f64,
    energy: f64,
    overrides: f64,
    progress: Progress,
}

fn mean_metric(p: &Progress, name: &str) -> f64 {
    let v: Vec<f64> =
        p.episodes.iter().filter_map(|e| e.metrics.iter().find(|m| m.0 == name).map(|m| m.1)).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn csv(rows: &[CurveRow]) -> String {
    let mut s = String::from(
        "timesteps,episodes,mean_episode_reward,slo_attainment,energy_per_request_j,shield_overrides,\
         policy_loss,value_loss,entropy,approx_kl,clip_fraction,lambda\n",
    );
    for r in rows {
        let u = &r.progress.update;
        let _ = writeln!(
            s,
            "{},{},{:.4},{:.4},{:.2},{:.2},{:.5},{:.5},{:.4},{:.5},{:.4},{:.4}",
            r.timesteps,
            r.episodes,
            r.reward,
            r.slo,
            r.energy,
            r.overrides,
            u.policy_loss,
            u.value_loss,
            u.entropy,
            u.approx_kl,
            u.clip_fraction,
            r.progress.lambda
        );
    }
    s
}

/// The curve as three stacked panels against steps.
fn svg(rows: &[CurveRow]) -> String {
    let xmax = rows.last().map_or(1.0, |r| r.timesteps as f64).max(1.0);
    let series = |f: fn(&CurveRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.timesteps as f64, f(r))).filter(|p| p.1.is_finite()).collect()
    };
    training_curve_svg(
        &[
            ("mean episode reward", series(|r| r.reward)),
            ("SLO attainment", series(|r| r.slo)),
            ("busy energy per request (J)", series(|r| r.energy)),
        ],
        xmax,
    )
}

/// Environment steps per second with uniformly random allowed actions (the environment alone).
pub fn env_steps_per_s(config: &ServingEnvConfig, steps: u64, seed: u64) -> Result<f64, Error> {
    let mut env = ServingEnv::new(config.clone())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mask = vec![true; env.n_actions()];
    let t = Instant::now();
    env.reset(rng.gen())?;
    for _ in 0..steps {
        env.action_mask(&mut mask);
        let allowed: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
        let a = allowed[rng.gen_range(0..allowed.len())];
        if env.step(a)?.done {
            env.reset(rng.gen())?;
        }
    }
    Ok(steps as f64 / t.elapsed().as_secs_f64())
}

/// What a training run produced.
pub struct Trained {
    /// The final checkpoint (also written to `out/checkpoint.json`).
    pub checkpoint: Checkpoint,
    /// What to tell the person who ran it: speeds, the last episodes' figures, the files written.
    pub summary: String,
}

/// Runs `train`. Writes curve.csv, curve.svg and checkpoint.json into `out` (and the checkpoint
/// to `args.checkpoint` when given). After each PPO update, `on_update` gets the steps done so far
/// and a one-line status for a progress display.
pub fn run_train(
    args: &TrainConfig,
    out: &Path,
    mut on_update: impl FnMut(u64, String),
) -> Result<Trained, Error> {
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_owned(), source })?;
    let ppo_config = args.ppo_config();
    let env_config = args.env_config();
    let envs = (0..ppo_config.n_envs.max(1))
        .map(|_| ServingEnv::new(env_config.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = env_config.spec(envs[0].action_space());
    let (obs_dim, n_actions) = (envs[0].obs_dim(), envs[0].n_actions());
    let env_rate = env_steps_per_s(&env_config, 3000, args.seed)?;
    let mut ppo = Ppo::new(ppo_config.clone(), obs_dim, n_actions, args.seed)?;
    let mut rows: Vec<CurveRow> = Vec::new();
    let started = Instant::now();
    let mut last = Progress::default();
    let mut save_error = None;
    let training = |ppo: &Ppo, rows: &[CurveRow]| {
        let tail = &rows[rows.len().saturating_sub(5)..];
        let avg = |f: fn(&CurveRow) -> f64| {
            let v: Vec<f64> = tail.iter().map(f).filter(|x| x.is_finite()).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        serde_json::json!({
            "command": format!(
                "cargo xtask train --total-timesteps {} --seed {} --preset {:?} --features {:?} --reward {:?}{}{}{}{}",
                args.total_timesteps, args.seed, args.preset, args.features, args.reward,
                args.fixed_clock.map(|f| format!(" --fixed-clock {f}")).unwrap_or_default(),
                args.fixed_batch.map(|b| format!(" --fixed-batch {b}")).unwrap_or_default(),
                if args.no_shield { " --no-shield" } else { "" },
                args.extra_gpus.iter().map(|g| format!(" --extra-gpu {g}")).collect::<String>()
            ),
            "timesteps": rows.last().map_or(0, |r| r.timesteps),
            "ppo": ppo.config,
            "env": env_config,
            "last_updates": {
                "mean_episode_reward": avg(|r| r.reward),
                "slo_attainment": avg(|r| r.slo),
                "energy_per_request_j": avg(|r| r.energy),
            },
        })
    };
    let mut envs = ppo.train(envs, args.total_timesteps, args.seed, |p| {
        let row = CurveRow {
            timesteps: p.timesteps,
            episodes: p.episodes.len(),
            reward: if p.episodes.is_empty() {
                f64::NAN
            } else {
                p.episodes.iter().map(|e| e.reward).sum::<f64>() / p.episodes.len() as f64
            },
            slo: mean_metric(p, "slo_attainment"),
            energy: mean_metric(p, "energy_per_request_j"),
            overrides: mean_metric(p, "shield_overrides"),
            progress: p.clone(),
        };
        on_update(
            p.timesteps.min(args.total_timesteps),
            format!("reward {:.1}, SLO {:.1}%, {:.0} J/req", row.reward, 100.0 * row.slo, row.energy),
        );
        rows.push(row);
        last = p.clone();
    })?;
    drop(envs.drain(..));
    let wall = started.elapsed().as_secs_f64();
    let checkpoint = Checkpoint::new(spec, ppo.actor.clone(), training(&ppo, &rows));
    for (file, contents) in [("curve.csv", csv(&rows)), ("curve.svg", svg(&rows))] {
        let path = out.join(file);
        if let Err(e) = std::fs::write(&path, contents) {
            save_error.get_or_insert(Error::Io { path, source: e });
        }
    }
    checkpoint.save(&out.join("checkpoint.json"))?;
    if let Some(path) = &args.checkpoint {
        checkpoint.save(path)?;
    }
    if let Some(e) = save_error {
        return Err(e);
    }
    let steps = last.timesteps as f64;
    let samples = steps * ppo_config.n_epochs as f64;
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "trained {} steps in {wall:.1} s wall: {:.0} steps/s whole loop; environment alone {env_rate:.0} steps/s \
         (1 thread); rollouts {:.0} steps/s ({} env threads, {:.1} s); updates {:.0} samples/s ({:.1} s)",
        last.timesteps,
        steps / wall,
        steps / last.rollout_s.max(1e-9),
        ppo_config.n_envs,
        last.rollout_s,
        samples / last.update_s.max(1e-9),
        last.update_s,
    );
    if let Some(r) = rows.iter().rev().find(|r| r.slo.is_finite()) {
        let _ = writeln!(
            summary,
            "last episodes: reward {:.2}, SLO attainment {:.1}%, {:.1} J/request busy, {:.1} shield overrides/episode",
            r.reward,
            100.0 * r.slo,
            r.energy,
            r.overrides
        );
    }
    let _ = writeln!(summary, "wrote {}/curve.csv, curve.svg, checkpoint.json", out.display());
    Ok(Trained { checkpoint, summary })
}
