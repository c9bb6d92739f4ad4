//! Batch-level forecasts from an iteration-level [`PerfModel`].

use energyllm_core::{Error, Mhz, Observation, PerfModel, PerfQuery, PolicyContext};
use std::sync::Arc;

/// What running one batch is expected to cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchForecast {
    /// Seconds until the batch's last request finishes.
    pub latency_s: f64,
    /// GPU energy of the batch, in joules.
    pub energy_j: f64,
    /// Seconds per decode iteration.
    pub iteration_s: f64,
}

/// Forecasts a batch of `batch` requests with `input` prompt tokens and `output` answer tokens
/// each: one prefill iteration, then `output − 1` decode iterations at the mean context.
pub fn batch(perf: &dyn PerfModel, freq: Mhz, batch: u32, input: f64, output: f64) -> BatchForecast {
    let b = batch.max(1);
    let (input, output) = (input.max(1.0), output.max(1.0));
    let prefill = perf.predict(&PerfQuery {
        freq,
        batch: b,
        prefill_tokens: (f64::from(b) * input).round() as u32,
        decode_tokens: 0,
        kv_tokens: 0,
    });
    let decode = perf.predict(&PerfQuery {
        freq,
        batch: b,
        prefill_tokens: 0,
        decode_tokens: b,
        kv_tokens: (f64::from(b) * (input + output / 2.0)).round() as u64,
    });
    let steps = output - 1.0;
    BatchForecast {
        latency_s: prefill.latency_s + steps * decode.latency_s,
        energy_j: prefill.energy_j() + steps * decode.energy_j(),
        iteration_s: decode.latency_s,
    }
}

/// The mean prompt of the queued requests, or `fallback` when the queue is empty.
pub fn mean_queued_prompt(obs: &Observation, fallback: f64) -> f64 {
    if obs.queue_len == 0 {
        fallback
    } else {
        obs.queued_prompt_tokens as f64 / f64::from(obs.queue_len)
    }
}

/// The context's performance model, or an error naming the policy that needs one.
pub fn require(ctx: &PolicyContext, policy: &str) -> Result<Arc<dyn PerfModel>, Error> {
    ctx.perf_model.clone().ok_or_else(|| Error::PluginConfig {
        kind: "policy",
        name: policy.to_owned(),
        reason: "this policy predicts latency and needs a performance model, and none was given \
                 (the simulator provides one; a live deployment loads one with energyllm-models)"
            .into(),
    })
}
