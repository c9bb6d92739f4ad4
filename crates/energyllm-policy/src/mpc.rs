//! `slo-mpc`: the clock a continuous-batching engine needs for the per-token SLO, predicted from
//! the steady state the current arrivals imply; the engine keeps its default batch cap.
//!
//! At arrival rate λ (the observed rate × `rate_headroom`, since the rate is measured over a
//! trailing window and lags a rise), mean prompt P and mean output O, a running engine settles
//! where each iteration of time t carries the decode tokens of the b ≈ λ·O·t requests generating
//! and the λ·P·t prompt tokens that arrived meanwhile: chunked prefill shares the iteration, which
//! is what slows every decoding request under load. For each clock, from the lowest, the policy
//! solves that fixed point with the performance model (the running requests as a floor on b) and
//! keeps the first clock where
//!
//! - the iteration time — each decoding request's time per output token — is within
//!   `tpot_margin` × the TPOT target, and
//! - a new prompt's prefill (its chunks at the iteration's leftover token budget) plus the oldest
//!   queued request's wait is within `ttft_margin` × the TTFT target,
//!
//! - a backlog in the controller's queue (the cap reached) drains within the first-token budget
//!   left to its oldest request, at the clock's throughput at the cap beyond the arrivals,
//!
//! (with only an end-to-end target: prefill plus O iterations within `tpot_margin` of it). Recent
//! attainment below `panic_attainment` goes to the top clock at once; a step down waits until the
//! clock has held `hold_s`, so noise in the rate does not make it switch (each switch stalls the
//! GPU).
//!
//! Unlike throttLL'eM's projection (the batch from the queue, the iteration without the prefill
//! that shares it), the load here includes the prompts arriving while requests decode, which is
//! where a clock-only controller loses its SLO near capacity.

use std::sync::Arc;

use serde::Deserialize;

use energyllm_core::registry::{parse_config, PolicyPlugin};
use energyllm_core::{
    Action, ActionSpace, Error, Mhz, Observation, PerfModel, PerfQuery, Policy, PolicyContext, Slo,
};

use crate::adaptive::{bad, cap_of, positive};
use crate::forecast;

/// See the [module docs](self).
pub struct SloMpc {
    c: SloMpcConfig,
    space: ActionSpace,
    slo: Slo,
    cap: u32,
    perf: Arc<dyn PerfModel>,
}

/// Config of [`SloMpc`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloMpcConfig {
    /// Batch cap. Default: the engine's default.
    pub batch: Option<u32>,
    /// Predicted time per output token must stay within this fraction of the TPOT target.
    /// Default: 0.8.
    pub tpot_margin: f64,
    /// Predicted time to first token must stay within this fraction of the TTFT target.
    /// Default: 0.5.
    pub ttft_margin: f64,
    /// The observed arrival rate is multiplied by this. Default: 1.2.
    pub rate_headroom: f64,
    /// Seconds a clock must hold before the policy steps down. Default: 5.
    pub hold_s: f64,
    /// Recent SLO attainment under which it runs at the top clock. Default: 0.95.
    pub panic_attainment: f64,
    /// The engine's token budget per iteration (vLLM's `max_num_batched_tokens`). Default: 8192.
    pub token_budget: u32,
}

impl Default for SloMpcConfig {
    fn default() -> Self {
        SloMpcConfig {
            batch: None,
            tpot_margin: 0.8,
            ttft_margin: 0.5,
            rate_headroom: 1.2,
            hold_s: 5.0,
            panic_attainment: 0.95,
            token_budget: 8192,
        }
    }
}

impl SloMpc {
    /// Builds it; needs a performance model.
    pub fn new(c: SloMpcConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let name = "slo-mpc";
        for (field, v) in [
            ("tpot_margin", c.tpot_margin),
            ("ttft_margin", c.ttft_margin),
            ("rate_headroom", c.rate_headroom),
        ] {
            positive(name, field, v)?;
        }
        if !(c.hold_s.is_finite() && c.hold_s >= 0.0 && (0.0..=1.0).contains(&c.panic_attainment)) {
            return Err(bad(name, "need hold_s ≥ 0 and panic_attainment in [0, 1]"));
        }
        if c.token_budget == 0 {
            return Err(bad(name, "`token_budget` must be ≥ 1"));
        }
        Ok(SloMpc {
            perf: forecast::require(ctx, name)?,
            cap: cap_of(name, c.batch, None, 0, &ctx.action_space)?,
            space: ctx.action_space.clone(),
            slo: ctx.slo,
            c,
        })
    }

    /// The load `obs` implies: arrival rate (with headroom), mean prompt and mean output tokens.
    fn load(&self, obs: &Observation) -> (f64, f64, f64) {
        let rate = obs.arrival_rate_rps * self.c.rate_headroom;
        (rate, obs.mean_prompt_tokens.max(1.0), obs.mean_output_tokens.max(1.0))
    }

    /// One iteration's time at `freq` with `batch` decoding requests and `prefill` prompt tokens.
    fn iteration_s(&self, freq: Mhz, batch: f64, prefill: f64, prompt: f64, output: f64) -> f64 {
        let batch = batch.round().max(1.0) as u32;
        self.perf
            .predict(&PerfQuery {
                freq,
                batch,
                prefill_tokens: prefill.round() as u32,
                decode_tokens: batch,
                kv_tokens: (f64::from(batch) * (prompt + output / 2.0)).round() as u64,
            })
            .latency_s
    }

    /// The steady iteration time at `freq` and its batch for the load in `obs`, or `None` when
    /// the engine would not keep up: the batch outgrows the cap, the arriving prompts outgrow the
    /// iteration's token budget, or the fixed point does not settle (it only rises from zero, so
    /// an unsettled value would understate the time).
    fn steady_state(&self, freq: Mhz, obs: &Observation) -> Option<(f64, f64)> {
        let (rate, prompt, output) = self.load(obs);
        let floor = f64::from(obs.running.max(1));
        let budget = f64::from(self.c.token_budget);
        let mut t = 0.0;
        for _ in 0..40 {
            let batch = (rate * output * t).max(floor);
            let prefill = rate * prompt * t;
            if batch > f64::from(self.cap) || batch + prefill > budget {
                return None;
            }
            let next = self.iteration_s(freq, batch, prefill, prompt, output);
            if (next - t).abs() < 1e-4 * next {
                return Some((next, batch));
            }
            t = next;
        }
        None
    }

    /// Whether `freq` meets every target for the load in `obs`, by the model.
    fn meets(&self, freq: Mhz, obs: &Observation) -> bool {
        let Some((t, batch)) = self.steady_state(freq, obs) else { return false };
        let (rate, prompt, output) = self.load(obs);
        // A new prompt's chunks get what the decode tokens and the other arrivals leave.
        let leftover = (f64::from(self.c.token_budget) - batch - rate * prompt * t).max(1.0);
        let ttft = obs.oldest_wait_s + (prompt / leftover).ceil() * t;
        let tpot_ok = self.slo.tpot_s.is_none_or(|target| t <= self.c.tpot_margin * target);
        let ttft_ok = self.slo.ttft_s.is_none_or(|target| ttft <= self.c.ttft_margin * target);
        // A backlog at the cap must drain within the first-token budget left to its oldest
        // request: the clock's throughput with the cap full, beyond the arrivals, must clear it.
        let drains = obs.queue_len == 0 || {
            let cap = f64::from(self.cap);
            let full_s = self.iteration_s(freq, cap, rate * prompt * t, prompt, output);
            let surplus_rps = cap / (output * full_s) - rate;
            let budget_s =
                self.slo.ttft_s.map_or(self.slo.latency_budget_s(output), |t| self.c.ttft_margin * t);
            surplus_rps * (budget_s - obs.oldest_wait_s).max(0.5) >= f64::from(obs.queue_len)
        };
        let e2e_ok = self.slo.e2e_s.is_none_or(|target| ttft + output * t <= self.c.tpot_margin * target);
        tpot_ok && ttft_ok && e2e_ok && drains
    }
}

impl Policy for SloMpc {
    fn name(&self) -> &str {
        "slo-mpc"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let top = self.space.max_freq();
        let missing = obs.completed >= 20 && obs.recent_slo_attainment < self.c.panic_attainment;
        let wanted = if missing {
            top
        } else {
            self.space.freqs().iter().copied().find(|&f| self.meets(f, obs)).unwrap_or(top)
        };
        // Up at once; down only after the clock has held.
        let freq =
            if wanted < obs.freq && obs.since_last_switch_s < self.c.hold_s { obs.freq } else { wanted };
        Action { freq: self.space.nearest_freq(freq), batch: self.cap }
    }
}

register!(
    "slo-mpc",
    "per-token-SLO clock from the steady state arrivals imply (prefill sharing iterations); engine's cap",
    SloMpc,
    SloMpcConfig
);
