//! A gym-like environment: what PPO trains on.
//!
//! An [`Env`] is a sequential decision problem with a fixed-size observation vector and a
//! discrete action set, some of whose actions may be masked. It knows nothing of GPUs: the
//! serving environment (energyllm-sim's `ServingEnv`, a calibrated simulator run) implements
//! it, and so do the small test environments with known optimal actions.
//!
//! Contract: [`reset`](Env::reset) starts an episode and returns its first observation;
//! [`step`](Env::step) takes one action that [`action_mask`](Env::action_mask) allows and returns
//! the reward and the next observation, or `done`, after which the caller resets. Everything
//! random is drawn from the seed given to `reset`, so an episode is reproducible from it.

/// What one step produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// The next observation (meaningless when `done`).
    pub obs: Vec<f32>,
    /// The reward of the step.
    pub reward: f32,
    /// Constraint cost of the step, for constrained (Lagrangian) training: positive when the
    /// step violated the constraint by that much, negative when it had slack. 0 when the
    /// environment has no constraint.
    pub cost: f32,
    /// Whether the episode is over.
    pub done: bool,
}

/// A sequential decision problem for PPO.
pub trait Env: Send {
    /// Failures of the underlying simulation.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Length of an observation vector.
    fn obs_dim(&self) -> usize;
    /// Number of discrete actions.
    fn n_actions(&self) -> usize;
    /// Starts an episode drawn from `seed`; returns its first observation.
    fn reset(&mut self, seed: u64) -> Result<Vec<f32>, Self::Error>;
    /// Takes action `action` (an index below [`n_actions`](Self::n_actions)).
    fn step(&mut self, action: usize) -> Result<Step, Self::Error>;
    /// Writes which actions are allowed now (`true` = allowed) into `mask` (length
    /// [`n_actions`](Self::n_actions)). At least one action is always allowed. Default: all.
    fn action_mask(&self, mask: &mut [bool]) {
        mask.fill(true);
    }
    /// Named measurements of the episode that just ended (called once `done`, before the next
    /// reset), for training curves. Default: none.
    fn episode_metrics(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

impl<E: Env + ?Sized> Env for Box<E> {
    type Error = E::Error;
    fn obs_dim(&self) -> usize {
        (**self).obs_dim()
    }
    fn n_actions(&self) -> usize {
        (**self).n_actions()
    }
    fn reset(&mut self, seed: u64) -> Result<Vec<f32>, Self::Error> {
        (**self).reset(seed)
    }
    fn step(&mut self, action: usize) -> Result<Step, Self::Error> {
        (**self).step(action)
    }
    fn action_mask(&self, mask: &mut [bool]) {
        (**self).action_mask(mask)
    }
    fn episode_metrics(&self) -> Vec<(&'static str, f64)> {
        (**self).episode_metrics()
    }
}

/// A contextual bandit with a known optimal action, for tests: the observation is a one-hot
/// context among `contexts`; action `(context * 3 + 1) % n_actions` earns 1, every other 0;
/// actions at or above `masked_from` are masked. Episodes last `len` steps.
#[derive(Clone, Debug)]
pub struct KnownOptimumEnv {
    /// Distinct contexts.
    pub contexts: usize,
    /// Actions.
    pub n_actions: usize,
    /// First masked action index (`n_actions` for none).
    pub masked_from: usize,
    /// Steps per episode.
    pub len: usize,
    t: usize,
    context: usize,
    rng: u64,
}

impl KnownOptimumEnv {
    /// A bandit of `contexts` contexts and `n_actions` actions, none masked, 16-step episodes.
    pub fn new(contexts: usize, n_actions: usize) -> Self {
        KnownOptimumEnv { contexts, n_actions, masked_from: n_actions, len: 16, t: 0, context: 0, rng: 1 }
    }

    /// The action that earns the reward in `context`.
    pub fn optimal(&self, context: usize) -> usize {
        (context * 3 + 1) % self.n_actions
    }

    /// The one-hot observation of `context`.
    pub fn observation(&self, context: usize) -> Vec<f32> {
        (0..self.contexts).map(|i| if i == context { 1.0 } else { 0.0 }).collect()
    }

    fn draw(&mut self) -> Vec<f32> {
        // splitmix64: a tiny deterministic generator is enough for a test environment.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.context = ((z ^ (z >> 31)) % self.contexts as u64) as usize;
        self.observation(self.context)
    }
}

impl Env for KnownOptimumEnv {
    type Error = std::convert::Infallible;
    fn obs_dim(&self) -> usize {
        self.contexts
    }
    fn n_actions(&self) -> usize {
        self.n_actions
    }
    fn reset(&mut self, seed: u64) -> Result<Vec<f32>, Self::Error> {
        self.rng = seed;
        self.t = 0;
        Ok(self.draw())
    }
    fn step(&mut self, action: usize) -> Result<Step, Self::Error> {
        let reward = if action == self.optimal(self.context) { 1.0 } else { 0.0 };
        self.t += 1;
        Ok(Step { obs: self.draw(), reward, cost: 0.0, done: self.t >= self.len })
    }
    fn action_mask(&self, mask: &mut [bool]) {
        for (i, m) in mask.iter_mut().enumerate() {
            *m = i < self.masked_from;
        }
    }
}
