//! The models crate's one error type.

use std::path::PathBuf;

use thiserror::Error;

/// Errors from reading profiles, fitting models and reading model files.
///
/// Every message names what it is about (file, line, field, parameter) and, where there is one,
/// what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A profile or data CSV has a bad row; fix or remove that row.
    #[error("{}:{line}: {reason}", path.display())]
    DataLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong, naming the column.
        reason: String,
    },
    /// A profile or data file is unusable as a whole (missing column, no rows).
    #[error("{name}: {reason}")]
    Data {
        /// File path or data set name.
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
    /// A hyperparameter is out of range; the message names it and its valid range.
    #[error("invalid {model} parameter: {reason}")]
    Param {
        /// Model family.
        model: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The data cannot be fitted (too few rows, collinear columns, non-finite values).
    #[error("cannot fit {model}: {reason}")]
    Fit {
        /// Model family.
        model: &'static str,
        /// Why, and what to change.
        reason: String,
    },
    /// A model file is truncated, corrupt, too large, or of another format version.
    #[error("model file {name}: {reason}")]
    ModelFile {
        /// File path or source name.
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An ONNX model could not be loaded or run.
    #[error("ONNX model {name}: {reason}")]
    Onnx {
        /// File path.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// From energyllm-core (plugin configs).
    #[error(transparent)]
    Core(#[from] energyllm_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn param(model: &'static str, reason: impl Into<String>) -> Self {
        Error::Param { model, reason: reason.into() }
    }

    pub(crate) fn fit(model: &'static str, reason: impl Into<String>) -> Self {
        Error::Fit { model, reason: reason.into() }
    }

    pub(crate) fn model_file(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::ModelFile { name: name.into(), reason: reason.into() }
    }
}
