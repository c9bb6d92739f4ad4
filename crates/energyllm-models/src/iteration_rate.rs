//! The iteration-rate predictor (throttLL'eM's idea): how many engine iterations per second the
//! GPU sustains at a clock, given the batch size and the KV-cache tokens the batch reads, and a
//! projection of batch size and KV use over the next iterations from the running requests.
//!
//! A decode iteration emits one token per running request, so iterations per second *is* the
//! per-request token rate (1 / TPOT). throttLL'eM picks the lowest clock whose projected rate
//! still meets the TPOT target; [`IterationRateModel::lowest_clock_meeting`] does that. The
//! projection steps forward iteration by iteration: each running request adds one KV token per
//! step and leaves the batch when its expected output is done, so both the batch and the KV use
//! change over the window, which is what makes a projection better than the current snapshot.

use serde::{Deserialize, Serialize};

use energyllm_core::Mhz;

use crate::dataset::{Dataset, Quantity};
use crate::gbt::{FittedGbt, GbtParams, TargetTransform};
use crate::profile::IterationProfileRow;
use crate::Error;

/// Names and units of the rate features, in the order the model reads them.
pub const RATE_FEATURES: [(&str, &str); 3] =
    [("freq_mhz", "MHz"), ("batch_size", "requests"), ("kv_tokens", "tokens")];

/// Hyperparameters of [`IterationRateModel`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IterationRateParams {
    /// The boosted regressor of decode-iteration time. Default: [`GbtParams::default`] on the
    /// log of the time.
    pub gbt: GbtParams,
}

impl Default for IterationRateParams {
    fn default() -> Self {
        IterationRateParams { gbt: GbtParams { transform: TargetTransform::Log, ..GbtParams::default() } }
    }
}

/// Decode-iteration time as boosted trees over (clock, batch, KV tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationRateModel {
    /// Iteration time, in seconds.
    pub iteration_time: FittedGbt,
}

/// A request being generated, as the projection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRequest {
    /// Tokens in its KV cache now (prompt plus tokens generated so far).
    pub context_tokens: u32,
    /// Tokens it is expected to generate still (an estimate: the true length is unknown).
    pub remaining_tokens: u32,
}

/// What the next iterations look like.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Iterations projected (fewer than the window when every request finishes sooner).
    pub iterations: u32,
    /// Their total time, in seconds.
    pub duration_s: f64,
    /// Mean rate over them, iterations per second (0 when nothing runs).
    pub iterations_per_s: f64,
    /// Mean batch size over them.
    pub mean_batch: f64,
    /// Largest KV-cache use over them, in tokens.
    pub peak_kv_tokens: u64,
    /// Tokens generated over them.
    pub tokens: u64,
}

/// Projects `running` forward by up to `window` iterations with `rate(batch, kv_tokens)` giving
/// iterations per second for one step.
pub fn project(rate: impl Fn(u32, u64) -> f64, running: &[RunningRequest], window: u32) -> Projection {
    let mut ctx: Vec<(u32, u64)> = running
        .iter()
        .filter(|r| r.remaining_tokens > 0)
        .map(|r| (r.remaining_tokens, u64::from(r.context_tokens)))
        .collect();
    ctx.sort_unstable_by_key(|&(rem, _)| rem);
    let mut active = ctx.len();
    let mut ctx_sum: u64 = ctx.iter().map(|&(_, c)| c).sum();
    let mut gone = 0usize;
    let (mut duration_s, mut batch_sum, mut peak_kv, mut tokens, mut steps) = (0.0, 0u64, 0u64, 0u64, 0u32);
    for s in 0..window {
        // Requests whose output is done by step s have left the batch.
        while gone < ctx.len() && ctx[gone].0 <= s {
            ctx_sum -= ctx[gone].1;
            active -= 1;
            gone += 1;
        }
        if active == 0 {
            break;
        }
        let kv = ctx_sum + u64::from(s) * active as u64;
        let ips = rate(active as u32, kv);
        if !(ips.is_finite() && ips > 0.0) {
            break;
        }
        duration_s += 1.0 / ips;
        batch_sum += active as u64;
        peak_kv = peak_kv.max(kv + active as u64);
        tokens += active as u64;
        steps += 1;
    }
    Projection {
        iterations: steps,
        duration_s,
        iterations_per_s: if duration_s > 0.0 { f64::from(steps) / duration_s } else { 0.0 },
        mean_batch: if steps > 0 { batch_sum as f64 / f64::from(steps) } else { 0.0 },
        peak_kv_tokens: peak_kv,
        tokens,
    }
}

/// The decode-only rows (no prefill tokens) of an iteration profile as (clock, batch, KV tokens)
/// → latency: what the rate model fits (and what a cross-validation of it should hold out).
pub fn decode_dataset(rows: &[IterationProfileRow]) -> Result<Dataset, Error> {
    let decode: Vec<&IterationProfileRow> = rows.iter().filter(|r| r.prefill_tokens == 0).collect();
    if decode.len() < 2 {
        return Err(Error::fit(
            "iteration-rate",
            format!("{} decode-only rows (prefill_tokens = 0): profile more decode iterations", decode.len()),
        ));
    }
    let records = decode
        .iter()
        .flat_map(|r| [f64::from(r.freq_mhz), f64::from(r.batch_size), r.kv_tokens as f64])
        .collect();
    let targets = decode.iter().map(|r| r.latency_s).collect();
    let features = RATE_FEATURES.iter().map(|(n, u)| Quantity::new(n, u)).collect();
    Dataset::new(features, Quantity::new("latency_s", "s"), records, targets)
}

impl IterationRateParams {
    /// Fits on the decode-only rows (no prefill tokens) of an iteration profile.
    pub fn fit(&self, rows: &[IterationProfileRow]) -> Result<IterationRateModel, Error> {
        let data = decode_dataset(rows)?;
        Ok(IterationRateModel { iteration_time: self.gbt.fit(&data)? })
    }
}

impl IterationRateModel {
    /// Iterations per second at `freq` for a decode batch of `batch` requests reading
    /// `kv_tokens` KV-cache tokens.
    #[inline]
    pub fn iterations_per_s(&self, freq: Mhz, batch: u32, kv_tokens: u64) -> f64 {
        let t = self.iteration_time.predict(&[f64::from(freq.0), f64::from(batch), kv_tokens as f64]);
        if t > 0.0 {
            1.0 / t
        } else {
            0.0
        }
    }

    /// Projects the running requests forward by up to `window` iterations at `freq`.
    pub fn project(&self, freq: Mhz, running: &[RunningRequest], window: u32) -> Projection {
        project(|b, kv| self.iterations_per_s(freq, b, kv), running, window)
    }

    /// The lowest of `freqs` whose projected rate over `window` iterations is at least
    /// `min_iterations_per_s` (1 / the TPOT target); `None` when none is.
    pub fn lowest_clock_meeting(
        &self,
        freqs: &[Mhz],
        running: &[RunningRequest],
        window: u32,
        min_iterations_per_s: f64,
    ) -> Option<Mhz> {
        let mut sorted = freqs.to_vec();
        sorted.sort_unstable();
        sorted.into_iter().find(|&f| {
            let p = self.project(f, running, window);
            p.iterations == 0 || p.iterations_per_s >= min_iterations_per_s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_tracks_batch_and_kv_by_hand() {
        // Two requests: A has 10 tokens of context and 2 to go, B 20 and 4 to go.
        // Step 0: batch 2, kv 30; step 1: batch 2, kv 32; step 2: only B, kv 22; step 3: kv 23.
        // With rate = 100 / batch iterations per second, times are 0.02, 0.02, 0.01, 0.01.
        let running = [
            RunningRequest { context_tokens: 10, remaining_tokens: 2 },
            RunningRequest { context_tokens: 20, remaining_tokens: 4 },
        ];
        let seen = std::cell::RefCell::new(Vec::new());
        let p = project(
            |b, kv| {
                seen.borrow_mut().push((b, kv));
                100.0 / f64::from(b)
            },
            &running,
            10,
        );
        assert_eq!(seen.into_inner(), vec![(2, 30), (2, 32), (1, 22), (1, 23)]);
        assert_eq!(p.iterations, 4);
        assert!((p.duration_s - 0.06).abs() < 1e-12);
        assert!((p.iterations_per_s - 4.0 / 0.06).abs() < 1e-9);
        assert_eq!((p.tokens, p.peak_kv_tokens), (6, 34));
        assert!((p.mean_batch - 1.5).abs() < 1e-12);
        // A short window stops early; nothing running projects nothing.
        assert_eq!(project(|_, _| 1.0, &running, 1).iterations, 1);
        assert_eq!(project(|_, _| 1.0, &[], 5).iterations_per_s, 0.0);
    }
}
