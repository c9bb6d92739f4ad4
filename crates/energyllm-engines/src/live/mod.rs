//! Live serving (feature `live`): adapters for real inference servers and the gateway.
//!
//! - [`upstream`]: [`HttpEngine`](upstream::HttpEngine), the `vllm`, `tgi` and `llamacpp`
//!   engines over HTTP (OpenAI completions or TGI's `/generate`, plain and SSE), with their
//!   state read from Prometheus `/metrics` ([`prom`]), streams decoded by [`sse`] and answers
//!   read into tokens and their times by [`answer`].
//! - [`gateway`]: the OpenAI-compatible gateway that runs the sans-IO controller with tokio
//!   time, holds the batch cap and drives the actuator through [`actuate`].
//!
//! **Invariant:** only this crate speaks HTTP to an inference server, and no decision logic lives
//! here: the gateway carries out the `Controller`'s commands, as the simulator's driver does.

pub mod actuate;
pub mod answer;
pub mod gateway;
pub use crate::prom;
pub mod sse;
pub mod upstream;

pub use actuate::{sim_actuator, ActuatorSetup, AtomicF64};
pub use gateway::{
    start, AccessLog, GatewayConfig, GatewayError, GatewayHandle, GatewayMetrics, GatewayReport, Identity,
    ScoreModel,
};
pub use prom::{Histogram, Metrics};
pub use upstream::{
    fetch_slots, Completion, EngineKind, HttpEngine, HttpEngineConfig, SlotsState, UpstreamLatency,
};
