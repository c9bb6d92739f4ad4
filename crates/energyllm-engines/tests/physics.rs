//! The shipped profiles obey the physics the simulator relies on (no calibration data needed).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use energyllm_core::Mhz;
use energyllm_engines::{IterationModel, IterationWork, ModelSpec};
use energyllm_hw::{GpuSpec, Load};
use proptest::prelude::*;

fn gpus() -> Vec<GpuSpec> {
    GpuSpec::builtin_names().iter().map(|n| GpuSpec::builtin(n).unwrap()).collect()
}

fn models() -> Vec<ModelSpec> {
    ModelSpec::builtin_names().iter().map(|n| ModelSpec::builtin(n).unwrap()).collect()
}

fn decode(batch: u64, context: u64) -> IterationWork {
    IterationWork {
        decode_tokens: batch,
        kv_read_tokens: batch * context,
        attention_pairs: (batch * (context + 1)) as f64,
        sampled_sequences: batch,
        ..Default::default()
    }
}

#[test]
fn every_shipped_profile_loads() {
    assert!(gpus().len() >= 4 && models().len() >= 5);
}

proptest! {
    #[test]
    fn iteration_time_never_rises_with_clock(
        gpu_i in 0usize..4, model_i in 0usize..5, prefill in 0u64..8192, batch in 0u64..256, context in 0u64..4096,
    ) {
        let (gpu, model) = (&gpus()[gpu_i], &models()[model_i]);
        let mut work = decode(batch, context);
        work.prefill_tokens = prefill;
        work.attention_pairs += (prefill * (prefill + 1) / 2) as f64;
        prop_assume!(prefill + batch > 0);
        let timing = IterationModel::default();
        let mut last = f64::INFINITY;
        for f in gpu.supported_freqs() {
            let t = timing.cost(model, gpu, f, &work).time_s;
            prop_assert!(t <= last * (1.0 + 1e-12), "{} at {f}: {t} > {last}", gpu.name);
            last = t;
        }
    }

    #[test]
    fn power_never_falls_with_clock_or_load_and_stays_under_tdp(
        gpu_i in 0usize..4, sm in 0.0f64..1.0, mem in 0.0f64..1.0, active in 0.0f64..1.0, more in 0.0f64..0.5,
    ) {
        let gpu = &gpus()[gpu_i];
        let load = Load { sm, mem, active };
        let mut last = 0.0;
        for f in gpu.supported_freqs() {
            let p = gpu.power_w(f, load);
            prop_assert!(p >= last - 1e-9 && p <= gpu.tdp_w + 1e-9);
            prop_assert!(p >= gpu.idle_power_w);
            for heavier in [
                Load { sm: (sm + more).min(1.0), ..load },
                Load { mem: (mem + more).min(1.0), ..load },
                Load { active: (active + more).min(1.0), ..load },
            ] {
                prop_assert!(gpu.power_w(f, heavier) >= p - 1e-9);
            }
            last = p;
        }
    }
}

#[test]
fn decode_is_less_clock_sensitive_than_prefill() {
    let timing = IterationModel::default();
    for gpu in gpus() {
        for model in models() {
            let top = Mhz(gpu.max_freq_mhz);
            let low = Mhz(gpu.max_freq_mhz / 2 / 15 * 15);
            let prefill = IterationWork {
                prefill_tokens: 4096,
                attention_pairs: 4096.0 * 4097.0 / 2.0,
                sampled_sequences: 1,
                ..Default::default()
            };
            let slowdown = |w: &IterationWork| {
                timing.cost(&model, &gpu, low, w).time_s / timing.cost(&model, &gpu, top, w).time_s
            };
            let (p, d) = (slowdown(&prefill), slowdown(&decode(8, 512)));
            assert!(d < p, "{} {}: decode ×{d:.2} vs prefill ×{p:.2}", gpu.name, model.name);
            assert!(p > 1.3, "{} {}: prefill should be mostly compute-bound, ×{p:.2}", gpu.name, model.name);
        }
    }
}

#[test]
fn the_energy_optimal_decode_clock_lies_strictly_inside_the_range() {
    let timing = IterationModel::default();
    for gpu in gpus() {
        let model = ModelSpec::builtin("llama-3.1-8b").unwrap();
        let freqs = gpu.supported_freqs();
        let energy = |f: Mhz| {
            let c = timing.cost(&model, &gpu, f, &decode(8, 1024));
            gpu.power_w(f, c.load) * c.time_s
        };
        let best = freqs.iter().copied().min_by(|a, b| energy(*a).total_cmp(&energy(*b))).unwrap();
        assert!(
            best > freqs[0] && best < freqs[freqs.len() - 1],
            "{}: optimum at the edge, {best}",
            gpu.name
        );
    }
}

/// The H200 is the H100's die with more and faster memory: memory-bound decode runs faster, a
/// compute-bound prefill does not, and it holds more of the KV cache.
#[test]
fn the_h200_decodes_faster_than_the_h100_and_prefills_alike() {
    let (h100, h200) = (GpuSpec::builtin("h100").unwrap(), GpuSpec::builtin("h200").unwrap());
    let model = ModelSpec::builtin("llama-3.1-8b").unwrap();
    let timing = IterationModel::default();
    let top = Mhz(1980);
    let decode_s = |g: &GpuSpec| timing.cost(&model, g, top, &decode(64, 2048)).time_s;
    assert!(decode_s(&h200) < 0.85 * decode_s(&h100), "{} vs {}", decode_s(&h200), decode_s(&h100));
    let prefill = IterationWork {
        prefill_tokens: 4096,
        attention_pairs: 4096.0 * 4097.0 / 2.0,
        sampled_sequences: 1,
        ..Default::default()
    };
    let prefill_s = |g: &GpuSpec| timing.cost(&model, g, top, &prefill).time_s;
    assert!(
        (prefill_s(&h200) / prefill_s(&h100) - 1.0).abs() < 0.1,
        "{} vs {}",
        prefill_s(&h200),
        prefill_s(&h100)
    );
    assert!(h200.memory_gib > 1.6 * h100.memory_gib);
}
