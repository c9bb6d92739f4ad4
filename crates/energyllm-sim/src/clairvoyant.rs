//! Reference rows no deployable policy can produce: the clairvoyant schedule and the energy
//! floor.

use energyllm_core::{Action, Mhz, Observation, Policy, Request, RunSummary};
use energyllm_engines::{IterationWork, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::simulation::{simulate, RunResult, SimSetup};
use crate::Error;

/// Plays a fixed action per time window.
struct Schedule {
    window_s: f64,
    actions: Vec<Action>,
    tail: Action,
}

impl Policy for Schedule {
    fn name(&self) -> &str {
        "clairvoyant"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let w = (obs.now.as_secs_f64() / self.window_s).floor() as usize;
        self.actions.get(w).copied().unwrap_or(self.tail)
    }
}

/// Settings of the clairvoyant search.
#[derive(Clone, Debug)]
pub struct ClairvoyantConfig {
    /// Length of each window the search fixes an action for, in seconds.
    pub window_s: f64,
    /// Use every `clock_stride`-th clock of the action space (and always the top one).
    pub clock_stride: usize,
}

impl Default for ClairvoyantConfig {
    fn default() -> Self {
        ClairvoyantConfig { window_s: 10.0, clock_stride: 2 }
    }
}

/// The clairvoyant reference: knows every future arrival and true output length, and for each
/// window in turn searches (clock, batch) by simulating the whole run ahead with that action for
/// this window and the rest — choosing the fewest SLO misses, then the least busy energy. Not
/// deployable; it shows how much any policy leaves on the table.
pub fn clairvoyant(
    setup: &SimSetup,
    requests: &[Request],
    arrivals_end_s: f64,
    config: &ClairvoyantConfig,
) -> Result<RunResult, Error> {
    if !config.window_s.is_finite() || config.window_s <= 0.0 || config.clock_stride == 0 {
        return Err(Error::Setting("clairvoyant: window_s must be positive and clock_stride ≥ 1".into()));
    }
    let space = &setup.controller.action_space;
    let mut clocks: Vec<Mhz> = space.freqs().iter().copied().step_by(config.clock_stride).collect();
    if clocks.last() != Some(&space.max_freq()) {
        clocks.push(space.max_freq());
    }
    let candidates: Vec<Action> = clocks
        .iter()
        .flat_map(|&freq| space.batches().iter().map(move |&batch| Action { freq, batch }))
        .collect();
    let slo = setup.controller.slo;
    let windows = (arrivals_end_s / config.window_s).ceil().max(1.0) as usize;
    let mut chosen: Vec<Action> = Vec::with_capacity(windows);
    let mut best_run = None;
    for _ in 0..windows {
        let mut best: Option<((usize, f64), Action, RunResult)> = None;
        for &candidate in &candidates {
            let policy = Schedule { window_s: config.window_s, actions: chosen.clone(), tail: candidate };
            let run = simulate(setup, Box::new(policy), requests, arrivals_end_s)?;
            let misses = run.records.iter().filter(|r| !r.meets(&slo)).count();
            let key = (misses, run.totals.busy_energy_j);
            if best.as_ref().is_none_or(|(k, _, _)| key.0 < k.0 || (key.0 == k.0 && key.1 < k.1)) {
                best = Some((key, candidate, run));
            }
        }
        if let Some((_, action, run)) = best {
            chosen.push(action);
            best_run = Some(run);
        }
    }
    best_run.ok_or_else(|| Error::Setting("clairvoyant: the action space is empty".into()))
}

/// The least energy physically possible for a run's tokens, ignoring the SLO.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyFloor {
    /// Busy GPU energy if every prefill and decode token ran at its most efficient clock × batch
    /// point, in joules.
    pub busy_energy_j: f64,
    /// That plus idle power for the rest of the run, in joules.
    pub total_energy_j: f64,
    /// Requests the floor is spread over.
    pub requests: u64,
}

impl EnergyFloor {
    /// Busy energy per request, in joules.
    pub fn per_request_j(&self) -> f64 {
        self.busy_energy_j / self.requests.max(1) as f64
    }
    /// Board energy per request, in joules.
    pub fn total_per_request_j(&self) -> f64 {
        self.total_energy_j / self.requests.max(1) as f64
    }
}

/// Cheapest joules per token and seconds per token over every clock and batch (up to
/// `max_batch`) for `work_at(batch)`.
fn cheapest(setup: &SimSetup, max_batch: u32, work_at: impl Fn(u64) -> (IterationWork, f64)) -> (f64, f64) {
    let (model, gpu): (&ModelSpec, &GpuSpec) = (&setup.model, &setup.gpu);
    let timing = &setup.engine.timing;
    let mut best = (f64::INFINITY, 0.0);
    for f in gpu.supported_freqs() {
        let mut b = 1u64;
        while b <= u64::from(max_batch) {
            let (work, tokens) = work_at(b);
            let c = timing.cost(model, gpu, f, &work);
            let joules = gpu.power_w(f, c.load) * c.time_s * f64::from(model.tensor_parallel) / tokens;
            if joules < best.0 {
                best = (joules, c.time_s / tokens);
            }
            b *= 2;
        }
    }
    best
}

/// The energy floor of `requests` over a run of `elapsed_s` seconds.
pub fn energy_floor(setup: &SimSetup, requests: &[Request], elapsed_s: f64) -> EnergyFloor {
    let n = requests.len().max(1) as f64;
    let prompt: f64 = requests.iter().map(|r| f64::from(r.input_tokens)).sum();
    let answer: f64 = requests.iter().map(|r| f64::from(r.output_tokens.max(1))).sum();
    let (mean_in, mean_out) = (prompt / n, answer / n);
    let max_batch = setup.engine.max_num_seqs;
    // Decode at the run's mean context; prefill as whole mean-length prompts.
    let decode = cheapest(setup, max_batch, |b| {
        let ctx = (mean_in + mean_out / 2.0).round() as u64;
        (
            IterationWork {
                decode_tokens: b,
                kv_read_tokens: b * ctx,
                attention_pairs: (b * (ctx + 1)) as f64,
                sampled_sequences: b,
                ..Default::default()
            },
            b as f64,
        )
    });
    let prefill = cheapest(setup, max_batch, |b| {
        let p = mean_in.max(1.0);
        (
            IterationWork {
                prefill_tokens: (b as f64 * p).round() as u64,
                attention_pairs: b as f64 * p * (p + 1.0) / 2.0,
                sampled_sequences: b,
                ..Default::default()
            },
            b as f64 * p,
        )
    });
    let busy_energy_j = prompt * prefill.0 + answer * decode.0;
    let busy_s = prompt * prefill.1 + answer * decode.1;
    let idle_w = setup.gpu.idle_power_w * f64::from(setup.model.tensor_parallel);
    EnergyFloor {
        busy_energy_j,
        total_energy_j: busy_energy_j + idle_w * (elapsed_s - busy_s).max(0.0),
        requests: requests.len() as u64,
    }
}

/// Summarises a clairvoyant run like any other method.
pub fn summarize(label: &str, setup: &SimSetup, run: &RunResult) -> RunSummary {
    RunSummary::compute(label, &setup.controller.slo, &run.records, &run.totals, 1)
}
