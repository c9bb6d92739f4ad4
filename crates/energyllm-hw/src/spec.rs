//! GPU profiles: the constants a simulated GPU is built from, as TOML data files.

use serde::{Deserialize, Serialize};

use energyllm_core::Mhz;

use crate::Load;

use crate::Error;

/// How board power depends on clock and load.
///
/// While kernels run: `P = idle + mem_w · mem + s(f) · (active_w · active + core_w · sm)` (the
/// terms of [`Load`]),
/// capped at TDP; with nothing running, `P = idle`. `s(f) = (f / f_max) · (V(f) / V_max)²` is
/// dynamic CMOS power (∝ f·V²) relative to the top clock. The voltage is flat at
/// `v_min_rel · V_max` up to `v_knee_mhz` and rises linearly to `V_max` at the top clock, which is
/// why dynamic power grows faster than linearly at the top of the range and why the
/// energy-optimal clock is usually well below it. `active_w` is what a busy GPU draws beyond idle
/// whatever the kernels do (clock tree, schedulers, leakage at the raised voltage): on an H100 it
/// is most of the power of a small decode batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerModel {
    /// Power a busy GPU draws beyond idle at the top clock whatever its kernels do, in watts.
    pub active_w: f64,
    /// Power drawn by memory traffic at full bandwidth use, in watts.
    pub mem_w: f64,
    /// Power drawn by fully busy SMs at the top clock (beyond idle), in watts.
    pub core_w: f64,
    /// Voltage at and below the knee, relative to the voltage at the top clock (0–1].
    pub v_min_rel: f64,
    /// Clock below which the voltage stays at its floor, in MHz.
    pub v_knee_mhz: u32,
    /// SM activity while memory-bound kernels run (warps issuing loads still burn power), 0–1.
    pub sm_floor: f64,
}

/// How close this GPU gets to its peak rates when running LLM kernels, and how its memory
/// system responds to the SM clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Efficiency {
    /// Fraction of peak tensor throughput that large GEMMs reach (model FLOPs utilisation).
    pub mfu: f64,
    /// Fraction of peak memory bandwidth that weight and KV streaming reach.
    pub mbu: f64,
    /// Exponent `p` of the p-norm that combines compute-bound and memory-bound time of a
    /// kernel, `(cᵖ + mᵖ)^(1/p)`: 1 is no overlap (sum), ∞ perfect overlap (max). Mid-sized
    /// GEMMs are neither, which a pure roofline (max) misses.
    pub overlap_p: f64,
    /// Fraction of peak tensor throughput that attention kernels reach.
    pub attention_efficiency: f64,
    /// Fixed time per transformer layer for kernel launches and tiny kernels, in seconds.
    pub kernel_launch_s: f64,
    /// SM clock below which memory-bound kernels cannot issue loads fast enough to saturate
    /// memory bandwidth, in MHz: below it their time grows as `mem_saturation_mhz / f`.
    pub mem_saturation_mhz: u32,
    /// GPU-to-GPU bandwidth per direction for tensor-parallel all-reduce, in GB/s.
    pub interconnect_gb_s: f64,
    /// Fixed latency of one all-reduce, in seconds.
    pub allreduce_latency_s: f64,
}

/// One GPU model's constants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Marketing name.
    pub name: String,
    /// Lowest lockable SM clock, in MHz.
    pub min_freq_mhz: u32,
    /// Highest lockable SM clock, in MHz.
    pub max_freq_mhz: u32,
    /// Step between lockable clocks, in MHz.
    pub freq_step_mhz: u32,
    /// Clock the device returns to on reset, in MHz.
    pub default_freq_mhz: u32,
    /// Board power with nothing running, in watts.
    pub idle_power_w: f64,
    /// Board power limit, in watts.
    pub tdp_w: f64,
    /// Device memory, in GiB.
    pub memory_gib: f64,
    /// Peak memory bandwidth, in GB/s.
    pub mem_bandwidth_gb_s: f64,
    /// Peak dense FP16/BF16 tensor throughput at the top clock, in TFLOPS.
    pub peak_tflops: f64,
    /// Time the GPU stalls when its clock is changed, in seconds.
    pub switch_stall_s: f64,
    /// Power model constants.
    pub power: PowerModel,
    /// Achieved-throughput constants.
    pub efficiency: Efficiency,
}

const BUILTIN: &[(&str, &str)] = &[
    ("a100-40gb", include_str!("../profiles/a100-sxm4-40gb.toml")),
    ("a100-80gb", include_str!("../profiles/a100-sxm4-80gb.toml")),
    ("h100", include_str!("../profiles/h100-sxm5-80gb.toml")),
    ("h200", include_str!("../profiles/h200-sxm-141gb.toml")),
    ("b200", include_str!("../profiles/b200-sxm-180gb.toml")),
];

impl GpuSpec {
    /// Names of the profiles shipped in the crate.
    pub fn builtin_names() -> Vec<String> {
        BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect()
    }

    /// A shipped profile by name.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownGpu { name: name.to_owned(), known: Self::builtin_names() })?;
        Self::from_toml(text, name)
    }

    /// Parses and validates a profile; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, Error> {
        let spec: GpuSpec = toml::from_str(text)
            .map_err(|e| Error::Profile { source_name: source_name.to_owned(), reason: e.to_string() })?;
        spec.validate().map_err(|reason| Error::Profile { source_name: source_name.to_owned(), reason })?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("idle_power_w", self.idle_power_w),
            ("tdp_w", self.tdp_w),
            ("memory_gib", self.memory_gib),
            ("mem_bandwidth_gb_s", self.mem_bandwidth_gb_s),
            ("peak_tflops", self.peak_tflops),
            ("power.v_min_rel", self.power.v_min_rel),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{field}` must be a positive number, got {v}"));
            }
        }
        for (field, v) in [
            ("switch_stall_s", self.switch_stall_s),
            ("power.active_w", self.power.active_w),
            ("power.mem_w", self.power.mem_w),
            ("power.core_w", self.power.core_w),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{field}` must be ≥ 0, got {v}"));
            }
        }
        if self.min_freq_mhz == 0 || self.min_freq_mhz > self.max_freq_mhz || self.freq_step_mhz == 0 {
            return Err(format!(
                "clocks must satisfy 0 < min_freq_mhz ≤ max_freq_mhz and freq_step_mhz > 0, got {}..{} step {}",
                self.min_freq_mhz, self.max_freq_mhz, self.freq_step_mhz
            ));
        }
        if !self.supported_freqs().contains(&Mhz(self.default_freq_mhz)) {
            return Err(format!(
                "`default_freq_mhz` {} is not one of the supported clocks",
                self.default_freq_mhz
            ));
        }
        if self.idle_power_w >= self.tdp_w {
            return Err("`idle_power_w` must be below `tdp_w`".into());
        }
        if self.power.v_min_rel > 1.0 || !(0.0..=1.0).contains(&self.power.sm_floor) {
            return Err("`power.v_min_rel` must be in (0, 1] and `power.sm_floor` in [0, 1]".into());
        }
        let e = &self.efficiency;
        for (field, v) in [
            ("efficiency.mfu", e.mfu),
            ("efficiency.mbu", e.mbu),
            ("efficiency.attention_efficiency", e.attention_efficiency),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(format!("`{field}` must be in (0, 1], got {v}"));
            }
        }
        if !(e.overlap_p.is_finite() && e.overlap_p >= 1.0) {
            return Err(format!("`efficiency.overlap_p` must be ≥ 1, got {}", e.overlap_p));
        }
        for (field, v) in [
            ("efficiency.kernel_launch_s", e.kernel_launch_s),
            ("efficiency.allreduce_latency_s", e.allreduce_latency_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{field}` must be ≥ 0, got {v}"));
            }
        }
        if !(e.interconnect_gb_s.is_finite() && e.interconnect_gb_s > 0.0) {
            return Err(format!(
                "`efficiency.interconnect_gb_s` must be positive, got {}",
                e.interconnect_gb_s
            ));
        }
        Ok(())
    }

    /// Every lockable clock, ascending (the top clock is included even off the step grid).
    pub fn supported_freqs(&self) -> Vec<Mhz> {
        let mut v: Vec<Mhz> = (self.min_freq_mhz..=self.max_freq_mhz)
            .step_by(self.freq_step_mhz.max(1) as usize)
            .map(Mhz)
            .collect();
        if v.last() != Some(&Mhz(self.max_freq_mhz)) {
            v.push(Mhz(self.max_freq_mhz));
        }
        v
    }

    /// How much longer memory-bound kernels take at `freq` than at full bandwidth (≥ 1).
    pub fn mem_stretch(&self, freq: Mhz) -> f64 {
        (f64::from(self.efficiency.mem_saturation_mhz) / f64::from(freq.0.max(1))).max(1.0)
    }

    /// Dynamic-power scale `s(f)` relative to the top clock (see [`PowerModel`]).
    pub fn dynamic_scale(&self, freq: Mhz) -> f64 {
        let f = f64::from(freq.0.clamp(self.min_freq_mhz, self.max_freq_mhz));
        let fmax = f64::from(self.max_freq_mhz);
        let knee = f64::from(self.power.v_knee_mhz.min(self.max_freq_mhz));
        let v = if f <= knee || fmax <= knee {
            self.power.v_min_rel
        } else {
            self.power.v_min_rel + (1.0 - self.power.v_min_rel) * (f - knee) / (fmax - knee)
        };
        f / fmax * v * v
    }

    /// Board power at `freq` under `load`, in watts; never above TDP. Memory-bound kernels keep the SMs at least
    /// `sm_floor` busy in proportion to the bandwidth they use.
    pub fn power_w(&self, freq: Mhz, load: Load) -> f64 {
        let mem = load.mem.clamp(0.0, 1.0);
        let sm = load.sm.clamp(0.0, 1.0).max(self.power.sm_floor * mem);
        let active = load.active.clamp(0.0, 1.0);
        let p = self.idle_power_w
            + self.power.mem_w * mem
            + self.dynamic_scale(freq) * (self.power.active_w * active + self.power.core_w * sm);
        p.min(self.tdp_w)
    }
}
