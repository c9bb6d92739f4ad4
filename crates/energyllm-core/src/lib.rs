/*!
The vocabulary and the seams of energyllm.

energyllm serves an LLM at the least GPU energy that still meets latency SLOs by setting two knobs
together at every decision epoch: the GPU core clock and the batch cap. This crate names the things
every other crate talks about and defines the seams between them; it does no I/O and reads no clock.

- **Vocabulary**: [`Request`], [`Mhz`], [`Timestamp`], [`Action`] and [`ActionSpace`],
  [`Observation`], [`Slo`], [`RequestRecord`], [`RunSummary`].
- **Seams**, one small trait each: [`FrequencyActuator`] (sets the clock: simulated GPU, NVML, AMD
  sysfs), [`Policy`] (decides), [`PerfModel`] (predicts latency and power), [`Engine`] (runs
  requests: simulator, vLLM, TGI).
- **Plugin registries** ([`registry`]): each implementation registers a name, a one-line
  description and a constructor from a config value, so a command line or config file can name any
  of them and an unknown name lists the known ones.
- **The sans-IO [`Controller`]**: a state machine that takes timestamped [`Event`]s and returns
  [`Command`]s. The discrete-event simulator and the live gateway both drive it, so the logic the
  tests check is the logic that serves traffic. This is the shape of `quinn-proto`: no runtime, no
  clock, deterministic.
- **Test doubles** in [`testutil`]: a fixed and a scripted policy, a recording actuator.
*/
#![deny(missing_docs)]

mod action;
pub mod controller;
mod error;
mod observation;
mod record;
pub mod registry;
mod request;
pub mod score;
mod slo;
pub mod summary;
pub mod testutil;
mod time;
mod traits;
mod units;

pub use action::{Action, ActionSpace, PAPER_BATCHES, PAPER_FREQS_MHZ};
pub use controller::{
    BatchingMode, Command, Controller, ControllerConfig, ControllerStats, Event, Telemetry,
};
pub use error::{ActuatorError, EngineError, Error};
pub use observation::Observation;
pub use record::{RequestRecord, RequestStatus};
pub use registry::{ConfigValue, PluginSpec, PolicyContext};
pub use request::{Request, RequestId};
pub use slo::Slo;
pub use summary::{RunSummary, RunTotals};
pub use time::{duration_from_secs, Timestamp};
pub use traits::{
    BoxFuture, Engine, EngineState, FrequencyActuator, PerfModel, PerfPrediction, PerfQuery, Policy,
};
pub use units::Mhz;
