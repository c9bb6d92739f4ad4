//! The serving environment PPO trains on: a calibrated simulator run, one step per decision epoch.
//!
//! [`ServingEnv`] implements energyllm-policy's [`Env`]. Each episode draws a workload (one of
//! `datasets`), a Poisson arrival rate from `rate_rps` and an end-to-end SLO from `slo_s`, samples
//! `episode_s` seconds of requests and runs the external-decision [`Simulation`] over them: every
//! time the controller wants a decision (each second and at each completion, exactly as in
//! evaluation) the environment hands out the observation's features, takes the agent's action
//! (through the safety shield when it is on) and runs to the next decision. The episode ends when
//! every request has been served.
//!
//! Rewards ([`RewardConfig`]), per request completed during the step:
//! - `paper`: +0.9 within the SLO, −1.8 for a miss, −0.005 × its energy in joules, +0.4 when
//!   its energy is under 180 J (the EnergyLLM paper's shape);
//! - `no-energy`: the SLO terms only (the "w/o energy reward" ablation);
//! - `constrained`: −0.005 × energy as the reward, and as the step's cost
//!   misses − (1 − `target_attainment`) × completions, whose mean is ≤ 0 exactly when the
//!   attainment meets the target; PPO's Lagrange multiplier prices it.
//!
//! Energy is each request's attributed GPU energy (the iteration energy split by tokens), which
//! sums to the busy energy the evaluation reports.

use serde::{Deserialize, Serialize};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use energyllm_core::{Action, ActionSpace, Mhz, Observation, Slo};
use energyllm_policy::env::{Env, Step};
use energyllm_policy::{FeatureSet, PolicySpec, Shield};

use crate::simulation::{SimSetup, Simulation};
use crate::Error;
use energyllm_workload::{sample_requests, ArrivalPattern, LengthDataset};

/// How a step is rewarded; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewardMode {
    /// The EnergyLLM paper's shape.
    #[default]
    Paper,
    /// SLO terms only.
    NoEnergy,
    /// Energy as reward, SLO attainment as a Lagrangian constraint.
    Constrained,
}

/// Reward constants. Defaults: the EnergyLLM paper's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Which shape. Default `paper`.
    pub mode: RewardMode,
    /// Per request within the SLO. Default 0.9.
    pub slo_hit: f32,
    /// Per request that misses it (or is rejected). Default −1.8.
    pub slo_miss: f32,
    /// Per joule of a request's energy (subtracted). Default 0.005.
    pub energy_per_j: f32,
    /// Per request whose energy is under `bonus_under_j`. Default 0.4.
    pub bonus: f32,
    /// Energy threshold of the bonus, in joules. Default 180.
    pub bonus_under_j: f64,
    /// SLO attainment the constrained mode targets. Default 0.95.
    pub target_attainment: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            mode: RewardMode::Paper,
            slo_hit: 0.9,
            slo_miss: -1.8,
            energy_per_j: 0.005,
            bonus: 0.4,
            bonus_under_j: 180.0,
            target_attainment: 0.95,
        }
    }
}

/// What episodes are drawn from and how the agent sees them. Defaults: the paper's ranges on the
/// evaluation's deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingEnvConfig {
    /// Built-in GPU profile. Default `a100-40gb`. The policy spec (and so the checkpoint) is
    /// this GPU's action space.
    pub gpu: String,
    /// More GPU profiles to draw episodes on (domain randomisation): each episode runs on `gpu`
    /// or one of these, uniformly. Their action spaces must have `gpu`'s shape; the agent picks
    /// a clock *level*, which is how a checkpoint is deployed on another GPU. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_gpus: Vec<String>,
    /// Built-in model profile. Default `llama-3.1-8b`.
    pub model: String,
    /// Bundled length datasets, one drawn per episode. Default `["sharegpt-like"]`.
    pub datasets: Vec<String>,
    /// Range of the Poisson arrival rate, in requests/s. Default 0.6–1.2.
    pub rate_rps: [f64; 2],
    /// Range of the end-to-end SLO, in seconds. Default 10–13.
    pub slo_s: [f64; 2],
    /// Arrival window of an episode, in seconds. Default 60 (as in evaluation).
    pub episode_s: f64,
    /// Observation features. Default token-aware.
    pub features: FeatureSet,
    /// Reward.
    pub reward: RewardConfig,
    /// Clocks the agent may pick (MHz); default all (an ablation fixes one).
    pub allowed_freqs_mhz: Option<Vec<u32>>,
    /// Batch caps the agent may pick; default all.
    pub allowed_batches: Option<Vec<u32>>,
    /// Safety shield in the loop. Default true.
    pub shield: bool,
    /// The shield's margin (fraction of the SLO). Default 1.0.
    pub shield_margin: f64,
}

impl Default for ServingEnvConfig {
    fn default() -> Self {
        ServingEnvConfig {
            gpu: "a100-40gb".into(),
            extra_gpus: Vec::new(),
            model: "llama-3.1-8b".into(),
            datasets: vec!["sharegpt-like".into()],
            rate_rps: [0.6, 1.2],
            slo_s: [10.0, 13.0],
            episode_s: 60.0,
            features: FeatureSet::TokenAware,
            reward: RewardConfig::default(),
            allowed_freqs_mhz: None,
            allowed_batches: None,
            shield: true,
            shield_margin: 1.0,
        }
    }
}

impl ServingEnvConfig {
    /// The policy spec a network trained here answers to (stored in its checkpoint).
    pub fn spec(&self, space: &ActionSpace) -> PolicySpec {
        let mut spec = PolicySpec::new(self.features, space);
        if let Some(f) = &self.allowed_freqs_mhz {
            spec.allowed_freqs_mhz = f.iter().map(|&f| space.nearest_freq(Mhz(f)).0).collect();
        }
        if let Some(b) = &self.allowed_batches {
            spec.allowed_batches = b.clone();
        }
        spec.shield = self.shield;
        spec.shield_margin = self.shield_margin;
        spec
    }
}

/// One GPU episodes may run on: its deployment, action space and shield.
struct EpisodeGpu {
    setup: SimSetup,
    space: ActionSpace,
    shield: Option<Shield>,
}

/// See the [module docs](self).
pub struct ServingEnv {
    config: ServingEnvConfig,
    deployments: Vec<EpisodeGpu>,
    /// The deployment of the current episode.
    current: usize,
    datasets: Vec<LengthDataset>,
    mask: Vec<bool>,
    sim: Option<Simulation>,
    obs: Option<Observation>,
    slo: Slo,
    seen_records: usize,
    met: u64,
    completed: u64,
    features: Vec<f32>,
}

impl ServingEnv {
    /// An environment; fails on an unknown profile or dataset, or bad ranges.
    pub fn new(config: ServingEnvConfig) -> Result<Self, Error> {
        let ordered = |r: [f64; 2]| r[0].is_finite() && r[0] > 0.0 && r[0] <= r[1] && r[1].is_finite();
        if !ordered(config.rate_rps)
            || !ordered(config.slo_s)
            || !ordered([config.episode_s, config.episode_s])
        {
            return Err(Error::Setting(
                "env: rate_rps and slo_s must be positive [low, high] ranges and episode_s positive".into(),
            ));
        }
        if config.datasets.is_empty() {
            return Err(Error::Setting("env: name at least one dataset".into()));
        }
        let deployments = std::iter::once(&config.gpu)
            .chain(&config.extra_gpus)
            .map(|gpu| {
                let setup = SimSetup::paper(gpu, &config.model)?;
                let space = setup.controller.action_space.clone();
                let shield = config
                    .shield
                    .then(|| Shield::new(setup.perf_model(), space.clone(), config.shield_margin));
                Ok(EpisodeGpu { setup, space, shield })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let primary = &deployments[0].space;
        for (gpu, d) in config.extra_gpus.iter().zip(&deployments[1..]) {
            if d.space.freqs().len() != primary.freqs().len() || d.space.batches() != primary.batches() {
                return Err(Error::Setting(format!(
                    "env: extra GPU `{gpu}` has {} clocks × batches {:?}, but `{}` has {} × {:?}; \
                     one policy needs one action-space shape",
                    d.space.freqs().len(),
                    d.space.batches(),
                    config.gpu,
                    primary.freqs().len(),
                    primary.batches()
                )));
            }
        }
        let datasets =
            config.datasets.iter().map(|d| LengthDataset::builtin(d)).collect::<Result<Vec<_>, _>>()?;
        let mask = config.spec(primary).mask();
        if !mask.contains(&true) {
            return Err(Error::Setting("env: the allowed clocks × batches leave no action".into()));
        }
        Ok(ServingEnv {
            features: vec![0.0; config.features.dim()],
            config,
            deployments,
            current: 0,
            datasets,
            mask,
            sim: None,
            obs: None,
            slo: Slo::default(),
            seen_records: 0,
            met: 0,
            completed: 0,
        })
    }

    /// The action space (of the primary GPU, which the policy spec records).
    pub fn action_space(&self) -> &ActionSpace {
        &self.deployments[0].space
    }

    /// The configuration.
    pub fn config(&self) -> &ServingEnvConfig {
        &self.config
    }

    fn encode(&mut self, obs: &Observation) -> Vec<f32> {
        let space = &self.deployments[self.current].space;
        self.config.features.encode(obs, space, &mut self.features);
        self.features.clone()
    }
}

impl Env for ServingEnv {
    type Error = Error;

    fn obs_dim(&self) -> usize {
        self.config.features.dim()
    }

    fn n_actions(&self) -> usize {
        self.action_space().len()
    }

    fn reset(&mut self, seed: u64) -> Result<Vec<f32>, Error> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Drawn only when there is a choice, so that single-GPU training keeps its episodes.
        self.current = if self.deployments.len() > 1 { rng.gen_range(0..self.deployments.len()) } else { 0 };
        let dataset = &self.datasets[rng.gen_range(0..self.datasets.len())];
        let draw =
            |rng: &mut ChaCha8Rng, r: [f64; 2]| if r[1] > r[0] { rng.gen_range(r[0]..=r[1]) } else { r[0] };
        let rate = draw(&mut rng, self.config.rate_rps);
        self.slo = Slo::e2e(draw(&mut rng, self.config.slo_s));
        let requests =
            sample_requests(dataset, &ArrivalPattern::Poisson, rate, self.config.episode_s, rng.gen())?;
        let deployment = &mut self.deployments[self.current];
        let mut setup = deployment.setup.clone();
        setup.controller.slo = self.slo;
        let mut sim = Simulation::new(&setup, None, requests, self.config.episode_s)?;
        if let Some(s) = &mut deployment.shield {
            s.reset();
        }
        (self.seen_records, self.met, self.completed) = (0, 0, 0);
        // A run with no requests at all has no decision; an empty observation stands in, and the
        // first step ends the episode.
        let obs = sim.run()?;
        self.sim = Some(sim);
        let features = match &obs {
            Some(o) => self.encode(o),
            None => vec![0.0; self.obs_dim()],
        };
        self.obs = obs;
        Ok(features)
    }

    fn step(&mut self, action: usize) -> Result<Step, Error> {
        let (Some(sim), Some(obs)) = (self.sim.as_mut(), self.obs.take()) else {
            return Ok(Step { obs: vec![0.0; self.obs_dim()], reward: 0.0, cost: 0.0, done: true });
        };
        let deployment = &mut self.deployments[self.current];
        let space = &deployment.space;
        let chosen = space.action(action).filter(|_| self.mask.get(action) == Some(&true));
        let chosen = chosen.unwrap_or(Action { freq: space.max_freq(), batch: 8 });
        let applied = match &mut deployment.shield {
            Some(s) => s.check(&obs, chosen),
            None => chosen,
        };
        sim.apply(applied)?;
        let next = sim.run()?;
        let r = &self.config.reward;
        let (mut reward, mut cost) = (0.0f32, 0.0f32);
        for rec in &sim.records()[self.seen_records..] {
            let met = rec.meets(&self.slo);
            self.completed += 1;
            self.met += u64::from(met);
            let energy = rec.energy_j as f32;
            let slo_term = if met { r.slo_hit } else { r.slo_miss };
            match r.mode {
                RewardMode::Paper => {
                    reward += slo_term - r.energy_per_j * energy;
                    if rec.energy_j < r.bonus_under_j {
                        reward += r.bonus;
                    }
                }
                RewardMode::NoEnergy => reward += slo_term,
                RewardMode::Constrained => {
                    reward -= r.energy_per_j * energy;
                    cost += f32::from(u8::from(!met)) - (1.0 - r.target_attainment as f32);
                }
            }
        }
        self.seen_records = sim.records().len();
        let done = next.is_none();
        let features = match &next {
            Some(o) => self.encode(o),
            None => vec![0.0; self.obs_dim()],
        };
        self.obs = next;
        Ok(Step { obs: features, reward, cost, done })
    }

    fn action_mask(&self, mask: &mut [bool]) {
        mask.copy_from_slice(&self.mask);
    }

    fn episode_metrics(&self) -> Vec<(&'static str, f64)> {
        let busy = self.sim.as_ref().map_or(0.0, |s| s.gpu().busy_energy_j());
        let n = self.completed.max(1) as f64;
        vec![
            ("slo_attainment", self.met as f64 / n),
            ("energy_per_request_j", busy / n),
            (
                "shield_overrides",
                self.deployments[self.current].shield.as_ref().map_or(0.0, |s| s.overrides() as f64),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_runs_to_the_end_and_is_reproducible() {
        let config = ServingEnvConfig { episode_s: 10.0, ..ServingEnvConfig::default() };
        let run = |seed| {
            let mut env = ServingEnv::new(config.clone()).unwrap();
            let mut obs = vec![env.reset(seed).unwrap()];
            let mut total = 0.0;
            for t in 0..10_000 {
                // Top clock, batch 16: flat index 14 × 7 + 4.
                let s = env.step(if t % 2 == 0 { 14 * 7 + 4 } else { 0 }).unwrap();
                total += s.reward;
                obs.push(s.obs);
                if s.done {
                    return (obs, total, env.episode_metrics());
                }
            }
            panic!("episode did not end");
        };
        let (a, ra, m) = run(5);
        assert_eq!((a.clone(), ra), {
            let (b, rb, _) = run(5);
            (b, rb)
        });
        assert!(a.len() > 5 && a[0].len() == FeatureSet::TokenAware.dim());
        assert!(m[0].1 > 0.0 && m[0].1 <= 1.0, "{m:?}");
    }

    #[test]
    fn extra_gpus_draw_episodes_on_each_with_its_own_clocks() {
        let config = ServingEnvConfig {
            episode_s: 10.0,
            extra_gpus: vec!["h100".into()],
            ..ServingEnvConfig::default()
        };
        let mut env = ServingEnv::new(config).unwrap();
        assert_eq!(env.action_space().max_freq(), Mhz(1410), "the spec stays the A100's");
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..8 {
            env.reset(seed).unwrap();
            env.step(14 * 7 + 4).unwrap();
            // Each episode's GPU keeps its own clock range (the H100's tops out above the A100's).
            let top = env.deployments[env.current].space.max_freq();
            assert_eq!(top > Mhz(1410), env.current == 1, "{top:?}");
            seen.insert(env.current);
        }
        assert_eq!(seen.len(), 2, "both GPUs drawn over 8 episodes");
        let bad = ServingEnvConfig { extra_gpus: vec!["tpu".into()], ..ServingEnvConfig::default() };
        assert!(ServingEnv::new(bad).err().unwrap().to_string().contains("tpu"));
    }

    #[test]
    fn bad_ranges_are_refused() {
        let c = ServingEnvConfig { rate_rps: [2.0, 1.0], ..ServingEnvConfig::default() };
        assert!(ServingEnv::new(c).is_err());
    }
}
