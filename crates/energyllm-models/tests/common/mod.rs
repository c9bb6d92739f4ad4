#![allow(dead_code)]
//! Synthetic iteration profiles shaped like the simulator's (no dependency on it: its constants
//! move, and these tests check the models, not the simulator).

use energyllm_models::IterationProfileRow;

/// A roofline-like iteration: compute ∝ tokens/clock, memory ∝ weights + KV, power rising with
/// clock and load. Deterministic in `n` and `seed`.
pub fn synthetic_rows(n: usize, seed: u64) -> Vec<IterationProfileRow> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move |k: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % k
    };
    (0..n)
        .map(|_| {
            let freq = 705 + 15 * next(48) as u32;
            let batch = 1 + next(128) as u32;
            let prefill = if next(10) < 3 { 1 + next(4096) as u32 } else { 0 };
            let decode = batch;
            let kv = u64::from(batch) * (16 + next(4000));
            let f = f64::from(freq) / 1410.0;
            let compute = f64::from(prefill + decode) * 2.2e-5 / f;
            let memory = (0.0105 + kv as f64 * 1.3e-7) * (850.0 / f64::from(freq)).max(1.0);
            let latency_s = 0.003 + (compute * compute + memory * memory).sqrt();
            let sm = (compute / latency_s).min(1.0);
            let power_w = 55.0 + 40.0 * (memory / latency_s).min(1.0) + f * f * (60.0 + 200.0 * sm);
            IterationProfileRow {
                freq_mhz: freq,
                batch_size: batch,
                prefill_tokens: prefill,
                decode_tokens: decode,
                kv_tokens: kv,
                latency_s,
                power_w,
                energy_j: latency_s * power_w,
            }
        })
        .collect()
}
