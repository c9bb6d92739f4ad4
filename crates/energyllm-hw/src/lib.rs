/*!
GPU clock actuators and power telemetry.

Everything in energyllm that touches a GPU vendor's interface lives here, behind
[`FrequencyActuator`](energyllm_core::FrequencyActuator):

- [`sim`]: a simulated GPU in virtual time, built from a [`GpuSpec`] profile (TOML, shipped in
  `profiles/`). Power is idle power plus a memory term and a dynamic SM term that grows as f·V²,
  so the top of the clock range costs more than it buys; a clock change stalls the GPU. The
  simulator, the tests and training all run on it.

- `nvml` (feature `nvml`): NVIDIA GPUs through NVML — device by index or UUID honouring
  `CUDA_VISIBLE_DEVICES`, supported clocks, locked SM clocks, power and the total-energy counter
  (checked against sampled power at start).
- `amd` (feature `amd`): AMD GPUs through the amdgpu sysfs files — SCLK DPM levels or the
  overdrive range, `manual`/`auto` performance levels, hwmon power. Tested against a fake sysfs
  tree (`amd::fake`).
- [`guard`]: [`ClockGuard`] puts the clocks back to default on drop, SIGINT/SIGTERM, panic and
  when the controller stops deciding.
- [`telemetry`]: a sans-clock log of power, clock and energy with per-request attribution, and a
  live [`Sampler`](telemetry::Sampler) thread.
- [`info`]: what `energyllm hw info` reports.

The NVML and AMD backends are cargo features so that users who do not need them do not link
them (amdgpu-sysfs is LGPL-3.0). NVML is loaded at run time, so the `nvml` feature builds on
any machine and reports a missing library as a clear error.
*/
#![deny(missing_docs)]

#[cfg(feature = "amd")]
pub mod amd;
mod error;
pub mod guard;
pub mod info;
#[cfg(feature = "nvml")]
pub mod nvml;
pub mod sim;
mod spec;
pub mod telemetry;

pub use error::Error;
pub use guard::{ClockGuard, GuardConfig, RestoreReason};
pub use sim::{Load, SharedSimGpu, SimGpu};
pub use spec::{Efficiency, GpuSpec, PowerModel};

/// Call from a binary so the linker keeps this crate's actuator registrations (inventory's
/// submissions in a crate nothing references are dropped).
pub fn link() {}
