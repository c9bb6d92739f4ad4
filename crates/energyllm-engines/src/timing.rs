//! How long one engine iteration takes, and how hard it works the GPU.

use serde::{Deserialize, Serialize};

use energyllm_core::Mhz;
use energyllm_hw::{GpuSpec, Load};

use crate::ModelSpec;

/// Iteration-time constants.
///
/// An iteration's GPU time is the larger of a compute-bound part, which scales with 1/clock,
/// and a memory-bound part (weights plus the KV cache read once), which barely does:
/// `t = overhead_s + max(flops / (peak · mfu · f/f_max), bytes / (bw · mbu) · (1 + k·(f_max/f − 1)))`.
/// Prefill and large decode batches are compute-bound; small decode batches are memory-bound.
/// That asymmetry is where DVFS saves energy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IterationModel {
    /// Fraction of peak tensor throughput the GEMMs reach (model FLOPs utilisation). Default 0.6.
    pub mfu: f64,
    /// Fraction of peak memory bandwidth reached (bandwidth utilisation). Default 0.8.
    pub mbu: f64,
    /// Fraction of peak throughput attention kernels reach. Default 0.35.
    pub attention_efficiency: f64,
    /// Per-iteration time that does not depend on the GPU clock (scheduling, sampling, launch),
    /// in seconds. Default 0.004.
    pub overhead_s: f64,
    /// How much memory-bound time stretches at low clocks, `k` above. Default 0.25.
    pub mem_clock_sensitivity: f64,
}

impl Default for IterationModel {
    fn default() -> Self {
        IterationModel {
            mfu: 0.6,
            mbu: 0.8,
            attention_efficiency: 0.35,
            overhead_s: 0.004,
            mem_clock_sensitivity: 0.25,
        }
    }
}

/// The work in one iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IterationWork {
    /// Prompt tokens processed.
    pub prefill_tokens: u64,
    /// Decode tokens processed (one per decoding request).
    pub decode_tokens: u64,
    /// Σ over query tokens of the context they attend to.
    pub attention_pairs: f64,
    /// KV-cache tokens read.
    pub kv_read_tokens: u64,
}

/// What an iteration costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterationCost {
    /// Wall time, in seconds.
    pub time_s: f64,
    /// GPU load averaged over the iteration.
    pub load: Load,
}

impl IterationModel {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, v) in
            [("mfu", self.mfu), ("mbu", self.mbu), ("attention_efficiency", self.attention_efficiency)]
        {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(format!("`{field}` must be in (0, 1], got {v}"));
            }
        }
        for (field, v) in
            [("overhead_s", self.overhead_s), ("mem_clock_sensitivity", self.mem_clock_sensitivity)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{field}` must be ≥ 0, got {v}"));
            }
        }
        Ok(())
    }

    /// Time and load of `work` for `model` on `gpu` at `freq`.
    pub fn cost(&self, model: &ModelSpec, gpu: &GpuSpec, freq: Mhz, work: &IterationWork) -> IterationCost {
        let rel = (f64::from(freq.0) / f64::from(gpu.max_freq_mhz)).clamp(1e-3, 1.0);
        let peak_flops = gpu.peak_tflops * 1e12 * rel;
        let tokens = (work.prefill_tokens + work.decode_tokens) as f64;
        let compute_s = tokens * model.linear_flops_per_token_per_gpu() / (peak_flops * self.mfu)
            + work.attention_pairs * model.attention_flops_per_pair_per_gpu()
                / (peak_flops * self.attention_efficiency);
        let bytes =
            model.weight_bytes_per_gpu() + work.kv_read_tokens as f64 * model.kv_bytes_per_token_per_gpu();
        let at_peak_bw_s = bytes / (gpu.mem_bandwidth_gb_s * 1e9);
        let mem_s = at_peak_bw_s / self.mbu * (1.0 + self.mem_clock_sensitivity * (1.0 / rel - 1.0));
        let time_s = self.overhead_s + compute_s.max(mem_s);
        IterationCost { time_s, load: Load { sm: compute_s / time_s, mem: at_peak_bw_s / time_s } }
    }
}
