//! How long one engine iteration takes, and how hard it works the GPU.
//!
//! An iteration runs every transformer layer once over the iteration's tokens, then the output
//! projection for the sequences that sample a token. Per layer:
//!
//! - **linear** (QKV, O, gated MLP): compute time `c = tokens · 2·W / (peak · mfu · f/f_max)`
//!   and memory time `m = W_bytes / (bw · mbu) · stretch(f)` combined as `(cᵖ + mᵖ)^(1/p)`.
//!   Few tokens are memory-bound (weights streamed once, clock barely matters); thousands of
//!   tokens are compute-bound (time ∝ 1/clock). That asymmetry is where DVFS saves energy.
//! - **attention**: QKᵀ/AV FLOPs over (query, context) pairs at `attention_efficiency`, plus the
//!   KV cache read at `mbu`, plus a fixed kernel-launch floor.
//! - **KV write** of prefill tokens (a per-token cost Vidur measures separately).
//! - **all-reduce** twice per layer under tensor parallelism.
//!
//! `stretch(f) = max(1, f_sat / f)`: below the saturation clock the SMs cannot issue loads fast
//! enough to use all the bandwidth. A fixed CPU-side `overhead_s` per iteration (scheduling,
//! sampling, launch) does not depend on the GPU clock. The GPU-side constants live in the GPU
//! profile (`[efficiency]`), the engine-side ones here.

use serde::{Deserialize, Serialize};

use energyllm_core::Mhz;
use energyllm_hw::{GpuSpec, Load};

use crate::ModelSpec;

/// Engine-side iteration constants (the GPU-side ones are in the GPU profile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IterationModel {
    /// Per-iteration time that does not depend on the GPU clock (scheduling, sampling, kernel
    /// launch on the CPU), in seconds. Default 0.0015 s (vLLM with CUDA graphs).
    pub overhead_s: f64,
    /// Fraction of `overhead_s` during which the GPU runs kernels at all. 0 for an engine whose
    /// per-iteration overhead is CPU work with the GPU waiting (vLLM with CUDA graphs); near 1 for
    /// eager PyTorch, whose extra time per token is hundreds of tiny kernels launched back to
    /// back. Default 0.
    pub overhead_active_frac: f64,
    /// Time to write one prefill token's keys and values into the paged cache, per layer, in
    /// seconds. Default 3.24e-7 s (fitted to Vidur's A100 `attn_kv_cache_save`).
    pub kv_write_s_per_token: f64,
}

impl Default for IterationModel {
    fn default() -> Self {
        IterationModel { overhead_s: 0.0015, overhead_active_frac: 0.0, kv_write_s_per_token: 3.24e-7 }
    }
}

/// The work in one iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IterationWork {
    /// Prompt tokens processed.
    pub prefill_tokens: u64,
    /// Decode tokens processed (one per decoding request).
    pub decode_tokens: u64,
    /// Σ over query tokens of the context they attend to (including themselves).
    pub attention_pairs: f64,
    /// KV-cache tokens read (the context of every request in the iteration).
    pub kv_read_tokens: u64,
    /// Sequences that sample a token this iteration (decodes and completed prefills): rows of
    /// the output projection.
    pub sampled_sequences: u64,
}

/// Time of one layer's parts, for calibration against per-operator profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerTimes {
    /// QKV, O and MLP GEMMs with their elementwise neighbours, in seconds.
    pub linear_s: f64,
    /// Attention kernels (FLOPs, KV reads, launch floor), in seconds.
    pub attention_s: f64,
    /// Writing prefill keys and values into the cache, in seconds.
    pub kv_write_s: f64,
    /// Tensor-parallel all-reduces, in seconds.
    pub allreduce_s: f64,
}

impl LayerTimes {
    /// All parts.
    pub fn total_s(&self) -> f64 {
        self.linear_s + self.attention_s + self.kv_write_s + self.allreduce_s
    }
}

/// What an iteration costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterationCost {
    /// Wall time, in seconds.
    pub time_s: f64,
    /// GPU load averaged over the iteration.
    pub load: Load,
}

fn pnorm(a: f64, b: f64, p: f64) -> f64 {
    if a <= 0.0 || b <= 0.0 {
        return a.max(b);
    }
    let m = a.max(b);
    m * ((a / m).powf(p) + (b / m).powf(p)).powf(1.0 / p)
}

impl IterationModel {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, v) in
            [("overhead_s", self.overhead_s), ("kv_write_s_per_token", self.kv_write_s_per_token)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{field}` must be ≥ 0, got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.overhead_active_frac) {
            return Err(format!(
                "`overhead_active_frac` must be in [0, 1], got {}",
                self.overhead_active_frac
            ));
        }
        Ok(())
    }

    /// One layer's time for `work` at `freq`, and the FLOP-time and bytes behind it.
    fn layer(
        &self,
        model: &ModelSpec,
        gpu: &GpuSpec,
        freq: Mhz,
        work: &IterationWork,
    ) -> (LayerTimes, f64, f64) {
        let e = &gpu.efficiency;
        let rel = (f64::from(freq.0) / f64::from(gpu.max_freq_mhz)).clamp(1e-3, 1.0);
        let peak_flops = gpu.peak_tflops * 1e12 * rel;
        let bw = gpu.mem_bandwidth_gb_s * 1e9;
        let stretch = gpu.mem_stretch(freq);
        let tokens = (work.prefill_tokens + work.decode_tokens) as f64;

        let lin_c = tokens * model.layer_flops_per_token_per_gpu() / (peak_flops * e.mfu);
        let lin_bytes = model.layer_weight_bytes_per_gpu();
        let lin_m = lin_bytes / (bw * e.mbu) * stretch;
        let attn_c = work.attention_pairs * model.attention_flops_per_pair_per_layer_per_gpu()
            / (peak_flops * e.attention_efficiency);
        let kv_bytes = work.kv_read_tokens as f64 * model.kv_bytes_per_token_per_layer_per_gpu();
        let attn_m = kv_bytes / (bw * e.mbu) * stretch;
        let allreduce_s = if model.tensor_parallel > 1 {
            let tp = f64::from(model.tensor_parallel);
            let bytes = tokens * model.allreduce_bytes_per_token() * 2.0 * (tp - 1.0) / tp;
            2.0 * (e.allreduce_latency_s + bytes / (e.interconnect_gb_s * 1e9))
        } else {
            0.0
        };
        let times = LayerTimes {
            linear_s: pnorm(lin_c, lin_m, e.overlap_p),
            attention_s: e.kernel_launch_s + pnorm(attn_c, attn_m, e.overlap_p),
            kv_write_s: work.prefill_tokens as f64 * self.kv_write_s_per_token,
            allreduce_s,
        };
        (times, lin_c + attn_c, lin_bytes + kv_bytes)
    }

    /// One layer's time for `work` at `freq` (what Vidur profiles per operator).
    pub fn layer_times(
        &self,
        model: &ModelSpec,
        gpu: &GpuSpec,
        freq: Mhz,
        work: &IterationWork,
    ) -> LayerTimes {
        self.layer(model, gpu, freq, work).0
    }

    /// Time and load of `work` for `model` on `gpu` at `freq`.
    pub fn cost(&self, model: &ModelSpec, gpu: &GpuSpec, freq: Mhz, work: &IterationWork) -> IterationCost {
        let e = &gpu.efficiency;
        let (layer, layer_flop_s, layer_bytes) = self.layer(model, gpu, freq, work);
        let layers = f64::from(model.layers);
        let rel = (f64::from(freq.0) / f64::from(gpu.max_freq_mhz)).clamp(1e-3, 1.0);
        let bw = gpu.mem_bandwidth_gb_s * 1e9;
        let head_c = work.sampled_sequences as f64 * model.head_flops_per_token_per_gpu()
            / (gpu.peak_tflops * 1e12 * rel * e.mfu);
        let head_m = model.head_weight_bytes_per_gpu() / (bw * e.mbu) * gpu.mem_stretch(freq);
        let gpu_s = layers * layer.total_s() + pnorm(head_c, head_m, e.overlap_p);
        let time_s = self.overhead_s + gpu_s;
        let flop_s = layers * layer_flop_s + head_c;
        let bytes = layers * layer_bytes + model.head_weight_bytes_per_gpu();
        IterationCost {
            time_s,
            load: Load {
                sm: (flop_s / time_s).min(1.0),
                mem: (bytes / bw / time_s).min(1.0),
                active: (gpu_s + self.overhead_s * self.overhead_active_frac) / time_s,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pnorm_spans_sum_and_max() {
        assert_eq!(pnorm(3.0, 4.0, 1.0), 7.0);
        assert!((pnorm(3.0, 4.0, 2.0) - 5.0).abs() < 1e-12);
        assert!((pnorm(3.0, 4.0, 200.0) - 4.0).abs() < 1e-3);
        assert_eq!(pnorm(0.0, 4.0, 2.0), 4.0);
    }
}
