//! The adaptive baselines that need no performance model: DVFS-Only, Batch-Only,
//! Reactive-DVFS and Token-Aware, and what every baseline shares (caps, presets, the queue's
//! shape). The look-ahead ones are in [`lookahead`](crate::lookahead).
//!
//! Each policy documents what it observes, what it sets and whom it follows. Where a paper
//! leaves a choice open, the choice here is what a strong implementation would make, and the doc
//! says so.
//!
//! **Batching.** throttLL'eM, VoltanaLLM and DynamoLLM change the clock of a continuous-batching
//! engine and leave its batching alone, and the generic DVFS governors do the same: by default
//! `dvfs-only`, `reactive-dvfs`, `throttllem`, `voltana` and `dynamollm` keep the batch cap at
//! the engine's default — the largest cap of the action space ([`engine_default_cap`]). The
//! EnergyLLM paper ran them with small fixed batches (8 or 16, and DynamoLLM choosing its batch);
//! `preset=paper` restores exactly that, for the paper's table.

use serde::Deserialize;

use energyllm_core::registry::{parse_config, PolicyPlugin};
use energyllm_core::{Action, ActionSpace, Error, Mhz, Observation, Policy, PolicyContext, Slo};

use crate::forecast::mean_queued_prompt;

/// Named parameter sets of a baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The EnergyLLM paper's configuration of the baseline (small fixed batches).
    Paper,
}

/// The batch cap an engine runs with when nobody sets one: the largest cap of the action space
/// (the evaluation's spaces end at vLLM's default of 256).
pub fn engine_default_cap(space: &ActionSpace) -> u32 {
    space.batches()[space.batches().len() - 1]
}

/// The cap a clock-only baseline runs at: `batch` if given, else the paper's `paper_batch` with
/// `preset=paper`, else the engine's default. A cap the action space does not offer is refused:
/// the controller would snap it, and the row would not be what its label says.
pub(crate) fn cap_of(
    name: &str,
    batch: Option<u32>,
    preset: Option<Preset>,
    paper_batch: u32,
    space: &ActionSpace,
) -> Result<u32, Error> {
    let cap = batch.unwrap_or(match preset {
        Some(Preset::Paper) => paper_batch,
        None => engine_default_cap(space),
    });
    if space.batches().contains(&cap) {
        Ok(cap)
    } else {
        Err(bad(
            name,
            format!("batch={cap} is not a cap of the action space; choose one of {:?}", space.batches()),
        ))
    }
}

/// Prompt length assumed when nothing is queued to measure it, in tokens.
pub(crate) const DEFAULT_PROMPT_TOKENS: f64 = 256.0;

pub(crate) fn bad(name: &str, reason: impl Into<String>) -> Error {
    Error::PluginConfig { kind: "policy", name: name.to_owned(), reason: reason.into() }
}

pub(crate) fn positive(name: &str, field: &str, v: f64) -> Result<(), Error> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(bad(name, format!("`{field}` must be a positive number, got {v}")))
    }
}

/// Requests a batch cap must hold: those queued plus those running. At a static batch's
/// boundary nothing runs, so this is the queue; under continuous batching the cap bounds
/// concurrency, so the running requests count too.
pub(crate) fn in_system(obs: &Observation) -> u32 {
    obs.queue_len.saturating_add(obs.running)
}

/// Smallest batch of the space that holds `n` requests (the largest if none does).
pub(crate) fn batch_for(space: &ActionSpace, n: u32) -> u32 {
    let bs = space.batches();
    bs.iter().copied().find(|&b| b >= n.max(1)).unwrap_or(bs[bs.len() - 1])
}

/// Clocks of the space at or above `min`, ascending (the top clock if none is).
pub(crate) fn clocks_from(space: &ActionSpace, min: Mhz) -> Vec<Mhz> {
    let v: Vec<Mhz> = space.freqs().iter().copied().filter(|&f| f >= min).collect();
    if v.is_empty() {
        vec![space.max_freq()]
    } else {
        v
    }
}

// ---------------------------------------------------------------------------------------------

/// DVFS-Only: batch cap left at the engine's default (8 with `preset=paper`); the clock follows
/// the load.
///
/// Observes the requests queued and running; sets the clock from a short ladder (the EnergyLLM
/// paper's {810, 960, 1050, 1110, 1155, 1200} MHz). The paper does not say how load maps to the
/// ladder; here the rung is proportional to the requests in the system, the top rung reached
/// when `full_load_requests` (default two batches of the paper's 8) are waiting or running.
#[derive(Clone, Debug)]
pub struct DvfsOnly {
    clocks: Vec<Mhz>,
    batch: u32,
    full_load: f64,
}

/// Config of [`DvfsOnly`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DvfsOnlyConfig {
    /// The clock ladder in MHz. Default: 810, 960, 1050, 1110, 1155, 1200.
    pub clocks: Vec<u32>,
    /// Batch cap. Default: the engine's default; 8 with `preset=paper`.
    pub batch: Option<u32>,
    /// Requests in the system at which the top rung is reached. Default: 16.
    pub full_load_requests: Option<f64>,
    /// `paper`: the EnergyLLM paper's configuration (batch 8).
    pub preset: Option<Preset>,
}

impl Default for DvfsOnlyConfig {
    fn default() -> Self {
        DvfsOnlyConfig {
            clocks: vec![810, 960, 1050, 1110, 1155, 1200],
            batch: None,
            full_load_requests: None,
            preset: None,
        }
    }
}

impl DvfsOnly {
    /// Builds it.
    pub fn new(c: DvfsOnlyConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "dvfs-only";
        if c.clocks.is_empty() {
            return Err(bad(name, "`clocks` must not be empty"));
        }
        let full = c.full_load_requests.unwrap_or(16.0);
        positive(name, "full_load_requests", full)?;
        let mut clocks: Vec<Mhz> = c.clocks.iter().map(|&f| ctx.action_space.nearest_freq(Mhz(f))).collect();
        clocks.sort_unstable();
        clocks.dedup();
        let batch = cap_of(name, c.batch, c.preset, 8, &ctx.action_space)?;
        Ok(DvfsOnly { clocks, batch, full_load: full })
    }
}

impl Policy for DvfsOnly {
    fn name(&self) -> &str {
        "dvfs-only"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let load = f64::from(obs.queue_len + obs.running) / self.full_load;
        let top = self.clocks.len() - 1;
        let rung = ((load * top as f64).round() as usize).min(top);
        Action { freq: self.clocks[rung], batch: self.batch }
    }
}

// ---------------------------------------------------------------------------------------------

/// Batch-Only: clock at the top; the batch follows the queue.
///
/// Observes the queue length and running requests; sets the smallest batch of {1, 2, 4, 8, 16}
/// that holds them (the EnergyLLM paper's Batch-Only), the largest when there are more.
#[derive(Clone, Debug)]
pub struct BatchOnly {
    space: ActionSpace,
}

/// Config of [`BatchOnly`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchOnlyConfig {
    /// Batch sizes to choose from. Default: 1, 2, 4, 8, 16.
    pub batches: Vec<u32>,
}

impl Default for BatchOnlyConfig {
    fn default() -> Self {
        BatchOnlyConfig { batches: vec![1, 2, 4, 8, 16] }
    }
}

impl BatchOnly {
    /// Builds it.
    pub fn new(c: BatchOnlyConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let space = ActionSpace::new(vec![ctx.action_space.max_freq()], c.batches)
            .map_err(|e| bad("batch-only", e.to_string()))?;
        Ok(BatchOnly { space })
    }
}

impl Policy for BatchOnly {
    fn name(&self) -> &str {
        "batch-only"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        Action { freq: self.space.max_freq(), batch: batch_for(&self.space, in_system(obs)) }
    }
}

// ---------------------------------------------------------------------------------------------

/// Reactive-DVFS: one clock step up or down when the queue or the latency crosses a threshold.
///
/// Observes the queue length and the mean latency of recent completions; sets the clock one
/// step of the action space at a time, batch cap at the engine's default (8 with
/// `preset=paper`). Steps up when the queue exceeds
/// `queue_high` or recent latency exceeds `latency_high_frac` × SLO; steps down when the queue is
/// at most `queue_low`, recent latency is under `latency_low_frac` × SLO and the clock has held
/// for `hold_s` (hysteresis, so it does not oscillate). Starts at the top clock. The classic
/// utilisation-threshold governor, as in the DVFS literature the papers cite.
#[derive(Clone, Debug)]
pub struct ReactiveDvfs {
    c: ReactiveDvfsConfig,
    freqs: Vec<Mhz>,
    index: usize,
    batch: u32,
    slo: Slo,
}

/// Config of [`ReactiveDvfs`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReactiveDvfsConfig {
    /// Batch cap. Default: the engine's default; 8 with `preset=paper`.
    pub batch: Option<u32>,
    /// `paper`: the EnergyLLM paper's configuration (batch 8).
    pub preset: Option<Preset>,
    /// Queue length above which the clock steps up. Default: 8.
    pub queue_high: u32,
    /// Queue length at or below which the clock may step down. Default: 2.
    pub queue_low: u32,
    /// Recent latency, as a fraction of the SLO, above which the clock steps up. Default: 0.9.
    pub latency_high_frac: f64,
    /// Recent latency, as a fraction of the SLO, under which the clock may step down. Default: 0.6.
    pub latency_low_frac: f64,
    /// Seconds a clock must hold before stepping down. Default: 2.
    pub hold_s: f64,
}

impl Default for ReactiveDvfsConfig {
    fn default() -> Self {
        ReactiveDvfsConfig {
            batch: None,
            preset: None,
            queue_high: 8,
            queue_low: 2,
            latency_high_frac: 0.9,
            latency_low_frac: 0.6,
            hold_s: 2.0,
        }
    }
}

impl ReactiveDvfs {
    /// Builds it.
    pub fn new(c: ReactiveDvfsConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "reactive-dvfs";
        if c.queue_low > c.queue_high {
            return Err(bad(name, "`queue_low` must be ≤ `queue_high`"));
        }
        if c.latency_low_frac.partial_cmp(&c.latency_high_frac) != Some(std::cmp::Ordering::Less) {
            return Err(bad(name, "`latency_low_frac` must be below `latency_high_frac`"));
        }
        positive(name, "latency_low_frac", c.latency_low_frac)?;
        if !c.hold_s.is_finite() || c.hold_s < 0.0 {
            return Err(bad(name, "`hold_s` must be ≥ 0"));
        }
        let freqs = ctx.action_space.freqs().to_vec();
        let batch = cap_of(name, c.batch, c.preset, 8, &ctx.action_space)?;
        Ok(ReactiveDvfs { index: freqs.len() - 1, freqs, batch, slo: ctx.slo, c })
    }
}

impl Policy for ReactiveDvfs {
    fn name(&self) -> &str {
        "reactive-dvfs"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let latency = obs.recent_mean_latency_s / self.slo.latency_budget_s(obs.mean_output_tokens);
        if obs.queue_len > self.c.queue_high || latency > self.c.latency_high_frac {
            self.index = (self.index + 1).min(self.freqs.len() - 1);
        } else if obs.queue_len <= self.c.queue_low
            && latency < self.c.latency_low_frac
            && obs.since_last_switch_s >= self.c.hold_s
        {
            self.index = self.index.saturating_sub(1);
        }
        Action { freq: self.freqs[self.index], batch: self.batch }
    }
    fn reset(&mut self) {
        self.index = self.freqs.len() - 1;
    }
}

// ---------------------------------------------------------------------------------------------

/// Token-Aware: clock and batch from the tokens waiting, with no performance model.
///
/// Observes the queued prompt tokens and the expected output tokens (the mean of completed
/// requests); sets the batch to the queue length (capped at `max_batch`) and the clock by the
/// mean request size: at or under `short_tokens` → the first clock, under `long_tokens` → the
/// second, else the third; each full batch of backlog beyond the first raises the clock one step
/// of the action space. Follows the EnergyLLM paper's observation that short and long requests
/// differ in energy by an order of magnitude.
#[derive(Clone, Debug)]
pub struct TokenAware {
    c: TokenAwareConfig,
    space: ActionSpace,
}

/// Config of [`TokenAware`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenAwareConfig {
    /// Mean prompt + output tokens at or under which requests count as short. Default: 300.
    pub short_tokens: f64,
    /// Mean prompt + output tokens from which requests count as long. Default: 1000.
    pub long_tokens: f64,
    /// Clocks for short, medium and long requests, in MHz. Default: 960, 1110, 1245.
    pub clocks: [u32; 3],
    /// Largest batch. Default: 16.
    pub max_batch: u32,
}

impl Default for TokenAwareConfig {
    fn default() -> Self {
        TokenAwareConfig {
            short_tokens: 300.0,
            long_tokens: 1000.0,
            clocks: [960, 1110, 1245],
            max_batch: 16,
        }
    }
}

impl TokenAware {
    /// Builds it.
    pub fn new(c: TokenAwareConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        if !(c.short_tokens > 0.0 && c.short_tokens < c.long_tokens) || c.max_batch == 0 {
            return Err(bad("token-aware", "need 0 < short_tokens < long_tokens and max_batch ≥ 1"));
        }
        Ok(TokenAware { c, space: ctx.action_space.clone() })
    }
}

impl Policy for TokenAware {
    fn name(&self) -> &str {
        "token-aware"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let size = mean_queued_prompt(obs, DEFAULT_PROMPT_TOKENS) + obs.mean_output_tokens;
        let class = if size <= self.c.short_tokens {
            0
        } else if size < self.c.long_tokens {
            1
        } else {
            2
        };
        let base = self.space.nearest_freq_index(Mhz(self.c.clocks[class]));
        let backlog_batches = (obs.queue_len / self.c.max_batch).saturating_sub(1) as usize;
        let freq = self.space.freqs()[(base + backlog_batches).min(self.space.freqs().len() - 1)];
        Action { freq, batch: batch_for(&self.space, in_system(obs).min(self.c.max_batch)) }
    }
}

register!(
    "dvfs-only",
    "engine's batch cap (8 with preset=paper); clock from a ladder by requests in the system",
    DvfsOnly,
    DvfsOnlyConfig
);
register!("batch-only", "top clock; smallest batch that holds the queue", BatchOnly, BatchOnlyConfig);
register!(
    "reactive-dvfs",
    "clock steps up/down on queue and latency thresholds",
    ReactiveDvfs,
    ReactiveDvfsConfig
);
register!(
    "token-aware",
    "clock and batch from queued prompt and expected output tokens",
    TokenAware,
    TokenAwareConfig
);
