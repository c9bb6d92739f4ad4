use std::path::PathBuf;

use thiserror::Error;

/// Errors from workloads, simulation runs and reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A workload file has a bad line; fix or remove that line.
    #[error("{}:{line}: {reason}", path.display())]
    WorkloadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it (names the field).
        reason: String,
    },
    /// A workload is unusable as a whole.
    #[error("workload {name}: {reason}")]
    Workload {
        /// File path or built-in name.
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
    /// An evaluation setting is out of range; the message names it.
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
    /// A report could not be serialised.
    #[error("writing {what}: {reason}")]
    Report {
        /// Which output.
        what: String,
        /// Why.
        reason: String,
    },
    /// The simulation ran past its step limit without finishing: a bug, please report it.
    #[error("the simulation did not finish within {steps} steps (simulated time {sim_time_s:.1} s); this is a bug")]
    Runaway {
        /// Steps taken.
        steps: u64,
        /// Simulated time reached.
        sim_time_s: f64,
    },
}
