use thiserror::Error;

/// Errors from loading model profiles and configuring engines.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A model profile or engine config is invalid; the message names the source and field.
    #[error("{source_name}: {reason}")]
    Config {
        /// File path, built-in name or config section.
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// No built-in model profile has that name.
    #[error("unknown model `{name}`; built-in models: {}", known.join(", "))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Built-in names.
        known: Vec<String>,
    },
    /// The model's weights do not fit in the GPU memory the engine may use.
    #[error("{model} needs {weights_gib:.1} GiB of weights per GPU but only {usable_gib:.1} GiB is usable on {gpu}; use a larger GPU, more tensor parallelism or a higher gpu_memory_utilization")]
    DoesNotFit {
        /// Model name.
        model: String,
        /// GPU name.
        gpu: String,
        /// Weight bytes per GPU, in GiB.
        weights_gib: f64,
        /// Usable memory, in GiB.
        usable_gib: f64,
    },
}
