/*!
Inference engines behind the [`Engine`](energyllm_core::Engine) seam.

- [`sim`]: an engine modelled at iteration granularity in virtual time: continuous batching up to
  the batch cap with chunked prefill, a paged KV cache sized from GPU memory minus weights,
  admission by free blocks, recompute preemption, and a static-batch mode. Iteration time comes
  from [`IterationModel`] (compute-bound work scales with 1/clock, memory-bound work barely
  does); energy from the simulated GPU's power model, split over the requests in each iteration
  by their tokens. [`SimEngine`] is a sans-IO state machine the discrete-event driver steps;
  [`SimServer`] wraps it as an `Engine` for the profiler.

- [`live`] (feature `live`): the vLLM, TGI and llama.cpp adapters over HTTP and the
  OpenAI-compatible gateway that runs the controller in front of them. Only this crate speaks
  to an inference server.

- [`prom`]: the Prometheus text format, read just far enough for engines' and gateways' metrics
  pages; always built, because the endpoint picker reads gateways' pages without the rest of
  `live`.
*/
#![deny(missing_docs)]

mod analytic;
mod error;
#[cfg(feature = "live")]
pub mod live;
pub mod llamacpp_cache;
mod model;
pub mod prom;
pub mod server;
pub mod sim;
mod timing;

pub use analytic::AnalyticPerfModel;
pub use error::Error;
pub use model::ModelSpec;
pub use server::SimServer;
pub use sim::{EngineEvent, SimEngine, SimEngineConfig, SimEngineStats};
pub use timing::{IterationCost, IterationModel, IterationWork};
