//! The power model's pieces shared by the power sections: steady continuous batching, static
//! batches iteration by iteration, and the fit of the power constants.

use std::fmt::Write as _;

use energyllm_core::Mhz;
use energyllm_engines::{IterationCost, IterationModel, IterationWork, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::optimize::nelder_mead;

use super::vidur::decode_work;

/// A steady state of continuous batching: `batch` requests decoding at a mean context, with new
/// prompts prefilled at the rate old requests finish.
pub(super) fn steady_iteration(
    timing: &IterationModel,
    model: &ModelSpec,
    gpu: &GpuSpec,
    freq: Mhz,
    batch: f64,
    input: f64,
    output: f64,
) -> IterationCost {
    let context = input + output / 2.0;
    let new_per_iter = batch / output;
    let prefill_tokens = new_per_iter * input;
    let work = IterationWork {
        decode_tokens: batch.round() as u64,
        prefill_tokens: prefill_tokens.round() as u64,
        kv_read_tokens: (batch * context).round() as u64,
        attention_pairs: batch * (context + 1.0) + prefill_tokens * input / 2.0,
        sampled_sequences: (batch + new_per_iter).round() as u64,
    };
    timing.cost(model, gpu, freq, &work)
}

pub(super) fn power_of(gpu: &GpuSpec, freq: Mhz, cost: &IterationCost) -> f64 {
    gpu.power_w(freq, cost.load)
}

/// A static batch of identical requests, iteration by iteration (as the simulated engine runs
/// it with its default token budget).
pub(super) fn static_batch(
    timing: &IterationModel,
    model: &ModelSpec,
    gpu: &GpuSpec,
    freq: Mhz,
    batch: u64,
    input: u64,
    output: u64,
) -> Vec<IterationCost> {
    const BUDGET: u64 = 8192;
    let mut out = Vec::new();
    let mut done = vec![0u64; batch as usize];
    // Prefill: requests in order, chunked to the token budget.
    let mut left: u64 = batch * input;
    while left > 0 {
        let chunk = left.min(BUDGET);
        let first = (batch * input - left) / input.max(1);
        let mut work = IterationWork { prefill_tokens: chunk, ..Default::default() };
        let mut remaining = chunk;
        let mut r = first as usize;
        while remaining > 0 && r < done.len() {
            let take = (input - done[r]).min(remaining);
            let (s, c) = (done[r] as f64, take as f64);
            work.attention_pairs += c * s + c * (c + 1.0) / 2.0;
            work.kv_read_tokens += done[r];
            done[r] += take;
            if done[r] == input {
                work.sampled_sequences += 1;
            }
            remaining -= take;
            r += 1;
        }
        out.push(timing.cost(model, gpu, freq, &work));
        left -= chunk;
    }
    for k in 1..output {
        out.push(timing.cost(model, gpu, freq, &decode_work(batch, input + k)));
    }
    out
}

pub(super) fn trace_energy(gpu: &GpuSpec, freq: Mhz, trace: &[IterationCost]) -> (f64, f64) {
    trace.iter().fold((0.0, 0.0), |(e, t), c| (e + power_of(gpu, freq, c) * c.time_s, t + c.time_s))
}

pub(super) const POWER_NAMES: [&str; 7] =
    ["idle_power_w", "active_w", "mem_w", "core_w", "sm_floor", "v_min_rel", "v_knee_mhz"];
pub(super) const POWER_STEPS: [f64; 7] = [10.0, 30.0, 30.0, 50.0, 0.1, 0.05, 50.0];

pub(super) fn power_vector(gpu: &GpuSpec) -> [f64; 7] {
    let p = &gpu.power;
    [gpu.idle_power_w, p.active_w, p.mem_w, p.core_w, p.sm_floor, p.v_min_rel, f64::from(p.v_knee_mhz)]
}

/// Sets the power constants from `x`; with `fixed_idle`, the idle power stays as shipped (a
/// steady-state sweep never sees an idle GPU, so it cannot tell idle from active power).
pub(super) fn set_power(gpu: &mut GpuSpec, x: &[f64], fixed_idle: bool) {
    if !fixed_idle {
        gpu.idle_power_w = x[0].clamp(5.0, gpu.tdp_w * 0.5);
    }
    gpu.power.active_w = x[1].max(0.0);
    gpu.power.mem_w = x[2].max(0.0);
    gpu.power.core_w = x[3].max(0.0);
    gpu.power.sm_floor = x[4].clamp(0.0, 1.0);
    gpu.power.v_min_rel = x[5].clamp(0.3, 1.0);
    gpu.power.v_knee_mhz = x[6].clamp(f64::from(gpu.min_freq_mhz), f64::from(gpu.max_freq_mhz)) as u32;
}

/// Fits the power constants whose `free` flag is set, holding the others at their shipped values.
pub(super) fn fit_power(
    gpu: &GpuSpec,
    free: [bool; 7],
    objective: &mut dyn FnMut(&GpuSpec) -> f64,
) -> (GpuSpec, f64) {
    let base = power_vector(gpu);
    let idx: Vec<usize> = (0..7).filter(|&i| free[i]).collect();
    let expand = |x: &[f64]| {
        let mut full = base;
        for (k, &i) in idx.iter().enumerate() {
            full[i] = x[k];
        }
        full
    };
    let mut f = |x: &[f64]| {
        let mut g = gpu.clone();
        set_power(&mut g, &expand(x), !free[0]);
        objective(&g)
    };
    let x0: Vec<f64> = idx.iter().map(|&i| base[i]).collect();
    let steps: Vec<f64> = idx.iter().map(|&i| POWER_STEPS[i]).collect();
    let (x, v) = nelder_mead(&mut f, &x0, &steps, 6000);
    let mut g = gpu.clone();
    set_power(&mut g, &expand(&x), !free[0]);
    (g, v)
}

/// The sensitivity rows of a power fit (see [`super::sensitivity_table`]): each free constant
/// held at ×0.5 and ×2 of its fitted value and at its shipped value, the other free ones refitted.
pub(super) fn power_profile(
    shipped: &GpuSpec,
    fitted: &GpuSpec,
    free: [bool; 7],
    objective: &mut dyn FnMut(&GpuSpec) -> f64,
) -> Vec<super::Sensitivity<'static>> {
    let shipped = power_vector(shipped);
    let base = power_vector(fitted);
    let idx: Vec<usize> = (0..7).filter(|&i| free[i]).collect();
    let mut f = |x: &[f64]| {
        let mut full = base;
        for (k, &i) in idx.iter().enumerate() {
            full[i] = x[k];
        }
        let mut g = fitted.clone();
        set_power(&mut g, &full, !free[0]);
        objective(&g)
    };
    let x: Vec<f64> = idx.iter().map(|&i| base[i]).collect();
    let steps: Vec<f64> = idx.iter().map(|&i| POWER_STEPS[i]).collect();
    let errors = crate::optimize::profile(&mut f, &x, &steps, &super::PROFILE_FACTORS, 3000);
    idx.iter()
        .enumerate()
        .zip(errors)
        .map(|((k, &i), at_factors)| super::Sensitivity {
            name: POWER_NAMES[i],
            shipped: shipped[i],
            refit: base[i],
            at_factors,
            at_shipped: crate::optimize::held_at(&mut f, &x, &steps, k, shipped[i], 3000),
        })
        .collect()
}

pub(super) fn power_table(s: &mut String, shipped: &GpuSpec, fitted: &GpuSpec, fit_mape: f64) {
    let _ = writeln!(
        s,
        "Refit of the power model (MAPE {fit_mape:.2}%):\n\n| constant | shipped | refit |\n|---|---:|---:|"
    );
    for ((name, a), b) in POWER_NAMES.iter().zip(power_vector(shipped)).zip(power_vector(fitted)) {
        let _ = writeln!(s, "| {name} | {a:.3} | {b:.3} |");
    }
    s.push('\n');
}
