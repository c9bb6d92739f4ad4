//! Proximal Policy Optimisation (Schulman et al. 2017) on any [`Env`], with action masks.
//!
//! Separate actor and critic networks ([`Mlp`]); rollouts of `n_steps` per environment, run
//! in parallel (one thread per environment, each with its own seeded streams, so the result does
//! not depend on scheduling); generalised advantage estimation ([`gae`]); then `n_epochs`
//! passes of shuffled minibatches over the clipped surrogate objective with value and entropy
//! terms, advantages normalised per minibatch and the gradient clipped by its global norm (the
//! Stable-Baselines3 recipe, which the EnergyLLM paper used). Defaults are the paper's.
//!
//! Constrained mode ([`LagrangeConfig`]): the environment's per-step `cost` is subtracted from
//! the reward with a multiplier λ, and after each rollout λ ← max(0, λ + lr · mean cost), so λ
//! grows while the constraint is violated on average and shrinks back when there is slack.
//!
//! Everything random (initial weights, action sampling, episode seeds, minibatch order) comes
//! from ChaCha8 streams of one seed: the same seed gives the same networks, bit for bit.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::nn::{Activation, Adam, BatchCache, Mlp, Scratch};
use crate::Error;

/// PPO hyperparameters. Defaults: the EnergyLLM paper's (Stable-Baselines3's PPO defaults with
/// 256-256 ReLU networks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Adam step size. Default 3e-4.
    pub learning_rate: f32,
    /// Discount. Default 0.99.
    pub gamma: f32,
    /// GAE λ. Default 0.95.
    pub gae_lambda: f32,
    /// Clip range ε of the probability ratio. Default 0.2.
    pub clip_range: f32,
    /// Entropy bonus weight. Default 0.01.
    pub ent_coef: f32,
    /// Value loss weight. Default 0.5.
    pub vf_coef: f32,
    /// Global gradient-norm limit. Default 0.5.
    pub max_grad_norm: f32,
    /// Steps per environment per rollout. Default 1024.
    pub n_steps: usize,
    /// Environments stepped in parallel. Default 1.
    pub n_envs: usize,
    /// Passes over each rollout. Default 10.
    pub n_epochs: usize,
    /// Minibatch size. Default 64.
    pub batch_size: usize,
    /// Hidden layer widths of both networks. Default [256, 256].
    pub hidden: Vec<usize>,
    /// Hidden activation. Default ReLU.
    pub activation: Activation,
    /// Normalise advantages per minibatch. Default true.
    pub normalize_advantage: bool,
    /// Constrained (Lagrangian) mode; `None` (default) trains on the reward alone.
    pub lagrange: Option<LagrangeConfig>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            learning_rate: 3e-4,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_range: 0.2,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            n_steps: 1024,
            n_envs: 1,
            n_epochs: 10,
            batch_size: 64,
            hidden: vec![256, 256],
            activation: Activation::Relu,
            normalize_advantage: true,
            lagrange: None,
        }
    }
}

impl PpoConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate must be positive");
        }
        if !unit(self.gamma) || !unit(self.gae_lambda) {
            return bad("gamma and gae_lambda must be in [0, 1]");
        }
        let positive = |x: f32| x > 0.0 && x.is_finite();
        if !positive(self.clip_range)
            || !positive(self.max_grad_norm)
            || self.ent_coef < 0.0
            || self.vf_coef < 0.0
        {
            return bad("clip_range and max_grad_norm must be positive, ent_coef and vf_coef ≥ 0");
        }
        if self.n_steps == 0 || self.n_envs == 0 || self.n_epochs == 0 || self.batch_size == 0 {
            return bad("n_steps, n_envs, n_epochs and batch_size must be ≥ 1");
        }
        if self.hidden.contains(&0) {
            return bad("hidden layer widths must be ≥ 1");
        }
        if let Some(l) = &self.lagrange {
            if !(l.lr >= 0.0 && l.initial >= 0.0) {
                return bad("lagrange.lr and lagrange.initial must be ≥ 0");
            }
        }
        Ok(())
    }
}

/// The multiplier's settings in constrained mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagrangeConfig {
    /// Step size of the multiplier per rollout (per unit of mean step cost).
    pub lr: f32,
    /// Starting multiplier.
    pub initial: f32,
}

/// Generalised advantage estimates and returns of one environment's rollout.
///
/// `dones[t]` says that the episode ended at step `t` (so step `t + 1`, if any, starts a new
/// one and nothing is bootstrapped across); `last_value` is the critic's value of the state after
/// the last step (ignored if that step ended an episode). Returns (advantages, returns =
/// advantages + values).
pub fn gae(
    rewards: &[f32],
    values: &[f32],
    dones: &[bool],
    last_value: f32,
    gamma: f32,
    lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = rewards.len();
    let mut adv = vec![0.0; n];
    let mut next_adv = 0.0;
    for t in (0..n).rev() {
        let (next_value, not_done) = if dones[t] {
            (0.0, 0.0)
        } else if t + 1 == n {
            (last_value, 1.0)
        } else {
            (values[t + 1], 1.0)
        };
        let delta = rewards[t] + gamma * next_value * not_done - values[t];
        next_adv = delta + gamma * lambda * not_done * next_adv;
        adv[t] = next_adv;
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// Log-probabilities of the allowed actions from logits, written to `out` (masked ones get −∞).
pub fn masked_log_softmax(logits: &[f32], mask: &[bool], out: &mut [f32]) {
    let max = logits.iter().zip(mask).filter(|(_, &m)| m).map(|(l, _)| *l).fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().zip(mask).filter(|(_, &m)| m).map(|(l, _)| (l - max).exp()).sum();
    let lse = max + sum.ln();
    for ((o, l), &m) in out.iter_mut().zip(logits).zip(mask) {
        *o = if m { l - lse } else { f32::NEG_INFINITY };
    }
}

/// The allowed action with the largest logit (lowest index on ties).
pub fn greedy(logits: &[f32], mask: &[bool]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, (&l, &m)) in logits.iter().zip(mask).enumerate() {
        if m && best.is_none_or(|b| l > b.1) {
            best = Some((i, l));
        }
    }
    best.map_or(0, |b| b.0)
}

/// One step of experience.
#[derive(Clone, Debug, Default)]
struct Buffer {
    obs: Vec<f32>,
    masks: Vec<bool>,
    actions: Vec<usize>,
    logp: Vec<f32>,
    values: Vec<f32>,
    rewards: Vec<f32>,
    costs: Vec<f32>,
    dones: Vec<bool>,
}

/// A finished episode's totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpisodeStats {
    /// Sum of rewards.
    pub reward: f64,
    /// Sum of costs.
    pub cost: f64,
    /// Steps.
    pub len: u64,
    /// The environment's own measurements ([`Env::episode_metrics`]).
    pub metrics: Vec<(&'static str, f64)>,
}

struct Worker<E: Env> {
    env: E,
    obs: Vec<f32>,
    episode_rng: ChaCha8Rng,
    action_rng: ChaCha8Rng,
    current: EpisodeStats,
    finished: Vec<EpisodeStats>,
    buf: Buffer,
    last_value: f32,
}

impl<E: Env> Worker<E> {
    fn collect(&mut self, actor: &Mlp, critic: &Mlp, n_steps: usize) -> Result<(), Error> {
        let (obs_dim, n_actions) = (self.env.obs_dim(), self.env.n_actions());
        let mut scratch = Scratch::default();
        let mut mask = vec![true; n_actions];
        let mut logp = vec![0.0; n_actions];
        let b = &mut self.buf;
        *b = Buffer::default();
        for _ in 0..n_steps {
            self.env.action_mask(&mut mask);
            let logits = actor.forward(&self.obs, &mut scratch);
            masked_log_softmax(logits, &mask, &mut logp);
            let u: f32 = self.action_rng.gen();
            let mut acc = 0.0;
            let mut action = greedy(&logp, &mask);
            for (i, lp) in logp.iter().enumerate() {
                if mask[i] {
                    acc += lp.exp();
                    if u < acc {
                        action = i;
                        break;
                    }
                }
            }
            let value = critic.forward(&self.obs, &mut scratch)[0];
            b.obs.extend_from_slice(&self.obs[..obs_dim]);
            b.masks.extend_from_slice(&mask);
            b.actions.push(action);
            b.logp.push(logp[action]);
            b.values.push(value);
            let step = self.env.step(action).map_err(|e| Error::Env(Box::new(e)))?;
            b.rewards.push(step.reward);
            b.costs.push(step.cost);
            b.dones.push(step.done);
            self.current.reward += f64::from(step.reward);
            self.current.cost += f64::from(step.cost);
            self.current.len += 1;
            if step.done {
                self.current.metrics = self.env.episode_metrics();
                self.finished.push(std::mem::take(&mut self.current));
                self.obs = self.env.reset(self.episode_rng.gen()).map_err(|e| Error::Env(Box::new(e)))?;
            } else {
                self.obs = step.obs;
            }
        }
        self.last_value = critic.forward(&self.obs, &mut scratch)[0];
        Ok(())
    }
}

/// What one update reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateStats {
    /// Mean clipped-surrogate loss over the minibatches.
    pub policy_loss: f32,
    /// Mean value loss (squared error).
    pub value_loss: f32,
    /// Mean policy entropy, in nats.
    pub entropy: f32,
    /// Mean approximate KL divergence from the rollout policy.
    pub approx_kl: f32,
    /// Fraction of samples whose ratio was clipped.
    pub clip_fraction: f32,
}

/// Progress after each rollout + update, for progress bars and training curves.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Environment steps so far.
    pub timesteps: u64,
    /// Updates so far.
    pub updates: u64,
    /// Episodes that ended during the rollout.
    pub episodes: Vec<EpisodeStats>,
    /// The update's losses.
    pub update: UpdateStats,
    /// The Lagrange multiplier (0 when not constrained).
    pub lambda: f32,
    /// Wall seconds spent in rollouts so far (environment + action selection).
    pub rollout_s: f64,
    /// Wall seconds spent in updates so far.
    pub update_s: f64,
}

/// A flattened rollout ready for the update.
#[derive(Clone, Debug, Default)]
pub struct Rollout {
    /// Observations, `n × obs_dim`.
    pub obs: Vec<f32>,
    /// Action masks, `n × n_actions`.
    pub masks: Vec<bool>,
    /// Actions taken.
    pub actions: Vec<usize>,
    /// Log-probabilities of the actions under the rollout policy.
    pub logp: Vec<f32>,
    /// GAE advantages.
    pub advantages: Vec<f32>,
    /// Value targets.
    pub returns: Vec<f32>,
}

impl Rollout {
    /// Samples.
    pub fn len(&self) -> usize {
        self.actions.len()
    }
    /// Whether it holds no samples.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// The PPO learner: actor, critic, optimisers and its random stream.
pub struct Ppo {
    /// Hyperparameters.
    pub config: PpoConfig,
    /// Policy network: observation → action logits.
    pub actor: Mlp,
    /// Value network: observation → state value.
    pub critic: Mlp,
    actor_opt: Adam,
    critic_opt: Adam,
    rng: ChaCha8Rng,
    lambda: f32,
    obs_dim: usize,
    n_actions: usize,
    cache_a: BatchCache,
    cache_c: BatchCache,
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Losses of one minibatch (see [`Ppo::minibatch`]).
#[derive(Clone, Copy, Debug, Default)]
struct Parts {
    policy: f32,
    value: f32,
    entropy: f32,
    kl: f32,
    clipped: f32,
}

impl Ppo {
    /// A learner for observations of `obs_dim` and `n_actions` actions, networks drawn from `seed`.
    pub fn new(config: PpoConfig, obs_dim: usize, n_actions: usize, seed: u64) -> Result<Self, Error> {
        config.validate()?;
        if obs_dim == 0 || n_actions == 0 {
            return Err(Error::Config("the environment needs ≥ 1 observation feature and ≥ 1 action".into()));
        }
        let mut rng = stream(seed, 0);
        let sizes = |out: usize| [&[obs_dim][..], &config.hidden, &[out]].concat();
        let actor = Mlp::new(&sizes(n_actions), config.activation, 0.01, &mut rng);
        let critic = Mlp::new(&sizes(1), config.activation, 1.0, &mut rng);
        Ok(Ppo {
            actor_opt: Adam::new(actor.params().len(), config.learning_rate),
            critic_opt: Adam::new(critic.params().len(), config.learning_rate),
            lambda: config.lagrange.as_ref().map_or(0.0, |l| l.initial),
            actor,
            critic,
            rng,
            obs_dim,
            n_actions,
            cache_a: BatchCache::default(),
            cache_c: BatchCache::default(),
            config,
        })
    }

    /// The Lagrange multiplier.
    pub fn lambda(&self) -> f32 {
        self.lambda
    }

    /// Trains on `envs` (one per parallel worker; `config.n_envs` is ignored in favour of their
    /// number) for at least `total_timesteps` steps, in whole rollouts. `on_update` sees the
    /// progress after each update. Environment `i` draws its episode seeds from `seed`'s stream
    /// `100 + i` and its actions from stream `200 + i`.
    pub fn train<E: Env>(
        &mut self,
        envs: Vec<E>,
        total_timesteps: u64,
        seed: u64,
        mut on_update: impl FnMut(&Progress),
    ) -> Result<Vec<E>, Error> {
        if envs.is_empty() {
            return Err(Error::Config("give at least one environment".into()));
        }
        let mut workers = Vec::with_capacity(envs.len());
        for (i, mut env) in envs.into_iter().enumerate() {
            if env.obs_dim() != self.obs_dim || env.n_actions() != self.n_actions {
                return Err(Error::Config(format!(
                    "environment {i} has {} features and {} actions; the learner was built for {} and {}",
                    env.obs_dim(),
                    env.n_actions(),
                    self.obs_dim,
                    self.n_actions
                )));
            }
            let mut episode_rng = stream(seed, 100 + i as u64);
            let obs = env.reset(episode_rng.gen()).map_err(|e| Error::Env(Box::new(e)))?;
            workers.push(Worker {
                env,
                obs,
                episode_rng,
                action_rng: stream(seed, 200 + i as u64),
                current: EpisodeStats::default(),
                finished: Vec::new(),
                buf: Buffer::default(),
                last_value: 0.0,
            });
        }
        let mut progress = Progress::default();
        let n_steps = self.config.n_steps;
        while progress.timesteps < total_timesteps {
            let t0 = Instant::now();
            let (actor, critic) = (&self.actor, &self.critic);
            if workers.len() == 1 {
                workers[0].collect(actor, critic, n_steps)?;
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> = workers
                        .iter_mut()
                        .map(|w| s.spawn(move || w.collect(actor, critic, n_steps)))
                        .collect();
                    handles.into_iter().try_for_each(|h| h.join().unwrap_or(Err(Error::WorkerPanicked)))
                })?;
            }
            progress.rollout_s += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let rollout = self.assemble(&mut workers);
            progress.update = self.update(&rollout);
            progress.update_s += t1.elapsed().as_secs_f64();
            progress.timesteps += (n_steps * workers.len()) as u64;
            progress.updates += 1;
            progress.episodes = workers.iter_mut().flat_map(|w| w.finished.drain(..)).collect();
            progress.lambda = self.lambda;
            on_update(&progress);
        }
        Ok(workers.into_iter().map(|w| w.env).collect())
    }

    /// Turns the workers' buffers into one rollout: Lagrangian shaping, GAE, flattening; then
    /// updates the multiplier.
    fn assemble<E: Env>(&mut self, workers: &mut [Worker<E>]) -> Rollout {
        let mut r = Rollout::default();
        let (mut cost_sum, mut cost_n) = (0.0f64, 0usize);
        let constrained = self.config.lagrange.is_some();
        for w in workers.iter() {
            let b = &w.buf;
            let rewards: Vec<f32> = if constrained {
                b.rewards.iter().zip(&b.costs).map(|(r, c)| r - self.lambda * c).collect()
            } else {
                b.rewards.clone()
            };
            cost_sum += b.costs.iter().map(|&c| f64::from(c)).sum::<f64>();
            cost_n += b.costs.len();
            let (adv, ret) =
                gae(&rewards, &b.values, &b.dones, w.last_value, self.config.gamma, self.config.gae_lambda);
            r.obs.extend_from_slice(&b.obs);
            r.masks.extend_from_slice(&b.masks);
            r.actions.extend_from_slice(&b.actions);
            r.logp.extend_from_slice(&b.logp);
            r.advantages.extend(adv);
            r.returns.extend(ret);
        }
        if let Some(l) = &self.config.lagrange {
            let mean_cost = (cost_sum / cost_n.max(1) as f64) as f32;
            self.lambda = (self.lambda + l.lr * mean_cost).max(0.0);
        }
        r
    }

    /// `n_epochs` passes of shuffled minibatches over `rollout`.
    pub fn update(&mut self, rollout: &Rollout) -> UpdateStats {
        let n = rollout.len();
        let mut idx: Vec<usize> = (0..n).collect();
        let mut sum = Parts::default();
        let mut batches = 0usize;
        for _ in 0..self.config.n_epochs {
            idx.shuffle(&mut self.rng);
            for chunk in idx.chunks(self.config.batch_size) {
                let p = self.minibatch(rollout, chunk, true);
                sum.policy += p.policy;
                sum.value += p.value;
                sum.entropy += p.entropy;
                sum.kl += p.kl;
                sum.clipped += p.clipped;
                batches += 1;
            }
        }
        let k = batches.max(1) as f32;
        UpdateStats {
            policy_loss: sum.policy / k,
            value_loss: sum.value / k,
            entropy: sum.entropy / k,
            approx_kl: sum.kl / k,
            clip_fraction: sum.clipped / k,
        }
    }

    /// The total loss (policy + vf_coef · value − ent_coef · entropy) on the samples `idx`,
    /// without changing anything.
    pub fn loss(&mut self, rollout: &Rollout, idx: &[usize]) -> f32 {
        let p = self.minibatch(rollout, idx, false);
        p.policy + self.config.vf_coef * p.value - self.config.ent_coef * p.entropy
    }

    /// Losses on the samples `idx`; with `learn`, one clipped gradient step on them.
    fn minibatch(&mut self, r: &Rollout, idx: &[usize], learn: bool) -> Parts {
        let (d, k, m) = (self.obs_dim, self.n_actions, idx.len());
        let mut x = Vec::with_capacity(m * d);
        for &i in idx {
            x.extend_from_slice(&r.obs[i * d..(i + 1) * d]);
        }
        let mut adv: Vec<f32> = idx.iter().map(|&i| r.advantages[i]).collect();
        if self.config.normalize_advantage && m > 1 {
            let mean = adv.iter().sum::<f32>() / m as f32;
            let var = adv.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / (m - 1) as f32;
            let sd = var.sqrt() + 1e-8;
            adv.iter_mut().for_each(|a| *a = (*a - mean) / sd);
        }
        let logits = self.actor.forward_batch(&x, m, &mut self.cache_a).to_vec();
        let values = self.critic.forward_batch(&x, m, &mut self.cache_c).to_vec();
        let (eps, ce, cv) = (self.config.clip_range, self.config.ent_coef, self.config.vf_coef);
        let inv_m = 1.0 / m as f32;
        let mut dlogits = vec![0.0f32; m * k];
        let mut dvalues = vec![0.0f32; m];
        let mut parts = Parts::default();
        let mut logp = vec![0.0f32; k];
        for (s, &i) in idx.iter().enumerate() {
            let mask = &r.masks[i * k..(i + 1) * k];
            masked_log_softmax(&logits[s * k..(s + 1) * k], mask, &mut logp);
            let a = r.actions[i];
            let log_ratio = logp[a] - r.logp[i];
            let ratio = log_ratio.exp();
            let (unclipped, clipped) = (ratio * adv[s], ratio.clamp(1.0 - eps, 1.0 + eps) * adv[s]);
            parts.policy -= unclipped.min(clipped) * inv_m;
            parts.kl += ((ratio - 1.0) - log_ratio) * inv_m;
            if (ratio - 1.0).abs() > eps {
                parts.clipped += inv_m;
            }
            let mut entropy = 0.0;
            for j in 0..k {
                if mask[j] {
                    entropy -= logp[j].exp() * logp[j];
                }
            }
            parts.entropy += entropy * inv_m;
            let verr = values[s] - r.returns[i];
            parts.value += verr * verr * inv_m;
            // d(loss)/d(log π(a)): the surrogate's gradient flows only through the unclipped branch.
            let g_logp = if unclipped <= clipped { -adv[s] * ratio * inv_m } else { 0.0 };
            let dl = &mut dlogits[s * k..(s + 1) * k];
            for j in 0..k {
                if mask[j] {
                    let p = logp[j].exp();
                    let onehot = if j == a { 1.0 } else { 0.0 };
                    // log-prob term, then −ce·H (dH/dz_j = −p_j (log p_j + H)).
                    dl[j] = g_logp * (onehot - p) + ce * inv_m * p * (logp[j] + entropy);
                }
            }
            dvalues[s] = 2.0 * cv * verr * inv_m;
        }
        if learn {
            let mut ga = vec![0.0f32; self.actor.params().len()];
            let mut gc = vec![0.0f32; self.critic.params().len()];
            self.actor.backward(&mut self.cache_a, m, &dlogits, &mut ga);
            self.critic.backward(&mut self.cache_c, m, &dvalues, &mut gc);
            let norm = ga.iter().chain(&gc).map(|g| f64::from(*g) * f64::from(*g)).sum::<f64>().sqrt() as f32;
            if norm > self.config.max_grad_norm {
                let scale = self.config.max_grad_norm / (norm + 1e-6);
                ga.iter_mut().chain(gc.iter_mut()).for_each(|g| *g *= scale);
            }
            self.actor_opt.step(self.actor.params_mut(), &ga);
            self.critic_opt.step(self.critic.params_mut(), &gc);
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_matches_a_hand_worked_example() {
        // γ = 0.5, λ = 0.5; episode ends after step 1, step 2 bootstraps from last_value = 2.
        // δ0 = 1 + 0.5·1 − 0 = 1.5; δ1 = 0 − 1 = −1 (done); δ2 = 2 + 0.5·2 − 1 = 2.
        // A1 = −1; A0 = 1.5 + 0.25·(−1) = 1.25; A2 = 2.
        let (adv, ret) = gae(&[1.0, 0.0, 2.0], &[0.0, 1.0, 1.0], &[false, true, false], 2.0, 0.5, 0.5);
        assert_eq!(adv, vec![1.25, -1.0, 2.0]);
        assert_eq!(ret, vec![1.25, 0.0, 3.0]);
    }

    #[test]
    fn masked_softmax_ignores_masked_actions() {
        let mut out = [0.0; 3];
        masked_log_softmax(&[5.0, 0.0, 0.0], &[false, true, true], &mut out);
        assert_eq!(out[0], f32::NEG_INFINITY);
        assert!((out[1] - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(greedy(&[5.0, 1.0, 2.0], &[false, true, true]), 2);
    }
}
