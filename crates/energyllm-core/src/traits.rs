//! The seams: one small trait per kind of plugin.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::{Action, ActuatorError, EngineError, Mhz, Observation, Request, RequestRecord};

/// A boxed future, for the async methods of object-safe traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sets the GPU core clock and reports power and energy.
///
/// Contract: `set_frequency` locks the SM clock at exactly the given supported clock (an
/// unsupported one is an error that lists the supported ones, never a silent rounding);
/// `reset` returns the device to its default clock management and must be safe to call at any
/// time, any number of times. Calls are synchronous: real backends (NVML, sysfs) are short
/// blocking calls that a live driver runs off the request path.
pub trait FrequencyActuator: Send {
    /// Backend name (`sim`, `nvml`, `amd`, …).
    fn name(&self) -> &str;
    /// Clocks the device can be locked at, ascending.
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError>;
    /// The clock the device runs at (or is locked at) now.
    fn current_frequency(&self) -> Result<Mhz, ActuatorError>;
    /// Locks the SM clock.
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError>;
    /// Restores default clock management.
    fn reset(&mut self) -> Result<(), ActuatorError>;
    /// Board power now, in watts.
    fn power_w(&self) -> Result<f64, ActuatorError>;
    /// The device's cumulative energy counter in joules, if it has one.
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError>;
}

impl<A: FrequencyActuator + ?Sized> FrequencyActuator for Box<A> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        (**self).supported_frequencies()
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        (**self).current_frequency()
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        (**self).set_frequency(freq)
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        (**self).reset()
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        (**self).power_w()
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        (**self).energy_j()
    }
}

/// Decides the clock and batch cap from an observation.
///
/// Contract: `decide` is called once per decision epoch with the controller's observation and
/// must not block; the controller snaps the returned action onto the action space, so a policy
/// may return any clock. A policy keeps whatever state it needs between calls.
pub trait Policy: Send {
    /// Name as registered.
    fn name(&self) -> &str;
    /// The action for this epoch.
    fn decide(&mut self, obs: &Observation) -> Action;
    /// Forgets state between independent runs.
    fn reset(&mut self) {}
    /// Decisions since the last reset that a safety mechanism (PPO's shield) changed from what
    /// the policy itself chose; 0 for policies without one.
    fn overrides(&self) -> u64 {
        0
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        (**self).decide(obs)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn overrides(&self) -> u64 {
        (**self).overrides()
    }
}

/// One engine iteration (or a whole batch), as a performance model is asked about it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerfQuery {
    /// SM clock.
    pub freq: Mhz,
    /// Requests in the batch.
    pub batch: u32,
    /// Prompt tokens processed in the iteration.
    pub prefill_tokens: u32,
    /// Decode tokens processed in the iteration (one per decoding request).
    pub decode_tokens: u32,
    /// Tokens held in the KV cache by the batch (context the attention reads).
    pub kv_tokens: u64,
}

/// A performance model's answer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerfPrediction {
    /// Predicted latency in seconds.
    pub latency_s: f64,
    /// Predicted mean board power in watts.
    pub power_w: f64,
}

impl PerfPrediction {
    /// Predicted energy in joules.
    pub fn energy_j(&self) -> f64 {
        self.latency_s * self.power_w
    }
}

/// Predicts latency and power as functions of clock, batch and tokens.
///
/// Contract: `predict` is pure, cheap (policies ask hundreds of times per decision) and total:
/// it returns finite, non-negative numbers for any query.
pub trait PerfModel: Send + Sync {
    /// Model name.
    fn name(&self) -> &str;
    /// Latency and power of the queried work.
    fn predict(&self, query: &PerfQuery) -> PerfPrediction;
}

/// What an engine reports about its own state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// Requests being generated.
    pub running: u32,
    /// Requests accepted by the engine and waiting for it.
    pub waiting: u32,
    /// Fraction of the KV cache in use, 0–1.
    pub kv_usage_frac: f64,
}

/// An inference engine: runs requests and reports its state.
///
/// Contract: `run_batch` submits every request of `batch` concurrently and resolves when all
/// have ended, with one record per request in the order given (a request the engine refuses
/// ends as `Rejected`, it is never dropped). Times in the records are seconds on the engine's
/// clock. This is the interface the profiler sweeps; the serving path drives engines request by
/// request through the controller instead.
pub trait Engine: Send {
    /// Backend name (`sim`, `vllm`, `tgi`, …).
    fn name(&self) -> &str;
    /// Runs `batch` to completion.
    fn run_batch<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<RequestRecord>, EngineError>>;
    /// The engine's current state.
    fn state(&self) -> BoxFuture<'_, Result<EngineState, EngineError>>;
}
