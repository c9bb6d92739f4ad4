use thiserror::Error;

/// Errors from setting up and running simulations.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A simulation setting is out of range; the message names it.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// From energyllm-core (configs, plugin lookup).
    #[error(transparent)]
    Core(#[from] energyllm_core::Error),
    /// From the engine model (profiles, engine config).
    #[error(transparent)]
    Engine(#[from] energyllm_engines::Error),
    /// From the hardware profiles.
    #[error(transparent)]
    Hw(#[from] energyllm_hw::Error),
    /// An actuator refused a command.
    #[error(transparent)]
    Actuator(#[from] energyllm_core::ActuatorError),
    /// From drawing a workload.
    #[error(transparent)]
    Workload(#[from] energyllm_workload::Error),
    /// The simulation ran past its step limit without finishing: a bug, please report it.
    #[error("the simulation did not finish within {steps} steps (simulated time {sim_time_s:.1} s); this is a bug")]
    Runaway {
        /// Steps taken.
        steps: u64,
        /// Simulated time reached.
        sim_time_s: f64,
    },
}
