//! Planning models for offline routing: a query's energy and runtime on one serving system,
//! fitted on a workload profile of the stack that will serve it (the simulator for planning
//! without hardware, a live engine for a real system), in a physical form whose every term is a
//! cost and so cannot go negative:
//!
//! ```text
//!   e(tin, tout) = e_req + e_in·tin + e_out·tout + e_ctx·tin·tout,   every coefficient ≥ 0
//! ```
//!
//! `e_req` is a per-request overhead, `e_in` the prefill cost per prompt token, `e_out` the decode
//! cost per output token at an empty context, and `e_ctx` the attention cost of each prompt token
//! at each decode step. Runtime has the same form. The Wilkins et al. fit
//! ([`crate::wilkins`]) has the last three terms without the sign constraint. Fitted on input
//! and output sweeps taken apart, it comes out with negative linear terms and extrapolates below
//! zero. That fit stays as the reproduction of the paper's measurements.
//!
//! **Fit.** Non-negative least squares on relative error: each row and its target are divided by
//! the target, so a 10 J query and a 10 kJ query weigh alike. With four coefficients the exact
//! non-negative optimum is found by trying every subset of free coefficients (15 least-squares
//! solves of at most four columns) and keeping the best one whose coefficients are all
//! non-negative. The optimum of a non-negative least-squares problem is the unconstrained
//! optimum on its set of positive coefficients, so one of those 15 solves is it. A
//! Lawson–Hanson active-set solver would find the same point, but for four columns it would only
//! add iterations and tolerances.
//!
//! **Validation.** The profile's (tin, tout) cells are split into `folds` groups. Each group is
//! predicted by a model fitted on the others, and the held-out error is reported apart from the
//! error on the data the model was fitted on. [`PlanningModel::in_range`] says whether a query
//! lies inside the fitted grid, so that routing can flag extrapolation instead of flooring it.

use serde::{Deserialize, Serialize};

use crate::linear::ols_through_origin;
use crate::Error;

/// One profiled query: its lengths and its share of the batch's energy and time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanningSample {
    /// Prompt tokens.
    pub input_tokens: f64,
    /// Output tokens.
    pub output_tokens: f64,
    /// Energy of one query (the batch's energy over its size), in joules.
    pub energy_j: f64,
    /// Runtime of one query (the batch's time over its size), in seconds.
    pub runtime_s: f64,
}

/// The unfitted planning model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanningParams {
    /// What the fit is of, e.g. `llama-2-7b on a100-80gb, batch 32, 1410 MHz`. Default: empty.
    pub label: String,
    /// Groups of (tin, tout) cells for cross-validation. Default: 5.
    pub folds: usize,
}

impl Default for PlanningParams {
    fn default() -> Self {
        PlanningParams { label: String::new(), folds: 5 }
    }
}

/// The coefficients `[e_req, e_in, e_out, e_ctx]` of one quantity, all non-negative.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhysicalForm {
    /// Per request, per prompt token, per output token, per (prompt token × output token).
    pub coefficients: [f64; 4],
}

impl PhysicalForm {
    /// The value at `(tin, tout)`.
    pub fn eval(&self, input_tokens: f64, output_tokens: f64) -> f64 {
        let [c0, c_in, c_out, c_ctx] = self.coefficients;
        c0 + c_in * input_tokens + c_out * output_tokens + c_ctx * input_tokens * output_tokens
    }
}

/// How well one quantity is predicted: mean and largest absolute percentage error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitError {
    /// Mean absolute percentage error, in percent.
    pub mape_pct: f64,
    /// Largest absolute percentage error, in percent.
    pub max_pct: f64,
}

impl FitError {
    fn of(pairs: impl Iterator<Item = (f64, f64)>) -> Self {
        let errs: Vec<f64> = pairs.map(|(truth, pred)| 100.0 * ((pred - truth) / truth).abs()).collect();
        let n = errs.len().max(1) as f64;
        FitError { mape_pct: errs.iter().sum::<f64>() / n, max_pct: errs.iter().copied().fold(0.0, f64::max) }
    }
}

/// The fitted model, with its error on the fitting data and on held-out cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanningModel {
    /// What the fit is of.
    pub label: String,
    /// Energy of one query, in joules.
    pub energy_j: PhysicalForm,
    /// Runtime of one query, in seconds.
    pub runtime_s: PhysicalForm,
    /// Smallest and largest prompt length in the profile.
    pub input_range: [f64; 2],
    /// Smallest and largest output length in the profile.
    pub output_range: [f64; 2],
    /// Energy error on the samples the model was fitted on.
    pub energy_fit_error: FitError,
    /// Energy error on cells held out of the fit (cross-validation over `folds` groups).
    pub energy_held_out_error: FitError,
    /// Runtime error on cells held out of the fit.
    pub runtime_held_out_error: FitError,
    /// Groups the cells were split into for the held-out error.
    pub folds: usize,
    /// Distinct (tin, tout) cells in the profile.
    pub cells: usize,
}

impl PlanningModel {
    /// Whether `(tin, tout)` lies inside the profiled grid.
    pub fn in_range(&self, input_tokens: f64, output_tokens: f64) -> bool {
        let inside = |v: f64, [lo, hi]: [f64; 2]| v >= lo && v <= hi;
        inside(input_tokens, self.input_range) && inside(output_tokens, self.output_range)
    }
}

/// The design row `[1, tin, tout, tin·tout]`.
fn terms(tin: f64, tout: f64) -> [f64; 4] {
    [1.0, tin, tout, tin * tout]
}

/// Non-negative least squares of `y ≈ X·c` on relative error (see the module notes).
fn fit_form(samples: &[&PlanningSample], target: fn(&PlanningSample) -> f64) -> Result<PhysicalForm, String> {
    let mut best: Option<(f64, [f64; 4])> = None;
    for mask in 1u32..16 {
        let cols: Vec<usize> = (0..4).filter(|j| mask & (1 << j) != 0).collect();
        if samples.len() <= cols.len() {
            continue;
        }
        let mut x = Vec::with_capacity(samples.len() * cols.len());
        let mut y = Vec::with_capacity(samples.len());
        for s in samples {
            let t = target(s);
            let row = terms(s.input_tokens, s.output_tokens);
            x.extend(cols.iter().map(|&j| row[j] / t));
            y.push(1.0);
        }
        // A subset whose columns are collinear on this grid is not a candidate.
        let Ok(fit) = ols_through_origin(&x, cols.len(), &y) else { continue };
        if fit.coefficients.iter().any(|&c| c < 0.0) {
            continue;
        }
        let mut c = [0.0; 4];
        for (&j, &v) in cols.iter().zip(&fit.coefficients) {
            c[j] = v;
        }
        if best.is_none_or(|(rss, _)| fit.rss < rss) {
            best = Some((fit.rss, c));
        }
    }
    best.map(|(_, coefficients)| PhysicalForm { coefficients })
        .ok_or_else(|| "no subset of the terms fits with non-negative coefficients".to_owned())
}

impl PlanningParams {
    /// Fits energy and runtime on `samples` and cross-validates over their cells.
    pub fn fit(&self, samples: &[PlanningSample]) -> Result<PlanningModel, Error> {
        let err = |reason: String| Error::fit("planning", format!("{}: {reason}", self.label));
        if self.folds < 2 {
            return Err(Error::param("planning", "folds must be ≥ 2"));
        }
        if let Some(s) = samples.iter().find(|s| {
            ![s.input_tokens, s.output_tokens, s.energy_j, s.runtime_s]
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
        }) {
            return Err(err(format!(
                "a sample has a length, energy or runtime that is not a positive number: {s:?}"
            )));
        }
        let mut cells: Vec<(u64, u64)> =
            samples.iter().map(|s| (s.input_tokens.to_bits(), s.output_tokens.to_bits())).collect();
        cells.sort_unstable();
        cells.dedup();
        let distinct = |f: fn(&PlanningSample) -> f64| {
            let mut v: Vec<u64> = samples.iter().map(|s| f(s).to_bits()).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        if distinct(|s| s.input_tokens) < 2
            || distinct(|s| s.output_tokens) < 2
            || cells.len() < 2 * self.folds
        {
            return Err(err(format!(
                "{} cells with {} prompt and {} output lengths: profile a grid of at least two of each and \
                 {} cells, so that the terms can be told apart and every fold holds cells out",
                cells.len(),
                distinct(|s| s.input_tokens),
                distinct(|s| s.output_tokens),
                2 * self.folds
            )));
        }
        let all: Vec<&PlanningSample> = samples.iter().collect();
        let energy_j = fit_form(&all, |s| s.energy_j).map_err(err)?;
        let runtime_s = fit_form(&all, |s| s.runtime_s).map_err(err)?;

        // Held-out error: cell k goes to fold k mod folds (cells sorted by lengths, so each
        // fold spans the grid).
        let fold_of = |s: &PlanningSample| {
            let key = (s.input_tokens.to_bits(), s.output_tokens.to_bits());
            cells.binary_search(&key).unwrap_or(0) % self.folds
        };
        let mut held_e = Vec::new();
        let mut held_r = Vec::new();
        for fold in 0..self.folds {
            let train: Vec<&PlanningSample> = samples.iter().filter(|s| fold_of(s) != fold).collect();
            let e = fit_form(&train, |s| s.energy_j).map_err(err)?;
            let r = fit_form(&train, |s| s.runtime_s).map_err(err)?;
            for s in samples.iter().filter(|s| fold_of(s) == fold) {
                held_e.push((s.energy_j, e.eval(s.input_tokens, s.output_tokens)));
                held_r.push((s.runtime_s, r.eval(s.input_tokens, s.output_tokens)));
            }
        }
        let range = |f: fn(&PlanningSample) -> f64| {
            samples
                .iter()
                .map(f)
                .fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], v| [lo.min(v), hi.max(v)])
        };
        Ok(PlanningModel {
            label: self.label.clone(),
            energy_fit_error: FitError::of(
                samples.iter().map(|s| (s.energy_j, energy_j.eval(s.input_tokens, s.output_tokens))),
            ),
            energy_held_out_error: FitError::of(held_e.into_iter()),
            runtime_held_out_error: FitError::of(held_r.into_iter()),
            energy_j,
            runtime_s,
            input_range: range(|s| s.input_tokens),
            output_range: range(|s| s.output_tokens),
            folds: self.folds,
            cells: cells.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(f: impl Fn(f64, f64) -> f64) -> Vec<PlanningSample> {
        let mut v = Vec::new();
        for tin in [32.0, 128.0, 512.0, 1024.0, 2048.0] {
            for tout in [16.0, 64.0, 256.0, 512.0] {
                let e = f(tin, tout);
                v.push(PlanningSample {
                    input_tokens: tin,
                    output_tokens: tout,
                    energy_j: e,
                    runtime_s: e / 300.0,
                });
            }
        }
        v
    }

    #[test]
    fn recovers_a_physical_model_exactly_and_validates_on_held_out_cells() {
        let truth = |tin: f64, tout: f64| 2.0 + 0.01 * tin + 0.5 * tout + 1e-4 * tin * tout;
        let m = PlanningParams { label: "t".into(), folds: 5 }.fit(&grid(truth)).unwrap();
        for (got, want) in m.energy_j.coefficients.iter().zip([2.0, 0.01, 0.5, 1e-4]) {
            assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{:?}", m.energy_j);
        }
        assert!(m.energy_held_out_error.max_pct < 1e-6 && m.cells == 20);
        assert!(m.in_range(100.0, 100.0) && !m.in_range(4096.0, 100.0) && !m.in_range(100.0, 8.0));
    }

    #[test]
    fn a_term_that_would_fit_negative_is_held_at_zero() {
        // Energy that falls with the prompt length: unconstrained, e_in would be negative.
        let data = grid(|tin, tout| (5.0 + 0.4 * tout) * (1.0 - tin / 8192.0));
        let m = PlanningParams::default().fit(&data).unwrap();
        assert!(m.energy_j.coefficients.iter().all(|&c| c >= 0.0), "{:?}", m.energy_j);
        assert_eq!(m.energy_j.coefficients[1], 0.0, "{:?}", m.energy_j);
        // Never below zero anywhere, however far out.
        assert!(m.energy_j.eval(1e6, 1e6) >= 0.0 && m.energy_j.eval(0.0, 0.0) >= 0.0);
        assert!(m.energy_held_out_error.mape_pct > m.energy_fit_error.mape_pct * 0.5);
    }

    #[test]
    fn a_one_dimensional_sweep_or_a_bad_sample_is_refused_with_the_reason() {
        let sweep: Vec<PlanningSample> =
            grid(|tin, tout| tin + tout).into_iter().filter(|s| s.output_tokens == 16.0).collect();
        let e = PlanningParams::default().fit(&sweep).unwrap_err().to_string();
        assert!(e.contains("1 output lengths"), "{e}");
        let mut bad = grid(|tin, tout| tin + tout);
        bad[3].energy_j = f64::NAN;
        let e = PlanningParams::default().fit(&bad).unwrap_err().to_string();
        assert!(e.contains("not a positive number"), "{e}");
        assert!(PlanningParams { folds: 1, ..PlanningParams::default() }.fit(&grid(|a, b| a + b)).is_err());
    }
}
