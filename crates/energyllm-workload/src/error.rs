use std::path::PathBuf;

use thiserror::Error;

/// Errors from reading, converting and drawing workloads.
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
    /// A workload setting is out of range; the message names it.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// From energyllm-core (a malformed `NAME:key=value` spec).
    #[error(transparent)]
    Core(#[from] energyllm_core::Error),
}
