//! Model files: versioned, self-describing, bounded.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic  "ELLMMODL"
//!      8     2  format version (this build writes and reads FORMAT_VERSION)
//!     10     2  reserved, 0
//!     12     8  payload length in bytes
//!     20     8  FNV-1a 64 checksum of the payload
//!     28     …  payload: postcard encoding of ModelFile
//! ```
//!
//! The payload carries its own description ([`ModelMeta`]): the features and targets with their
//! units, where the training data came from, how many rows, each feature's range and the
//! cross-validated accuracy, so a file found on disk says what it is without its training run.
//!
//! Reading never trusts the file: the size is checked before anything is read (at most
//! [`MAX_MODEL_FILE_BYTES`]), the header before the payload, the checksum before decoding, and
//! the decoded trees go through [`TreeEnsemble`](crate::TreeEnsemble)'s validation. A truncated,
//! oversized, corrupt or other-version file is an [`Error::ModelFile`] that says which, never a
//! panic; postcard allocates no more than the payload's length can back (serde caps
//! preallocation, and every element costs at least one byte of input).

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use energyllm_core::PerfModel;

use crate::dataset::Quantity;
use crate::gbt::GbtPerfModel;
use crate::iteration_rate::IterationRateModel;
use crate::wilkins::WilkinsModel;
use crate::Error;

/// The first 8 bytes of every model file.
pub const MAGIC: [u8; 8] = *b"ELLMMODL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The largest model file this build reads, in bytes (64 MiB: a 1000-tree ensemble is under
/// 2 MiB).
pub const MAX_MODEL_FILE_BYTES: u64 = 64 * 1024 * 1024;
const HEADER_LEN: usize = 28;

/// One accuracy figure recorded at training time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The target it is about (`latency_s`, `power_w`, `energy_j`, …).
    pub target: String,
    /// What it is (`cv_r2`, `cv_mape`, `r2_uncentered`, …).
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// Where a model's training data came from and how well it fitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// The data: a file path or a data set name.
    pub source: String,
    /// Rows fitted on.
    pub rows: u64,
    /// Each feature's smallest and largest training value, in feature order: predictions outside
    /// these are extrapolations.
    pub feature_ranges: Vec<(f64, f64)>,
    /// The hyperparameters, as JSON.
    pub params_json: String,
    /// Accuracy figures.
    pub metrics: Vec<Metric>,
}

/// What a model file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model family (`gbt`, `wilkins`, `iteration-rate`).
    pub family: String,
    /// One line saying what it predicts.
    pub description: String,
    /// Input features with units, in the order the model reads them.
    pub features: Vec<Quantity>,
    /// Outputs with units.
    pub targets: Vec<Quantity>,
    /// Training data and accuracy.
    pub training: TrainingSummary,
    /// The program that wrote it (`energyllm-models 0.1.0`).
    pub created_by: String,
}

/// The fitted model itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SavedModel {
    /// Iteration latency and power as boosted trees.
    Gbt(GbtPerfModel),
    /// The Wilkins bilinear energy and runtime model (boxed: it carries its fit statistics).
    Wilkins(Box<WilkinsModel>),
    /// Decode iterations per second.
    IterationRate(IterationRateModel),
}

/// A model with its description, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// What the model is.
    pub meta: ModelMeta,
    /// The model.
    pub model: SavedModel,
}

/// `energyllm-models <version>`, for [`ModelMeta::created_by`].
pub fn created_by() -> String {
    format!("energyllm-models {}", env!("CARGO_PKG_VERSION"))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl ModelFile {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let payload = postcard::to_allocvec(self)
            .map_err(|e| Error::model_file(&self.meta.family, format!("cannot encode: {e}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parses a model file's bytes; `name` (a path or label) names it in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::model_file(name, reason);
        if bytes.len() as u64 > MAX_MODEL_FILE_BYTES {
            return Err(err(format!("{} bytes is over the {MAX_MODEL_FILE_BYTES}-byte limit", bytes.len())));
        }
        if bytes.len() < HEADER_LEN {
            return Err(err(if bytes.len() >= 8 && bytes[..8] != MAGIC {
                "not an energyllm model file (wrong magic bytes)".into()
            } else {
                format!("truncated: {} bytes, shorter than the {HEADER_LEN}-byte header", bytes.len())
            }));
        }
        let (header, payload) = bytes.split_at(HEADER_LEN);
        if header[..8] != MAGIC {
            return Err(err("not an energyllm model file (wrong magic bytes)".into()));
        }
        let u16_at = |o: usize| u16::from_le_bytes([header[o], header[o + 1]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let version = u16_at(8);
        if version != FORMAT_VERSION {
            return Err(err(format!(
                "format version {version}, but this build reads version {FORMAT_VERSION}: refit the model with \
                 this energyllm (`energyllm fit …`) or use the energyllm release that wrote it"
            )));
        }
        let declared = u64_at(12);
        if declared > MAX_MODEL_FILE_BYTES {
            return Err(err(format!(
                "the header declares a {declared}-byte payload, over the {MAX_MODEL_FILE_BYTES}-byte limit"
            )));
        }
        if (payload.len() as u64) < declared {
            return Err(err(format!(
                "truncated: the header declares {declared} payload bytes but {} follow it",
                payload.len()
            )));
        }
        if (payload.len() as u64) > declared {
            return Err(err(format!(
                "{} bytes of trailing data after the {declared}-byte payload",
                payload.len() as u64 - declared
            )));
        }
        if fnv1a64(payload) != u64_at(20) {
            return Err(err(
                "corrupt: the payload checksum does not match (the file was altered or damaged)".into(),
            ));
        }
        let (file, rest): (ModelFile, &[u8]) =
            postcard::take_from_bytes(payload).map_err(|e| err(format!("cannot decode the payload: {e}")))?;
        if !rest.is_empty() {
            return Err(err(format!("{} undecoded bytes at the end of the payload", rest.len())));
        }
        Ok(file)
    }

    /// Writes the file.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.to_bytes()?).map_err(|e| Error::io(path, e))
    }

    /// Reads a file, refusing one over [`MAX_MODEL_FILE_BYTES`] before reading it.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len > MAX_MODEL_FILE_BYTES {
            return Err(Error::model_file(
                name,
                format!("{len} bytes is over the {MAX_MODEL_FILE_BYTES}-byte limit"),
            ));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        // `take` bounds the read even if the file grows after the size check.
        file.take(MAX_MODEL_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &name)
    }

    /// The model as a [`PerfModel`]; an iteration-rate model is not one (it predicts a rate, not
    /// latency and power).
    pub fn into_perf_model(self) -> Result<Box<dyn PerfModel>, Error> {
        match self.model {
            SavedModel::Gbt(m) => Ok(Box::new(m)),
            SavedModel::Wilkins(m) => Ok(m),
            SavedModel::IterationRate(_) => Err(Error::model_file(
                self.meta.family,
                "an iteration-rate model predicts iterations per second, not latency and power: load it with \
                 `ModelFile::load` and use `IterationRateModel`",
            )),
        }
    }
}
