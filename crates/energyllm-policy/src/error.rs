//! The policy crate's errors (training and checkpoints; plugin configs use core's error).

use std::path::PathBuf;

use thiserror::Error;

/// Errors from PPO training and checkpoint files.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A training or policy setting is out of range; the message names it.
    #[error("invalid PPO configuration: {0}")]
    Config(String),
    /// The environment failed while stepping.
    #[error("environment failed: {0}")]
    Env(Box<dyn std::error::Error + Send + Sync>),
    /// A rollout worker thread panicked (a bug; please report it).
    #[error("a rollout worker thread panicked")]
    WorkerPanicked,
    /// A checkpoint file could not be read or written.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint is unusable; the message says why and what to do.
    #[error("checkpoint {name}: {reason}")]
    Checkpoint {
        /// File path or `default` for the embedded one.
        name: String,
        /// What is wrong.
        reason: String,
    },
}
