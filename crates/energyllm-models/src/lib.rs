/*!
Performance and energy models: latency and power as functions of clock, batch and tokens.

Policies that look ahead (DynamoLLM-like, throttLL'eM-like, the heuristic, PPO's safety shield)
ask "what would this batch cost at that clock?" hundreds of times per decision, so the models
here are fitted offline from profiles and answer in about a microsecond. Every model family
follows linfa's shape: an unfitted parameter type with `fit` that returns a separate fitted type,
which implements [`PerfModel`](energyllm_core::PerfModel) where it predicts latency and power.

- **Profiles** ([`profile`]): the CSV schemas the profiler writes. [`BatchProfileRow`] is a
  superset of EnergyLLM's `performance_profile.csv`; [`IterationProfileRow`] holds one engine
  iteration with the five features ([`PERF_FEATURES`]: clock, batch, prefill, decode and KV
  tokens) and its latency and power. [`Dataset`] is the one training-set type (named features
  with units, one target).
- **Wilkins** ([`wilkins`]): `e = a0·tin + a1·tout + a2·tin·tout` for energy and runtime, fitted
  by least squares through the origin ([`linear`]) with uncentered and centered R², the F-test
  and coefficient p-values, as the paper reports them.
- **Gradient-boosted trees** ([`gbt`]): fitted with forust-ml, copied into the crate's own
  [`TreeEnsemble`] ([`tree`]), cross-validated by k-fold with a constant predictor beside it.
- **Iteration rate** ([`iteration_rate`]): throttLL'eM's iterations-per-second predictor with the
  batch and KV-use projection over a window of iterations.
- **ONNX** (`onnx`, behind the `onnx` cargo feature): any regressor tract runs (a PyTorch MLP, a
  scikit-learn linear model), and ONNX-ML `TreeEnsembleRegressor` graphs, which tract does not
  implement, read from the protobuf and evaluated by [`TreeEnsemble`].
- **Routing** ([`route`]): Wilkins et al.'s offline energy-optimal assignment of a query set
  to heterogeneous systems, solved exactly as a min-cost flow over query classes.
- **Model files** ([`file`](mod@file)): a versioned header, a checksum and a postcard payload that
  describes itself (features and units, training data, accuracy); bounded and validated on load.

Why one tree evaluator: the trees forust grows and the trees scikit-learn exports differ only in
how they are written down. Converting both into one flat, validated node array gives one code
path to make fast and one to harden against broken files, and keeps forust a fit-time detail: a
model file does not change when the learner does.

The profiler that produces the CSVs lives in energyllm-bench (it drives an `Engine` and a
`FrequencyActuator`); this crate does no I/O beyond reading and writing the files it is given.
*/
#![deny(missing_docs)]

pub mod dataset;
mod error;
pub mod file;
pub mod gbt;
pub mod iteration_rate;
pub mod linear;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod planning;
mod plugins;
pub mod profile;
pub mod route;
pub mod stats;
pub mod tree;
pub mod wilkins;

pub use dataset::{perf_features, Dataset, Quantity, PERF_FEATURES};
pub use error::Error;
pub use file::{ModelFile, ModelMeta, SavedModel, TrainingSummary};
pub use gbt::{cross_validate, CvReport, FittedGbt, GbtParams, GbtPerfModel, GbtPerfParams, TargetTransform};
pub use iteration_rate::{IterationRateModel, IterationRateParams, Projection, RunningRequest};
pub use linear::{ols_through_origin, OlsFit};
pub use planning::{FitError, PhysicalForm, PlanningModel, PlanningParams, PlanningSample};
pub use profile::{BatchProfileRow, IterationProfileRow, IterationTarget};
pub use route::{group_queries, Assignment, FittedRange, QueryClass, RouteConfig, RouteProblem, RouteSystem};
pub use stats::Accuracy;
pub use tree::TreeEnsemble;
pub use wilkins::{WilkinsModel, WilkinsParams, WilkinsSample};

/// Call from a binary so the linker keeps this crate's plugin registrations (inventory's
/// submissions in a crate nothing references are dropped).
pub fn link() {}
