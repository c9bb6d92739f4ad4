use thiserror::Error;

/// Errors from loading and validating hardware profiles.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A GPU profile file could not be parsed; the message names the file and the field.
    #[error("GPU profile {source_name}: {reason}")]
    Profile {
        /// File path or built-in name.
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// No built-in profile has that name.
    #[error("unknown GPU `{name}`; built-in GPUs: {}", known.join(", "))]
    UnknownGpu {
        /// The name asked for.
        name: String,
        /// Built-in names.
        known: Vec<String>,
    },
    /// Telemetry input was unusable (time going backwards, a non-finite power reading, a request
    /// that ends before it starts); the message names the value.
    #[error("telemetry: {0}")]
    Telemetry(String),
}
