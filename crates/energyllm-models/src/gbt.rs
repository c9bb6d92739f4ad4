//! Gradient-boosted trees: fitting with forust-ml, evaluating with the native [`TreeEnsemble`].
//!
//! [`GbtParams`] are the unfitted hyperparameters; [`GbtParams::fit`] grows the trees with
//! forust-ml (XGBoost's algorithm, pure Rust) and copies them into a [`TreeEnsemble`], so the
//! fitted model, its file and its prediction speed do not depend on forust's internals.
//! [`GbtPerfModel`] pairs a latency and a power model over the five performance features and
//! implements [`PerfModel`]. [`cross_validate`] reports k-fold held-out R² and MAPE beside a
//! constant predictor's.
//!
//! Latency is fitted on its logarithm by default: iteration times span three orders of magnitude
//! (a 5 ms decode step to a second of prefill), and trees fitted on the raw scale spend their
//! splits on the slowest iterations and leave large relative errors on the common fast ones.

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use energyllm_core::{PerfModel, PerfPrediction, PerfQuery};

use crate::dataset::{perf_features, Dataset};
use crate::profile::{iteration_dataset, IterationProfileRow, IterationTarget};
use crate::stats::{complement, kfold, Accuracy};
use crate::tree::{Aggregate, Node, NodeKind, TreeEnsemble};
use crate::Error;

/// How the target is transformed before fitting (and inverted after predicting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetTransform {
    /// Fit the target as it is.
    Identity,
    /// Fit `ln(target)`; the target must be positive. Predictions are `exp(output)`.
    Log,
}

impl TargetTransform {
    fn forward(self, y: f64) -> f64 {
        match self {
            TargetTransform::Identity => y,
            TargetTransform::Log => y.ln(),
        }
    }
    fn inverse(self, z: f64) -> f64 {
        match self {
            TargetTransform::Identity => z,
            TargetTransform::Log => z.exp(),
        }
    }
}

/// Hyperparameters of one boosted regressor (XGBoost's names and meanings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbtParams {
    /// Trees in the ensemble. Default 80 (with the default learning rate, as accurate on
    /// simulator profiles as 120 at 0.2, and within the 2 µs prediction budget for two models).
    pub trees: usize,
    /// Shrinkage applied to each tree's leaves. Default 0.3.
    pub learning_rate: f32,
    /// Depth limit of each tree. Default 6.
    pub max_depth: usize,
    /// Minimum hessian sum (for squared loss: rows) in a leaf. Default 1.
    pub min_leaf_weight: f32,
    /// L2 regularisation of leaf weights. Default 1.
    pub l2: f32,
    /// Histogram bins per feature. Default 256.
    pub nbins: u16,
    /// Seed for the learner's randomness. Default 0.
    pub seed: u64,
    /// Target transform. Default: identity.
    pub transform: TargetTransform,
}

impl Default for GbtParams {
    fn default() -> Self {
        GbtParams {
            trees: 80,
            learning_rate: 0.3,
            max_depth: 6,
            min_leaf_weight: 1.0,
            l2: 1.0,
            nbins: 256,
            seed: 0,
            transform: TargetTransform::Identity,
        }
    }
}

/// A fitted boosted regressor: trees and the transform to undo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FittedGbt {
    /// The trees.
    pub ensemble: TreeEnsemble,
    /// Applied to the target before fitting; inverted on prediction.
    pub transform: TargetTransform,
}

impl FittedGbt {
    /// Prediction for one feature vector.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.transform.inverse(self.ensemble.predict(x))
    }

    /// Predictions for every row of `data`.
    pub fn predict_all(&self, data: &Dataset) -> Vec<f64> {
        data.rows().map(|r| self.predict(r)).collect()
    }
}

impl GbtParams {
    /// Checks every hyperparameter; the message names the first bad one and its range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |r: String| Err(Error::param("gbt", r));
        if self.trees == 0 || self.trees > 100_000 {
            return bad(format!("trees must be in 1..=100000, got {}", self.trees));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad(format!("learning_rate must be in (0, 1], got {}", self.learning_rate));
        }
        if self.max_depth == 0 || self.max_depth > 32 {
            return bad(format!("max_depth must be in 1..=32, got {}", self.max_depth));
        }
        if !(self.min_leaf_weight.is_finite() && self.min_leaf_weight >= 0.0) {
            return bad(format!("min_leaf_weight must be ≥ 0, got {}", self.min_leaf_weight));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad(format!("l2 must be ≥ 0, got {}", self.l2));
        }
        if self.nbins < 2 {
            return bad(format!("nbins must be ≥ 2, got {}", self.nbins));
        }
        Ok(())
    }

    /// Fits the trees on `data`.
    ///
    /// Features that take one value in `data` are left out of the learner (forust refuses
    /// them) and never split on; the fitted model still reads the full feature vector.
    pub fn fit(&self, data: &Dataset) -> Result<FittedGbt, Error> {
        self.validate()?;
        let n = data.len();
        if n < 2 {
            return Err(Error::fit("gbt", format!("{n} rows: need at least 2")));
        }
        if self.transform == TargetTransform::Log {
            if let Some(i) = data.targets().iter().position(|&y| y <= 0.0) {
                return Err(Error::fit(
                    "gbt",
                    format!(
                        "row {i}: `{}` = {} but a log-target fit needs positive values",
                        data.target().name,
                        data.targets()[i]
                    ),
                ));
            }
        }
        let y: Vec<f64> = data.targets().iter().map(|&v| self.transform.forward(v)).collect();
        // Columns that vary, and the column-major matrix forust wants.
        let mut kept = Vec::new();
        let mut columns = Vec::with_capacity(n * data.n_features());
        for j in 0..data.n_features() {
            let col = data.column(j);
            if col.iter().any(|&v| v != col[0]) {
                kept.push(j);
                columns.extend(col);
            }
        }
        let base_only = kept.is_empty();
        if base_only {
            // Nothing to split on: the best model is the mean, one leaf.
            let mean = y.iter().sum::<f64>() / n as f64;
            let ensemble = TreeEnsemble::from_trees(
                data.n_features() as u32,
                &[vec![Node::leaf(0.0)]],
                mean,
                Aggregate::Sum,
            )
            .map_err(|e| Error::fit("gbt", e))?;
            return Ok(FittedGbt { ensemble, transform: self.transform });
        }
        let matrix = Matrix::new(&columns, n, kept.len());
        let booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_iterations(self.trees)
            .set_learning_rate(self.learning_rate)
            .set_max_depth(self.max_depth)
            .set_min_leaf_weight(self.min_leaf_weight)
            .set_l2(self.l2)
            .set_nbins(self.nbins)
            .set_seed(self.seed)
            // Single-threaded: parallel histogram sums can change the last bits between runs,
            // and the same seed must give the same model.
            .set_parallel(false);
        let mut booster = booster;
        booster.fit_unweighted(&matrix, &y, None).map_err(|e| Error::fit("gbt", e.to_string()))?;
        let mut trees = Vec::with_capacity(booster.trees.len());
        for (t, tree) in booster.trees.iter().enumerate() {
            let mut nodes = Vec::with_capacity(tree.nodes.len());
            for (i, n) in tree.nodes.iter().enumerate() {
                if n.is_leaf {
                    nodes.push(Node::leaf(f64::from(n.weight_value)));
                    continue;
                }
                let missing_true = if n.missing_node == n.left_child {
                    true
                } else if n.missing_node == n.right_child {
                    false
                } else {
                    return Err(Error::fit(
                        "gbt",
                        format!("tree {t} node {i} has a separate missing-value branch"),
                    ));
                };
                let feature = kept.get(n.split_feature).copied().ok_or_else(|| {
                    Error::fit(
                        "gbt",
                        format!("tree {t} node {i} splits on unknown column {}", n.split_feature),
                    )
                })?;
                let child = |c: usize| u32::try_from(c).map_err(|_| Error::fit("gbt", "tree too large"));
                nodes.push(Node {
                    kind: NodeKind::Lt,
                    feature: feature as u32,
                    value: n.split_value,
                    true_child: child(n.left_child)?,
                    false_child: child(n.right_child)?,
                    missing_true,
                });
            }
            trees.push(nodes);
        }
        let ensemble =
            TreeEnsemble::from_trees(data.n_features() as u32, &trees, booster.base_score, Aggregate::Sum)
                .map_err(|e| Error::fit("gbt", format!("the learner produced an invalid tree: {e}")))?;
        Ok(FittedGbt { ensemble, transform: self.transform })
    }
}

/// Held-out accuracy from k-fold cross-validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    /// Folds.
    pub folds: usize,
    /// The model's accuracy over every held-out row (each predicted by the model fitted without
    /// its fold).
    pub model: Accuracy,
    /// A constant predictor's (the training folds' mean), on the same held-out rows.
    pub baseline: Accuracy,
    /// The model's R² on each fold.
    pub fold_r2: Vec<f64>,
}

/// k-fold cross-validation of `params` on `data`, folds drawn with `seed`.
pub fn cross_validate(
    params: &GbtParams,
    data: &Dataset,
    folds: usize,
    seed: u64,
) -> Result<CvReport, Error> {
    if folds < 2 || folds > data.len() {
        return Err(Error::param(
            "gbt",
            format!("folds must be in 2..={} (the rows), got {folds}", data.len()),
        ));
    }
    let n = data.len();
    let mut predicted = vec![0.0; n];
    let mut constant = vec![0.0; n];
    let mut fold_r2 = Vec::with_capacity(folds);
    for test in kfold(n, folds, seed) {
        let train = data.select(&complement(n, &test));
        let held = data.select(&test);
        let model = params.fit(&train)?;
        let mean = train.targets().iter().sum::<f64>() / train.len() as f64;
        let p = model.predict_all(&held);
        fold_r2.push(Accuracy::of(held.targets(), &p).r2);
        for (&row, v) in test.iter().zip(p) {
            predicted[row] = v;
            constant[row] = mean;
        }
    }
    Ok(CvReport {
        folds,
        model: Accuracy::of(data.targets(), &predicted),
        baseline: Accuracy::of(data.targets(), &constant),
        fold_r2,
    })
}

/// Hyperparameters of the latency and power regressors of a [`GbtPerfModel`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbtPerfParams {
    /// Latency regressor. Default: [`GbtParams::default`] on the log of latency.
    pub latency: GbtParams,
    /// Power regressor. Default: [`GbtParams::default`].
    pub power: GbtParams,
}

impl Default for GbtPerfParams {
    fn default() -> Self {
        GbtPerfParams {
            latency: GbtParams { transform: TargetTransform::Log, ..GbtParams::default() },
            power: GbtParams::default(),
        }
    }
}

/// Iteration latency and power as boosted trees over (clock, batch, prefill, decode and KV
/// tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbtPerfModel {
    /// Iteration latency, in seconds.
    pub latency: FittedGbt,
    /// Mean board power over the iteration, in watts.
    pub power: FittedGbt,
}

impl GbtPerfParams {
    /// Fits both regressors on an iteration profile.
    pub fn fit(&self, rows: &[IterationProfileRow]) -> Result<GbtPerfModel, Error> {
        Ok(GbtPerfModel {
            latency: self.latency.fit(&iteration_dataset(rows, IterationTarget::Latency)?)?,
            power: self.power.fit(&iteration_dataset(rows, IterationTarget::Power)?)?,
        })
    }
}

impl PerfModel for GbtPerfModel {
    fn name(&self) -> &str {
        "gbt"
    }

    #[inline]
    fn predict(&self, query: &PerfQuery) -> PerfPrediction {
        let x = perf_features(query);
        // Trees output leaf sums, always finite; the clamp keeps an identity-transformed power
        // fit from dipping below zero far outside its data.
        PerfPrediction {
            latency_s: self.latency.predict(&x).max(0.0),
            power_w: self.power.predict(&x).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dataset::Quantity;

    fn data(n: usize) -> Dataset {
        let mut records = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let a = (i % 17) as f64;
            let b = (i % 5) as f64;
            records.extend([a, b, 3.0]);
            y.push(1.0 + a * a + 4.0 * b);
        }
        let f = vec![Quantity::new("a", "-"), Quantity::new("b", "-"), Quantity::new("c", "-")];
        Dataset::new(f, Quantity::new("y", "-"), records, y).unwrap()
    }

    #[test]
    fn fits_a_smooth_function_and_skips_constant_columns() {
        let d = data(400);
        let m = GbtParams::default().fit(&d).unwrap();
        let acc = Accuracy::of(d.targets(), &m.predict_all(&d));
        assert!(acc.r2 > 0.99, "{acc:?}");
        // Column c is constant: no node may split on it.
        assert!(m.ensemble.n_features() == 3);
        let log = GbtParams { transform: TargetTransform::Log, ..GbtParams::default() }.fit(&d).unwrap();
        assert!(Accuracy::of(d.targets(), &log.predict_all(&d)).mape < 0.05);
    }

    #[test]
    fn same_seed_same_model() {
        let d = data(200);
        assert_eq!(GbtParams::default().fit(&d).unwrap(), GbtParams::default().fit(&d).unwrap());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (p, needle) in [
            (GbtParams { trees: 0, ..GbtParams::default() }, "trees"),
            (GbtParams { learning_rate: 0.0, ..GbtParams::default() }, "learning_rate"),
            (GbtParams { max_depth: 0, ..GbtParams::default() }, "max_depth"),
            (GbtParams { nbins: 1, ..GbtParams::default() }, "nbins"),
        ] {
            let e = p.fit(&data(10)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let e = cross_validate(&GbtParams::default(), &data(10), 1, 0).unwrap_err().to_string();
        assert!(e.contains("folds"), "{e}");
    }
}
