/*!
GPU clock actuators and power telemetry.

Everything in energyllm that touches a GPU vendor's interface lives here, behind
[`FrequencyActuator`](energyllm_core::FrequencyActuator):

- [`sim`]: a simulated GPU in virtual time, built from a [`GpuSpec`] profile (TOML, shipped in
  `profiles/`). Power is idle power plus a memory term and a dynamic SM term that grows as f·V²,
  so the top of the clock range costs more than it buys; a clock change stalls the GPU. The
  simulator, the tests and training all run on it.

The NVML and AMD sysfs backends come behind cargo features (`nvml`, `amd`) so that users who do
not need them do not link them.
*/
#![deny(missing_docs)]

mod error;
pub mod sim;
mod spec;

pub use error::Error;
pub use sim::{Load, SharedSimGpu, SimGpu};
pub use spec::{GpuSpec, PowerModel};
