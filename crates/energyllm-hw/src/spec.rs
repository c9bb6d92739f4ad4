//! GPU profiles: the constants a simulated GPU is built from, as TOML data files.

use serde::{Deserialize, Serialize};

use energyllm_core::Mhz;

use crate::Error;

/// How board power depends on clock and load.
///
/// `P = idle + mem_w · mem_util + core_w · sm_util · s(f)`, capped at TDP, where
/// `s(f) = (f / f_max) · (V(f) / V_max)²` is dynamic CMOS power (∝ f·V²) relative to the top
/// clock. The voltage is flat at `v_min_rel · V_max` up to `v_knee_mhz` and rises linearly to
/// `V_max` at the top clock, which is why dynamic power grows faster than linearly at the top of
/// the range and why the energy-optimal clock is usually well below it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerModel {
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
}

const BUILTIN: &[(&str, &str)] = &[("a100-40gb", include_str!("../profiles/a100-sxm4-40gb.toml"))];

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

    /// Board power at `freq` with SMs `sm_util` busy and memory bandwidth `mem_util` used
    /// (both 0–1), in watts; never above TDP. Memory-bound kernels keep the SMs at least
    /// `sm_floor` busy in proportion to the bandwidth they use.
    pub fn power_w(&self, freq: Mhz, sm_util: f64, mem_util: f64) -> f64 {
        let mem = mem_util.clamp(0.0, 1.0);
        let sm = sm_util.clamp(0.0, 1.0).max(self.power.sm_floor * mem);
        let p =
            self.idle_power_w + self.power.mem_w * mem + self.power.core_w * sm * self.dynamic_scale(freq);
        p.min(self.tdp_w)
    }
}
