//! One prediction of each model family (the budget is 2 µs: a policy may ask hundreds per
//! decision). Run with `cargo bench -p energyllm-models --bench predict`.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use energyllm_core::{Mhz, PerfModel, PerfQuery};
use energyllm_models::{
    GbtPerfParams, IterationProfileRow, IterationRateParams, WilkinsParams, WilkinsSample,
};

/// A deterministic simulator-like iteration table (same shape as the tests' synthetic rows).
fn rows(n: usize) -> Vec<IterationProfileRow> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |k: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % k
    };
    (0..n)
        .map(|_| {
            let freq = 705 + 15 * next(48) as u32;
            let batch = 1 + next(128) as u32;
            let prefill = if next(10) < 3 { 1 + next(4096) as u32 } else { 0 };
            let kv = u64::from(batch) * (16 + next(4000));
            let f = f64::from(freq) / 1410.0;
            let compute = f64::from(prefill + batch) * 2.2e-5 / f;
            let memory = (0.0105 + kv as f64 * 1.3e-7) * (850.0 / f64::from(freq)).max(1.0);
            let latency_s = 0.003 + (compute * compute + memory * memory).sqrt();
            let power_w = 55.0
                + 40.0 * (memory / latency_s).min(1.0)
                + f * f * (60.0 + 200.0 * (compute / latency_s).min(1.0));
            IterationProfileRow {
                freq_mhz: freq,
                batch_size: batch,
                prefill_tokens: prefill,
                decode_tokens: batch,
                kv_tokens: kv,
                latency_s,
                power_w,
                energy_j: latency_s * power_w,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = rows(20_000);
    let queries: Vec<PerfQuery> = data
        .iter()
        .take(256)
        .map(|r| PerfQuery {
            freq: Mhz(r.freq_mhz),
            batch: r.batch_size,
            prefill_tokens: r.prefill_tokens,
            decode_tokens: r.decode_tokens,
            kv_tokens: r.kv_tokens,
        })
        .collect();
    let Ok(gbt) = GbtPerfParams::default().fit(&data) else { panic!("GBT fit failed") };
    let mut i = 0usize;
    c.bench_function("gbt_perf_model_predict (latency + power, 2×80 trees, depth 6)", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(gbt.predict(black_box(&queries[i])))
        })
    });
    let samples: Vec<WilkinsSample> = data
        .iter()
        .map(|r| WilkinsSample {
            input_tokens: f64::from(r.prefill_tokens + 1),
            output_tokens: f64::from(r.batch_size),
            energy_j: r.energy_j,
            runtime_s: r.latency_s,
        })
        .collect();
    let Ok(wilkins) = WilkinsParams::default().fit(&samples, 1) else { panic!("Wilkins fit failed") };
    c.bench_function("wilkins_predict (energy + runtime)", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(wilkins.predict(black_box(&queries[i])))
        })
    });
    let Ok(rate) = IterationRateParams::default().fit(&data) else { panic!("rate fit failed") };
    c.bench_function("iteration_rate_predict (80 trees)", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            let q = &queries[i];
            black_box(rate.iterations_per_s(q.freq, q.batch, q.kv_tokens))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
