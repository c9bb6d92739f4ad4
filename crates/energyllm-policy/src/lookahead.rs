//! The look-ahead baselines: DynamoLLM-like, throttLL'eM-like, VoltanaLLM-like and the w/o-RL
//! heuristic. Each consults the [`PerfModel`] of its context through
//! [`forecast`](crate::forecast); on the simulator that is the simulator's own iteration model,
//! which makes them as strong as they can be. Caps and presets follow
//! [`adaptive`](crate::adaptive)'s rules.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use energyllm_core::registry::{parse_config, PolicyPlugin};
use energyllm_core::{Action, ActionSpace, Error, Mhz, Observation, PerfModel, Policy, PolicyContext, Slo};

use crate::adaptive::{
    bad, batch_for, cap_of, clocks_from, engine_default_cap, in_system, positive, Preset,
    DEFAULT_PROMPT_TOKENS,
};
use crate::forecast::{self, mean_queued_prompt};

/// DynamoLLM-like: per request-length class, the lowest clock whose predicted latency meets the
/// SLO with margin.
///
/// Observes the queue's mean prompt and expected output lengths, which place it in one of nine
/// (input × output) length classes (edges `input_edges`, `output_edges`); for that class,
/// predicts each (batch, clock) with the performance model at the class's upper lengths
/// (conservative, as DynamoLLM sizes for its bins), keeps those with predicted latency plus the
/// oldest wait within `slo_margin_ratio` × SLO and clock ≥ `min_freq`, and picks the one with the
/// best `throughput_weight` × normalised throughput − (1 − weight) × normalised energy per request.
/// Parameters from the EnergyLLM evaluation (margin 0.61, min clock 1050, weight 0.72).
pub struct DynamoLlm {
    c: DynamoLlmConfig,
    space: ActionSpace,
    slo: Slo,
    perf: Arc<dyn PerfModel>,
    /// The engine's cap, or `None` with `preset=paper` (the batch is chosen too).
    cap: Option<u32>,
    /// Per (input class, output class, batch): lowest feasible clock, latency, energy/request.
    cache: HashMap<(usize, usize, u32), Option<ClassSetting>>,
}

/// Config of [`DynamoLlm`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoLlmConfig {
    /// Predicted latency must stay within this fraction of the SLO. Default: 0.61.
    pub slo_margin_ratio: f64,
    /// Lowest clock it will choose, in MHz. Default: 1050.
    pub min_freq: u32,
    /// Weight of throughput against energy when choosing the batch. Default: 0.72.
    pub throughput_weight: f64,
    /// Prompt-length class edges in tokens. Default: 256, 1024.
    pub input_edges: [f64; 2],
    /// Output-length class edges in tokens. Default: 128, 512.
    pub output_edges: [f64; 2],
    /// `paper`: the EnergyLLM paper's configuration, which also chooses the batch cap (by
    /// `throughput_weight`); by default the cap stays at the engine's default and only the clock
    /// is chosen, for the batch the engine would run.
    pub preset: Option<Preset>,
}

impl Default for DynamoLlmConfig {
    fn default() -> Self {
        DynamoLlmConfig {
            slo_margin_ratio: 0.61,
            min_freq: 1050,
            throughput_weight: 0.72,
            input_edges: [256.0, 1024.0],
            output_edges: [128.0, 512.0],
            preset: None,
        }
    }
}

/// A class's lowest feasible clock with its predicted latency (s) and energy per request (J).
type ClassSetting = (Mhz, f64, f64);

fn class_of(x: f64, edges: [f64; 2]) -> (usize, f64) {
    if x <= edges[0] {
        (0, edges[0])
    } else if x <= edges[1] {
        (1, edges[1])
    } else {
        (2, (2.0 * edges[1]).max(x))
    }
}

impl DynamoLlm {
    /// Builds it; needs a performance model.
    pub fn new(c: DynamoLlmConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "dynamollm";
        positive(name, "slo_margin_ratio", c.slo_margin_ratio)?;
        if !(0.0..=1.0).contains(&c.throughput_weight) {
            return Err(bad(name, "`throughput_weight` must be in [0, 1]"));
        }
        let perf = forecast::require(ctx, name)?;
        let cap = (c.preset != Some(Preset::Paper)).then(|| engine_default_cap(&ctx.action_space));
        Ok(DynamoLlm { c, space: ctx.action_space.clone(), slo: ctx.slo, perf, cap, cache: HashMap::new() })
    }

    /// For one class and batch: the lowest feasible clock with its latency and energy/request.
    fn setting(
        &mut self,
        ic: (usize, f64),
        oc: (usize, f64),
        batch: u32,
        budget_s: f64,
    ) -> Option<ClassSetting> {
        let key = (ic.0, oc.0, batch);
        if let Some(hit) = self.cache.get(&key) {
            return hit.filter(|s| s.1 <= budget_s);
        }
        let mut found = None;
        for f in clocks_from(&self.space, Mhz(self.c.min_freq)) {
            let fc = forecast::batch(self.perf.as_ref(), f, batch, ic.1, oc.1);
            if fc.latency_s <= self.slo.latency_budget_s(oc.1) * self.c.slo_margin_ratio {
                found = Some((f, fc.latency_s, fc.energy_j / f64::from(batch)));
                break;
            }
        }
        self.cache.insert(key, found);
        found.filter(|s| s.1 <= budget_s)
    }
}

impl Policy for DynamoLlm {
    fn name(&self) -> &str {
        "dynamollm"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let ic = class_of(mean_queued_prompt(obs, DEFAULT_PROMPT_TOKENS), self.c.input_edges);
        let oc = class_of(obs.mean_output_tokens, self.c.output_edges);
        let budget =
            self.slo.latency_budget_s(obs.mean_output_tokens) * self.c.slo_margin_ratio - obs.oldest_wait_s;
        let need = in_system(obs).max(1);
        if let Some(cap) = self.cap {
            // The engine runs the requests in the system (up to its cap): the lowest feasible
            // clock for that batch, the top clock when none is.
            let running = batch_for(&self.space, need.min(cap));
            let freq = self.setting(ic, oc, running, budget.max(0.0)).map_or(self.space.max_freq(), |s| s.0);
            return Action { freq, batch: cap };
        }
        let mut options = Vec::new();
        for b in self.space.batches().to_vec() {
            if let Some((f, latency, energy)) = self.setting(ic, oc, b, budget.max(0.0)) {
                let served = f64::from(b.min(need));
                options.push((b, f, served / latency, energy * f64::from(b) / served));
            }
        }
        let (max_tput, max_energy) =
            options.iter().fold((0.0f64, 0.0f64), |m, o| (m.0.max(o.2), m.1.max(o.3)));
        let w = self.c.throughput_weight;
        let best = options.iter().max_by(|a, b| {
            let score = |o: &(u32, Mhz, f64, f64)| w * o.2 / max_tput - (1.0 - w) * o.3 / max_energy;
            score(a).total_cmp(&score(b))
        });
        match best {
            Some(&(b, f, _, _)) => Action { freq: f, batch: b },
            None => Action { freq: self.space.max_freq(), batch: batch_for(&self.space, need) },
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// throttLL'eM-like: projects batch and KV use over the next window and picks the lowest clock
/// whose predicted iteration rate keeps the projected latency within the SLO.
///
/// Observes running and queued requests, the arrival rate and the mean lengths; projects the
/// batch over `window_s` (running + queued + expected arrivals, capped at `batch`) and its KV
/// tokens (batch × (mean prompt + mean output / 2)); asks the performance model for the decode
/// iteration time at each clock (the iteration-rate predictor) and keeps the lowest clock with
/// oldest wait + prefill + mean output × iteration time ≤ `margin` × SLO (and TPOT within its
/// SLO when one is set). The batch cap stays at the engine's default (16 with `preset=paper`), as
/// throttLL'eM throttles the clock of a continuous-batching engine and leaves its batch limit
/// alone.
pub struct Throttllem {
    c: ThrottllemConfig,
    batch: u32,
    space: ActionSpace,
    slo: Slo,
    perf: Arc<dyn PerfModel>,
}

/// Config of [`Throttllem`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottllemConfig {
    /// Batch cap. Default: the engine's default; 16 with `preset=paper`.
    pub batch: Option<u32>,
    /// `paper`: the EnergyLLM paper's configuration (batch 16).
    pub preset: Option<Preset>,
    /// Projection window in seconds. Default: 5.
    pub window_s: f64,
    /// Projected latency must stay within this fraction of the SLO. Default: 0.8.
    pub margin: f64,
}

impl Default for ThrottllemConfig {
    fn default() -> Self {
        ThrottllemConfig { batch: None, preset: None, window_s: 5.0, margin: 0.8 }
    }
}

impl Throttllem {
    /// Builds it; needs a performance model.
    pub fn new(c: ThrottllemConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "throttllem";
        positive(name, "window_s", c.window_s)?;
        positive(name, "margin", c.margin)?;
        Ok(Throttllem {
            perf: forecast::require(ctx, name)?,
            batch: cap_of(name, c.batch, c.preset, 16, &ctx.action_space)?,
            c,
            space: ctx.action_space.clone(),
            slo: ctx.slo,
        })
    }
}

impl Policy for Throttllem {
    fn name(&self) -> &str {
        "throttllem"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let input = mean_queued_prompt(obs, DEFAULT_PROMPT_TOKENS);
        let output = obs.mean_output_tokens.max(1.0);
        let projected = f64::from(obs.running + obs.queue_len) + obs.arrival_rate_rps * self.c.window_s;
        let batch = projected.clamp(1.0, f64::from(self.batch)).round() as u32;
        let kv_tokens = (f64::from(batch) * (input + output / 2.0)).round() as u64;
        let budget = self.c.margin * self.slo.latency_budget_s(output) - obs.oldest_wait_s;
        for &f in self.space.freqs() {
            let decode = self.perf.predict(&energyllm_core::PerfQuery {
                freq: f,
                batch,
                prefill_tokens: 0,
                decode_tokens: batch,
                kv_tokens,
            });
            let prefill = self.perf.predict(&energyllm_core::PerfQuery {
                freq: f,
                batch: 1,
                prefill_tokens: input.round() as u32,
                decode_tokens: 0,
                kv_tokens: 0,
            });
            let e2e = prefill.latency_s + output * decode.latency_s;
            let tpot_ok = self.slo.tpot_s.is_none_or(|t| decode.latency_s <= t * self.c.margin);
            if e2e <= budget && tpot_ok {
                return Action { freq: f, batch: self.batch };
            }
        }
        Action { freq: self.space.max_freq(), batch: self.batch }
    }
}

// ---------------------------------------------------------------------------------------------

/// VoltanaLLM-like feedback control: the lowest clock whose predicted latency is within the SLO
/// with a margin, and the top clock at once when the queue grows or arrivals surge.
///
/// Observes the queue (length, growth since the last decision, oldest wait), the arrival rate and
/// the mean lengths; predicts the next batch (the requests in the system, capped at the batch
/// cap: the engine's default, 16 with `preset=paper`) with the performance
/// model and keeps the lowest clock with oldest wait + predicted latency ≤ SLO × (1 + `margin`)
/// (`margin` is negative to leave headroom). Jumps to the top clock when the queue grew by
/// `queue_growth_jump` or more since the last decision, or the arrival rate exceeds
/// `rate_jump_rps`.
pub struct Voltana {
    c: VoltanaConfig,
    cap: u32,
    space: ActionSpace,
    slo: Slo,
    perf: Arc<dyn PerfModel>,
    last_queue: u32,
}

/// Config of [`Voltana`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoltanaConfig {
    /// Batch cap. Default: the engine's default; 16 with `preset=paper`.
    pub batch: Option<u32>,
    /// `paper`: the EnergyLLM paper's configuration (batch 16).
    pub preset: Option<Preset>,
    /// Predicted latency may reach SLO × (1 + margin). Default: −0.25.
    pub margin: f64,
    /// Queue growth between decisions that triggers the top clock. Default: 4.
    pub queue_growth_jump: u32,
    /// Arrival rate above which it runs at the top clock, in requests/s. Default: 2.
    pub rate_jump_rps: f64,
}

impl Default for VoltanaConfig {
    fn default() -> Self {
        VoltanaConfig { batch: None, preset: None, margin: -0.25, queue_growth_jump: 4, rate_jump_rps: 2.0 }
    }
}

impl Voltana {
    /// Builds it; needs a performance model.
    pub fn new(c: VoltanaConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "voltana";
        if !(c.margin > -1.0 && c.margin.is_finite()) || c.queue_growth_jump == 0 {
            return Err(bad(name, "need margin > −1 and queue_growth_jump ≥ 1"));
        }
        positive(name, "rate_jump_rps", c.rate_jump_rps)?;
        Ok(Voltana {
            perf: forecast::require(ctx, name)?,
            cap: cap_of(name, c.batch, c.preset, 16, &ctx.action_space)?,
            c,
            space: ctx.action_space.clone(),
            slo: ctx.slo,
            last_queue: 0,
        })
    }
}

impl Policy for Voltana {
    fn name(&self) -> &str {
        "voltana"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let grew = obs.queue_len >= self.last_queue + self.c.queue_growth_jump;
        self.last_queue = obs.queue_len;
        let paper = self.c.preset == Some(Preset::Paper);
        // With the paper's preset the cap follows the predicted batch, as the EnergyLLM paper
        // ran it; otherwise the engine keeps its cap and the prediction uses the running batch.
        let batch = batch_for(&self.space, in_system(obs).min(self.cap));
        let cap = if paper { batch } else { self.cap };
        if grew || obs.arrival_rate_rps > self.c.rate_jump_rps {
            return Action { freq: self.space.max_freq(), batch: cap };
        }
        let input = mean_queued_prompt(obs, DEFAULT_PROMPT_TOKENS);
        let budget =
            self.slo.latency_budget_s(obs.mean_output_tokens) * (1.0 + self.c.margin) - obs.oldest_wait_s;
        let freq = self
            .space
            .freqs()
            .iter()
            .copied()
            .find(|&f| {
                forecast::batch(self.perf.as_ref(), f, batch, input, obs.mean_output_tokens).latency_s
                    <= budget
            })
            .unwrap_or(self.space.max_freq());
        Action { freq, batch: cap }
    }
    fn reset(&mut self) {
        self.last_queue = 0;
    }
}

// ---------------------------------------------------------------------------------------------

/// The "w/o RL" ablation: a hand-written joint clock × batch rule over the performance model.
///
/// Observes the queue (length, mean prompt, oldest wait) and the mean output length. The rule:
/// consider every batch of the action space that holds the whole queue (or, if none does, the
/// largest, up to `max_batch`); for each, the lowest clock whose predicted batch latency plus the
/// oldest wait stays within `margin` × SLO; choose the (batch, clock) with the least predicted
/// energy per queued request. When nothing is feasible, the top clock and the largest batch,
/// to drain the queue.
pub struct Heuristic {
    c: HeuristicConfig,
    space: ActionSpace,
    slo: Slo,
    perf: Arc<dyn PerfModel>,
}

/// Config of [`Heuristic`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeuristicConfig {
    /// Largest batch it will choose. Default: 64.
    pub max_batch: u32,
    /// Predicted latency plus wait must stay within this fraction of the SLO. Default: 0.8.
    pub margin: f64,
}

impl Default for HeuristicConfig {
    fn default() -> Self {
        HeuristicConfig { max_batch: 64, margin: 0.8 }
    }
}

impl Heuristic {
    /// Builds it; needs a performance model.
    pub fn new(c: HeuristicConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "heuristic";
        positive(name, "margin", c.margin)?;
        if c.max_batch == 0 {
            return Err(bad(name, "`max_batch` must be ≥ 1"));
        }
        Ok(Heuristic {
            perf: forecast::require(ctx, name)?,
            c,
            space: ctx.action_space.clone(),
            slo: ctx.slo,
        })
    }
}

impl Policy for Heuristic {
    fn name(&self) -> &str {
        "heuristic"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let input = mean_queued_prompt(obs, DEFAULT_PROMPT_TOKENS);
        let output = obs.mean_output_tokens;
        let queued = in_system(obs).max(1);
        let allowed: Vec<u32> =
            self.space.batches().iter().copied().filter(|&b| b <= self.c.max_batch).collect();
        let largest = allowed.last().copied().unwrap_or(self.space.batches()[0]);
        let candidates: Vec<u32> = match allowed.iter().position(|&b| b >= queued) {
            Some(i) => allowed[i..].to_vec(),
            None => vec![largest],
        };
        let budget = self.c.margin * self.slo.latency_budget_s(output) - obs.oldest_wait_s;
        let mut best: Option<(f64, Action)> = None;
        for b in candidates {
            let feasible = self.space.freqs().iter().copied().find_map(|f| {
                let fc = forecast::batch(self.perf.as_ref(), f, b, input, output);
                (fc.latency_s <= budget).then_some((f, fc.energy_j))
            });
            if let Some((f, energy)) = feasible {
                let per_request = energy / f64::from(b.min(queued));
                if best.is_none_or(|(e, _)| per_request < e) {
                    best = Some((per_request, Action { freq: f, batch: b }));
                }
            }
        }
        best.map(|(_, a)| a).unwrap_or(Action { freq: self.space.max_freq(), batch: largest })
    }
}

register!(
    "dynamollm",
    "DynamoLLM-like: per length class, lowest clock meeting SLO × 0.61",
    DynamoLlm,
    DynamoLlmConfig
);
register!(
    "throttllem",
    "throttLL'eM-like: projected KV/batch, iteration-rate predictor",
    Throttllem,
    ThrottllemConfig
);
register!(
    "voltana",
    "VoltanaLLM-like: lowest clock within SLO margin, top clock on surges",
    Voltana,
    VoltanaConfig
);
register!(
    "heuristic",
    "w/o RL ablation: least-energy clock × batch meeting SLO × 0.8",
    Heuristic,
    HeuristicConfig
);
