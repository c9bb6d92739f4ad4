//! The profiler: sweeps clocks, batch sizes and token configurations through any [`Engine`] and
//! [`FrequencyActuator`], and writes what the performance models are fitted on.
//!
//! Two levels:
//!
//! - **Batch level** ([`profile_batches`]): for each clock, lock it with the actuator, run one
//!   warm-up request (which also absorbs the clock-switch stall), then run each batch to
//!   completion `repeats` times and record latency from the request timestamps and energy from
//!   the actuator's energy counter (or, without one, from power read before and after). Only
//!   the two traits are used, so the same sweep profiles the simulator or a live engine on a
//!   real GPU. The per-iteration columns of [`BatchProfileRow`] (TTFT, TPOT, iterations, mean
//!   iteration time) are derived from the timestamps every engine reports.
//! - **Iteration level** ([`sample_iterations`]): the `Engine` trait reports requests, not
//!   iterations, so the iteration-level profile the tree models need is sampled from the
//!   simulator's own iteration model ([`IterationModel::cost`] and the GPU power model) over
//!   randomly drawn iterations shaped like the engine's (decode steps over varied contexts,
//!   prefill chunks within the token budget, mixed iterations). A live engine would need an
//!   iteration log (vLLM's detailed traces) to produce the same file; that is future work.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use energyllm_core::{
    ActuatorError, Engine, EngineError, FrequencyActuator, Mhz, Request, RequestId, RequestRecord,
    RequestStatus, Timestamp,
};
use energyllm_engines::{IterationModel, IterationWork, ModelSpec};
use energyllm_hw::GpuSpec;
use energyllm_models::{BatchProfileRow, IterationProfileRow};

/// Errors from profiling.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A sweep setting is out of range; the message names it.
    #[error("invalid profile setting: {0}")]
    Setting(String),
    /// The actuator refused a command (an unsupported clock lists the supported ones).
    #[error(transparent)]
    Actuator(#[from] ActuatorError),
    /// The engine failed a batch.
    #[error("engine failed a batch at {freq} MHz, batch {batch}: {source}")]
    Engine {
        /// Clock of the failed batch.
        freq: u32,
        /// Its size.
        batch: u32,
        /// What the engine said.
        source: EngineError,
    },
}

/// Prompt and output lengths of every request in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Output tokens.
    pub output_tokens: u32,
}

impl std::str::FromStr for TokenConfig {
    type Err = String;
    /// Parses `INPUTxOUTPUT`, e.g. `250x150`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, o) = s
            .trim()
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("token config `{s}` is not INPUTxOUTPUT (e.g. 250x150)"))?;
        let parse = |v: &str, what: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("token config `{s}`: {what} must be a positive integer"))
        };
        Ok(TokenConfig { input_tokens: parse(i, "input")?, output_tokens: parse(o, "output")? })
    }
}

/// What a batch-level sweep covers.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileSettings {
    /// Clocks, each one the actuator supports.
    pub freqs: Vec<Mhz>,
    /// Batch sizes.
    pub batch_sizes: Vec<u32>,
    /// Token configurations.
    pub token_configs: Vec<TokenConfig>,
    /// Runs of each (clock, batch, token config) point.
    pub repeats: u32,
}

impl ProfileSettings {
    /// Points in the sweep (batches to run, warm-ups not counted).
    pub fn points(&self) -> usize {
        self.freqs.len() * self.batch_sizes.len() * self.token_configs.len() * self.repeats as usize
    }

    fn validate(&self, supported: &[Mhz]) -> Result<(), ProfileError> {
        let bad = |s: String| Err(ProfileError::Setting(s));
        if self.freqs.is_empty() || self.batch_sizes.is_empty() || self.token_configs.is_empty() {
            return bad("freqs, batch sizes and token configs must each list at least one value".into());
        }
        if self.repeats == 0 {
            return bad("repeats must be ≥ 1".into());
        }
        if self.batch_sizes.contains(&0) {
            return bad("batch sizes must be ≥ 1".into());
        }
        if let Some(f) = self.freqs.iter().find(|f| !supported.contains(f)) {
            return Err(ProfileError::Actuator(ActuatorError::UnsupportedClock {
                requested: *f,
                supported: supported.to_vec(),
            }));
        }
        Ok(())
    }
}

/// Runs a future to completion on this thread. The simulator's futures are ready at once; a
/// live engine's would park the thread until its waker fires. This keeps the profiler free of
/// an async runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

fn requests(next_id: &mut u64, n: u32, tokens: TokenConfig) -> Vec<Request> {
    (0..n)
        .map(|_| {
            *next_id += 1;
            Request {
                id: RequestId(*next_id),
                arrival: Timestamp::ZERO,
                input_tokens: tokens.input_tokens,
                output_tokens: tokens.output_tokens,
            }
        })
        .collect()
}

/// Sweeps `settings` on `engine` with `actuator` setting the clock; `progress(done, total)` is
/// called after each batch. The actuator is reset to its default clock at the end, on success
/// or failure.
pub fn profile_batches(
    engine: &mut dyn Engine,
    actuator: &mut dyn FrequencyActuator,
    settings: &ProfileSettings,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<BatchProfileRow>, ProfileError> {
    let supported = actuator.supported_frequencies()?;
    settings.validate(&supported)?;
    let result = sweep(engine, actuator, settings, &mut progress);
    let reset = actuator.reset();
    let rows = result?;
    reset?;
    Ok(rows)
}

fn sweep(
    engine: &mut dyn Engine,
    actuator: &mut dyn FrequencyActuator,
    settings: &ProfileSettings,
    progress: &mut impl FnMut(usize, usize),
) -> Result<Vec<BatchProfileRow>, ProfileError> {
    let total = settings.points();
    let mut rows = Vec::with_capacity(total);
    let mut next_id = 0u64;
    let engine_name = engine.name().to_owned();
    let actuator_name = actuator.name().to_owned();
    for &freq in &settings.freqs {
        actuator.set_frequency(freq)?;
        let warmup = requests(&mut next_id, 1, TokenConfig { input_tokens: 16, output_tokens: 2 });
        block_on(engine.run_batch(&warmup)).map_err(|source| ProfileError::Engine {
            freq: freq.0,
            batch: 1,
            source,
        })?;
        for &batch in &settings.batch_sizes {
            for &tokens in &settings.token_configs {
                for repeat in 0..settings.repeats {
                    let reqs = requests(&mut next_id, batch, tokens);
                    let energy_before = actuator.energy_j()?;
                    let power_before = actuator.power_w()?;
                    let records = block_on(engine.run_batch(&reqs))
                        .map_err(|source| ProfileError::Engine { freq: freq.0, batch, source })?;
                    let energy_after = actuator.energy_j()?;
                    let power_after = actuator.power_w()?;
                    let mut row = summarize(freq, batch, repeat, &records);
                    let (energy_j, source) = match (energy_before, energy_after) {
                        (Some(a), Some(b)) => (b - a, "counter"),
                        // No counter: the mean of two power readings, a rough figure for
                        // backends that have only instantaneous power.
                        _ => (0.5 * (power_before + power_after) * row.total_latency_sec, "power-samples"),
                    };
                    row.energy_j = energy_j.max(0.0);
                    row.avg_gpu_power_watts =
                        if row.total_latency_sec > 0.0 { row.energy_j / row.total_latency_sec } else { 0.0 };
                    let out_tokens: u64 = records.iter().map(|r| u64::from(r.output_tokens)).sum();
                    row.energy_per_output_token_j =
                        (out_tokens > 0).then(|| row.energy_j / out_tokens as f64);
                    row.engine = engine_name.clone();
                    row.actuator = actuator_name.clone();
                    row.energy_source = source.into();
                    rows.push(row);
                    progress(rows.len(), total);
                }
            }
        }
    }
    Ok(rows)
}

/// A row from one batch's records: EnergyLLM's columns (energy and power are filled by the
/// caller) and the per-iteration columns derived from the timestamps.
fn summarize(freq: Mhz, batch: u32, repeat: u32, records: &[RequestRecord]) -> BatchProfileRow {
    let done: Vec<&RequestRecord> = records.iter().filter(|r| r.status == RequestStatus::Completed).collect();
    let n = done.len().max(1) as f64;
    let start = records.iter().map(|r| r.dispatch_s).fold(f64::INFINITY, f64::min);
    let end = records.iter().map(|r| r.completion_s).fold(f64::NEG_INFINITY, f64::max);
    let latency = if end > start { end - start } else { 0.0 };
    let tpots: Vec<f64> = done.iter().filter_map(|r| r.tpot_s()).collect();
    let iterations = done.iter().map(|r| u64::from(r.output_tokens)).max().unwrap_or(0);
    let out_tokens: u64 = done.iter().map(|r| u64::from(r.output_tokens)).sum();
    BatchProfileRow {
        freq_mhz: freq.0,
        batch_size: batch,
        avg_input_len: done.iter().map(|r| f64::from(r.input_tokens)).sum::<f64>() / n,
        avg_output_len: out_tokens as f64 / n,
        total_latency_sec: latency,
        avg_gpu_power_watts: 0.0,
        energy_j: 0.0,
        repeat,
        completed: Some(done.len() as u32),
        rejected: (records.len() - done.len()) as u32,
        mean_ttft_s: (!done.is_empty())
            .then(|| done.iter().map(|r| r.first_token_s - r.dispatch_s).sum::<f64>() / n),
        mean_tpot_s: (!tpots.is_empty()).then(|| tpots.iter().sum::<f64>() / tpots.len() as f64),
        iterations: (iterations > 0).then_some(iterations),
        mean_iteration_s: (iterations > 0).then(|| latency / iterations as f64),
        output_tokens_per_s: (latency > 0.0).then(|| out_tokens as f64 / latency),
        energy_per_output_token_j: None,
        engine: String::new(),
        actuator: String::new(),
        energy_source: String::new(),
    }
}

/// The simulator pieces the iteration-level sampler evaluates.
#[derive(Clone, Debug)]
pub struct IterationSampler {
    /// Model served.
    pub model: ModelSpec,
    /// GPU it runs on (one of `model.tensor_parallel` in lockstep).
    pub gpu: GpuSpec,
    /// Engine-side iteration constants.
    pub timing: IterationModel,
    /// Token budget of one iteration (vLLM's `max_num_batched_tokens`).
    pub max_batched_tokens: u32,
    /// Largest batch drawn.
    pub max_batch: u32,
    /// Longest context a decoding request holds, in tokens.
    pub max_context: u32,
}

/// Log-uniform integer in `lo..=hi`: iteration shapes span orders of magnitude, and a uniform
/// draw would almost never produce the small batches and short contexts that are common.
fn log_uniform(rng: &mut ChaCha8Rng, lo: u32, hi: u32) -> u32 {
    let (lo, hi) = (lo.max(1), hi.max(lo.max(1)));
    let v = rng.gen_range(f64::from(lo).ln()..=f64::from(hi).ln()).exp().round();
    (v as u32).clamp(lo, hi)
}

/// Draws `n` iterations at clocks from `freqs` and costs them with the simulator's models.
///
/// Each iteration is decode-only (60 %), prefill-only (10 %) or mixed (30 %). Decoding requests
/// hold log-uniform contexts; prefill chunks split what is left of the token budget and may
/// start part-way into their prompt (chunked prefill). The features recorded are those a
/// policy can know (batch, prefill, decode and KV tokens); the attention work behind them
/// varies with how the contexts are spread, which is the noise a model of these features faces
/// on a real engine too.
pub fn sample_iterations(
    sampler: &IterationSampler,
    freqs: &[Mhz],
    n: usize,
    seed: u64,
) -> Result<Vec<IterationProfileRow>, ProfileError> {
    if freqs.is_empty() || n == 0 {
        return Err(ProfileError::Setting("give at least one clock and one sample".into()));
    }
    if sampler.max_batch == 0 || sampler.max_batched_tokens < 2 || sampler.max_context < 16 {
        return Err(ProfileError::Setting(
            "max_batch must be ≥ 1, max_batched_tokens ≥ 2 and max_context ≥ 16".into(),
        ));
    }
    let supported = sampler.gpu.supported_freqs();
    if let Some(f) = freqs.iter().find(|f| !supported.contains(f)) {
        return Err(ProfileError::Actuator(ActuatorError::UnsupportedClock { requested: *f, supported }));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gpus = f64::from(sampler.model.tensor_parallel.max(1));
    let budget = sampler.max_batched_tokens;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let freq = freqs[rng.gen_range(0..freqs.len())];
        let kind: f64 = rng.gen();
        let (decoding, prefilling) = if kind < 0.6 {
            (log_uniform(&mut rng, 1, sampler.max_batch.min(budget - 1)), 0)
        } else if kind < 0.7 {
            (0, rng.gen_range(1..=4u32))
        } else {
            (log_uniform(&mut rng, 1, sampler.max_batch.min(budget / 2)), rng.gen_range(1..=2u32))
        };
        let mut work = IterationWork::default();
        for _ in 0..decoding {
            let ctx = u64::from(log_uniform(&mut rng, 16, sampler.max_context));
            work.decode_tokens += 1;
            work.kv_read_tokens += ctx;
            work.attention_pairs += (ctx + 1) as f64;
            work.sampled_sequences += 1;
        }
        let mut left = budget - decoding;
        let mut prefilled = 0;
        for i in 0..prefilling {
            let share = left / (prefilling - i);
            if share == 0 {
                break;
            }
            prefilled += 1;
            let chunk = log_uniform(&mut rng, 1, share);
            // A quarter of the chunks continue a prompt begun in an earlier iteration.
            let start = if rng.gen_bool(0.25) { u64::from(rng.gen_range(0..=budget)) } else { 0 };
            let c = f64::from(chunk);
            work.prefill_tokens += u64::from(chunk);
            work.kv_read_tokens += start;
            work.attention_pairs += c * start as f64 + c * (c + 1.0) / 2.0;
            // Most chunks end their prompt and sample its first token.
            if rng.gen_bool(0.7) {
                work.sampled_sequences += 1;
            }
            left -= chunk;
        }
        if work.prefill_tokens + work.decode_tokens == 0 {
            continue;
        }
        let cost = sampler.timing.cost(&sampler.model, &sampler.gpu, freq, &work);
        let power_w = sampler.gpu.power_w(freq, cost.load) * gpus;
        rows.push(IterationProfileRow {
            freq_mhz: freq.0,
            batch_size: decoding + prefilled,
            prefill_tokens: work.prefill_tokens as u32,
            decode_tokens: work.decode_tokens as u32,
            kv_tokens: work.kv_read_tokens,
            latency_s: cost.time_s,
            power_w,
            energy_j: power_w * cost.time_s,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_configs_parse_and_refuse_garbage() {
        assert_eq!(
            "250x150".parse::<TokenConfig>().unwrap(),
            TokenConfig { input_tokens: 250, output_tokens: 150 }
        );
        for bad in ["250", "0x5", "ax5", "5x"] {
            assert!(bad.parse::<TokenConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn iteration_samples_are_reproducible_and_sane() {
        let sampler = sampler();
        let freqs = [Mhz(810), Mhz(1410)];
        let a = sample_iterations(&sampler, &freqs, 300, 1).unwrap();
        assert_eq!(a, sample_iterations(&sampler, &freqs, 300, 1).unwrap());
        assert!(a.len() > 290);
        for r in &a {
            assert!(r.latency_s > 0.0 && r.power_w > 0.0, "{r:?}");
            assert!(r.prefill_tokens + r.decode_tokens <= 8192);
            assert!((r.energy_j - r.latency_s * r.power_w).abs() < 1e-9);
        }
        let e = sample_iterations(&sampler, &[Mhz(811)], 1, 0).unwrap_err().to_string();
        assert!(e.contains("811"), "{e}");
    }

    fn sampler() -> IterationSampler {
        IterationSampler {
            model: ModelSpec::builtin("llama-3.1-8b").unwrap(),
            gpu: GpuSpec::builtin("a100-40gb").unwrap(),
            timing: IterationModel::default(),
            max_batched_tokens: 8192,
            max_batch: 256,
            max_context: 4096,
        }
    }

    /// The accuracy target, on whatever constants the simulator has today.
    #[test]
    fn boosted_trees_reach_r2_098_on_simulator_profiles() {
        use energyllm_models::profile::iteration_dataset;
        use energyllm_models::{cross_validate, GbtPerfParams, IterationTarget};
        let freqs: Vec<Mhz> = energyllm_core::PAPER_FREQS_MHZ.iter().map(|&f| Mhz(f)).collect();
        let rows = sample_iterations(&sampler(), &freqs, 4000, 11).unwrap();
        let params = GbtPerfParams::default();
        for (target, p) in
            [(IterationTarget::Latency, &params.latency), (IterationTarget::Power, &params.power)]
        {
            let cv = cross_validate(p, &iteration_dataset(&rows, target).unwrap(), 4, 3).unwrap();
            assert!(cv.model.r2 >= 0.98, "{target:?}: {:?}", cv.model);
            assert!(
                cv.model.mape < cv.baseline.mape / 5.0,
                "{target:?}: {:?} vs {:?}",
                cv.model,
                cv.baseline
            );
        }
    }

    #[test]
    fn a_sweep_through_the_traits_measures_the_simulated_pair() {
        use energyllm_core::BatchingMode;
        use energyllm_engines::{SimEngineConfig, SimServer};
        use energyllm_hw::{SharedSimGpu, SimGpu};
        let model = ModelSpec::builtin("llama-3.1-8b").unwrap();
        let shared = SharedSimGpu::new(SimGpu::with_count(
            GpuSpec::builtin("a100-40gb").unwrap(),
            model.tensor_parallel,
        ));
        let config = SimEngineConfig { batching: BatchingMode::Static, ..SimEngineConfig::default() };
        let mut engine = SimServer::new(config, model, shared.clone()).unwrap();
        let mut actuator = shared.clone();
        let default_clock = actuator.current_frequency().unwrap();
        let settings = ProfileSettings {
            freqs: vec![Mhz(810), Mhz(1410)],
            batch_sizes: vec![1, 16],
            token_configs: vec![TokenConfig { input_tokens: 128, output_tokens: 32 }],
            repeats: 2,
        };
        let mut calls = 0;
        let rows = profile_batches(&mut engine, &mut actuator, &settings, |_, _| calls += 1).unwrap();
        assert_eq!((rows.len(), calls), (8, 8));
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
        for r in &rows {
            assert_eq!((r.completed, r.rejected, r.iterations), (Some(r.batch_size), 0, Some(32)));
            assert_eq!(r.energy_source, "counter");
            assert!(close(r.energy_j, r.avg_gpu_power_watts * r.total_latency_sec), "{r:?}");
            assert!(r.mean_tpot_s.unwrap() > 0.0 && r.mean_ttft_s.unwrap() > 0.0);
        }
        // Repeats of a point agree (the warm-up took the clock-switch stall).
        for pair in rows.chunks(2) {
            assert!(
                close(pair[0].energy_j, pair[1].energy_j)
                    && close(pair[0].total_latency_sec, pair[1].total_latency_sec)
            );
        }
        // A lower clock draws less power; the actuator is back at its default clock.
        let at = |f: u32, b: u32| rows.iter().find(|r| r.freq_mhz == f && r.batch_size == b).unwrap();
        assert!(at(810, 16).avg_gpu_power_watts < at(1410, 16).avg_gpu_power_watts);
        assert_eq!(actuator.current_frequency().unwrap(), default_clock);
        let bad = ProfileSettings { freqs: vec![Mhz(811)], ..settings };
        let e = profile_batches(&mut engine, &mut actuator, &bad, |_, _| ()).unwrap_err().to_string();
        assert!(e.contains("811") && e.contains("1410"), "{e}");
    }
}
