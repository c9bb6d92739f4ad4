use std::path::PathBuf;

use thiserror::Error;

/// Errors from the experiments: evaluations, sweeps, training, calibration and reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A measurement file has a bad line; the message names the file, line and field.
    #[error("{}:{line}: {reason}", path.display())]
    DataLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it (names the field).
        reason: String,
    },
    /// A measurement file is unusable as a whole.
    #[error("data {name}: {reason}")]
    Data {
        /// File path.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An experiment setting is out of range; the message names it.
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
    /// From reading or drawing a workload.
    #[error(transparent)]
    Workload(#[from] energyllm_workload::Error),
    /// From a simulation run.
    #[error(transparent)]
    Sim(#[from] energyllm_sim::Error),
    /// From the policies (training, checkpoints).
    #[error(transparent)]
    Policy(#[from] energyllm_policy::Error),
    /// From fitting a model.
    #[error(transparent)]
    Models(#[from] energyllm_models::Error),
    /// From a profile sweep.
    #[error(transparent)]
    Profile(#[from] crate::profiler::ProfileError),
    /// A report could not be serialised.
    #[error("writing {what}: {reason}")]
    Report {
        /// Which output.
        what: String,
        /// Why.
        reason: String,
    },
}
