//! Least squares through the origin, with the statistics a regression table reports.
//!
//! The Wilkins model has no intercept, so this fits `y = X·β` and reports what statsmodels
//! reports for such a fit: R² and the F-test are *uncentered* (measured against zero, not the
//! mean: `R²ᵤ = 1 − RSS/Σy²`, `F = (R²ᵤ/p) / ((1 − R²ᵤ)/(n − p))` on `(p, n − p)` degrees of
//! freedom), with the centered `R² = 1 − RSS/Σ(y − ȳ)²` beside it, labelled, because the two
//! differ a lot when the data sit far from the origin. Coefficient standard errors come from
//! `σ²·(XᵀX)⁻¹` with `σ² = RSS/(n − p)`, and p-values from Student's t and Fisher's F
//! distributions (statrs).
//!
//! The solve is a Householder QR of the column-scaled design matrix. Scaling matters here:
//! `tin·tout` runs to millions while `tin` is in the hundreds, and the normal equations would
//! square that spread.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, FisherSnedecor, StudentsT};

use crate::Error;

/// A least-squares fit through the origin and its statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OlsFit {
    /// Coefficients, one per column.
    pub coefficients: Vec<f64>,
    /// Standard error of each coefficient.
    pub std_errors: Vec<f64>,
    /// t statistic of each coefficient (`coefficient / std_error`).
    pub t_values: Vec<f64>,
    /// Two-sided p-value of each t statistic.
    pub p_values: Vec<f64>,
    /// Observations.
    pub n: usize,
    /// Model degrees of freedom: the number of coefficients `p` (no intercept).
    pub df_model: usize,
    /// Residual degrees of freedom, `n − p`.
    pub df_resid: usize,
    /// Residual sum of squares.
    pub rss: f64,
    /// Uncentered R², `1 − RSS/Σy²` (statsmodels' `rsquared` for a fit without a constant).
    pub r2_uncentered: f64,
    /// Centered R², `1 − RSS/Σ(y − ȳ)²`; can be negative for a fit through the origin.
    pub r2_centered: f64,
    /// F statistic of the uncentered test that all coefficients are zero.
    pub f_statistic: f64,
    /// p-value of the F statistic.
    pub f_p_value: f64,
}

impl OlsFit {
    /// `X·β` for one row.
    pub fn predict(&self, row: &[f64]) -> f64 {
        self.coefficients.iter().zip(row).map(|(b, x)| b * x).sum()
    }
}

/// Fits `y = X·β` by least squares, `x` row-major with `p` columns.
///
/// Fails when there are not more rows than columns, a value is not finite, a column is all
/// zeros, or the columns are collinear.
// Index loops read like the matrix algebra they implement.
#[allow(clippy::needless_range_loop)]
pub fn ols_through_origin(x: &[f64], p: usize, y: &[f64]) -> Result<OlsFit, Error> {
    let n = y.len();
    let err = |reason: String| Error::fit("least squares", reason);
    if p == 0 || x.len() != n * p {
        return Err(err(format!("{} values do not make {n} rows of {p} columns", x.len())));
    }
    if n <= p {
        return Err(err(format!(
            "{n} observations for {p} coefficients: need more observations than coefficients"
        )));
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(err("a value is not finite".into()));
    }
    // Column scales, so that every column of the matrix QR sees has unit norm.
    let scale: Vec<f64> = (0..p).map(|j| (0..n).map(|i| x[i * p + j].powi(2)).sum::<f64>().sqrt()).collect();
    if let Some(j) = scale.iter().position(|&s| s == 0.0) {
        return Err(err(format!("column {j} is all zeros")));
    }
    // Column-major copy of the scaled design, and the right-hand side, reduced in place.
    let mut a: Vec<Vec<f64>> = (0..p).map(|j| (0..n).map(|i| x[i * p + j] / scale[j]).collect()).collect();
    let mut qty = y.to_vec();
    for k in 0..p {
        let norm = a[k][k..].iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm < 1e-12 {
            return Err(err(format!(
                "column {k} is a linear combination of the columns before it (collinear)"
            )));
        }
        let alpha = if a[k][k] > 0.0 { -norm } else { norm };
        // Householder vector v = a_k[k..] − α·e₁, applied as H = I − 2vvᵀ/(vᵀv).
        let mut v = a[k][k..].to_vec();
        v[0] -= alpha;
        let vtv: f64 = v.iter().map(|t| t * t).sum();
        if vtv > 0.0 {
            for col in a.iter_mut().skip(k) {
                let d = 2.0 * v.iter().zip(&col[k..]).map(|(s, t)| s * t).sum::<f64>() / vtv;
                for (c, vi) in col[k..].iter_mut().zip(&v) {
                    *c -= d * vi;
                }
            }
            let d = 2.0 * v.iter().zip(&qty[k..]).map(|(s, t)| s * t).sum::<f64>() / vtv;
            for (c, vi) in qty[k..].iter_mut().zip(&v) {
                *c -= d * vi;
            }
        }
    }
    // R is the upper p×p block: r(i, j) = a[j][i] for i ≤ j.
    let r = |i: usize, j: usize| a[j][i];
    let rmax = (0..p).map(|i| r(i, i).abs()).fold(0.0, f64::max);
    if (0..p).any(|i| r(i, i).abs() < 1e-10 * rmax) {
        return Err(err("the columns are collinear (the design matrix is rank-deficient)".into()));
    }
    // Back substitution R·b = Qᵀy, then undo the scaling.
    let mut b = vec![0.0; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|j| r(i, j) * b[j]).sum();
        b[i] = (qty[i] - s) / r(i, i);
    }
    let coefficients: Vec<f64> = b.iter().zip(&scale).map(|(bi, s)| bi / s).collect();
    // R⁻¹ (upper triangular), for (XᵀX)⁻¹ = S⁻¹ R⁻¹ R⁻ᵀ S⁻¹.
    let mut rinv = vec![vec![0.0; p]; p];
    for j in 0..p {
        rinv[j][j] = 1.0 / r(j, j);
        for i in (0..j).rev() {
            let s: f64 = (i + 1..=j).map(|k| r(i, k) * rinv[k][j]).sum();
            rinv[i][j] = -s / r(i, i);
        }
    }
    let rss: f64 = (0..n)
        .map(|i| {
            let fit: f64 = (0..p).map(|j| x[i * p + j] * coefficients[j]).sum();
            (y[i] - fit).powi(2)
        })
        .sum();
    let df_resid = n - p;
    let sigma2 = rss / df_resid as f64;
    let std_errors: Vec<f64> = (0..p)
        .map(|j| {
            let c: f64 = (j..p).map(|k| rinv[j][k] * rinv[j][k]).sum();
            (sigma2 * c).sqrt() / scale[j]
        })
        .collect();
    let t_dist =
        StudentsT::new(0.0, 1.0, df_resid as f64).map_err(|e| err(format!("t distribution: {e}")))?;
    let t_values: Vec<f64> = coefficients
        .iter()
        .zip(&std_errors)
        .map(|(c, s)| if *s > 0.0 { c / s } else { f64::INFINITY.copysign(*c) })
        .collect();
    let p_values =
        t_values.iter().map(|t| if t.is_finite() { 2.0 * t_dist.sf(t.abs()) } else { 0.0 }).collect();
    let sum_y2: f64 = y.iter().map(|v| v * v).sum();
    let mean = y.iter().sum::<f64>() / n as f64;
    let tss: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let r2_uncentered = if sum_y2 > 0.0 { 1.0 - rss / sum_y2 } else { f64::NAN };
    let r2_centered = if tss > 0.0 { 1.0 - rss / tss } else { f64::NAN };
    let explained = sum_y2 - rss;
    let f_statistic = if rss > 0.0 { (explained / p as f64) / sigma2 } else { f64::INFINITY };
    let f_dist =
        FisherSnedecor::new(p as f64, df_resid as f64).map_err(|e| err(format!("F distribution: {e}")))?;
    let f_p_value = if f_statistic.is_finite() { f_dist.sf(f_statistic.max(0.0)) } else { 0.0 };
    Ok(OlsFit {
        coefficients,
        std_errors,
        t_values,
        p_values,
        n,
        df_model: p,
        df_resid,
        rss,
        r2_uncentered,
        r2_centered,
        f_statistic,
        f_p_value,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    /// One regressor, by hand. x = 1, 2, 3, 4; y = 2, 4, 5, 9.
    /// Σxy = 2 + 8 + 15 + 36 = 61, Σx² = 30 → b = 61/30.
    /// Fitted: 61/30·(1, 2, 3, 4); residuals y − fit = (−0.0333…, −0.0666…, −1.1, 0.8666…).
    /// RSS = Σy² − b·Σxy = 126 − 61²/30 = 126 − 124.0333… = 59/30 = 1.9666….
    /// σ² = RSS/3 = 59/90; se(b) = √(σ²/Σx²) = √(59/2700).
    /// R²ᵤ = 1 − (59/30)/126 = 1 − 59/3780; F = (Σy² − RSS)/1 / σ² = (3721/30)/(59/90) = 11163/59.
    /// Centered: ȳ = 5, TSS = 9 + 1 + 0 + 16 = 26 → R²꜀ = 1 − (59/30)/26 = 1 − 59/780.
    #[test]
    fn one_regressor_matches_the_hand_computation() {
        let fit = ols_through_origin(&[1.0, 2.0, 3.0, 4.0], 1, &[2.0, 4.0, 5.0, 9.0]).unwrap();
        assert!(close(fit.coefficients[0], 61.0 / 30.0, 1e-12));
        assert!(close(fit.rss, 59.0 / 30.0, 1e-12));
        assert!(close(fit.std_errors[0], (59.0f64 / 2700.0).sqrt(), 1e-12));
        assert!(close(fit.r2_uncentered, 1.0 - 59.0 / 3780.0, 1e-12));
        assert!(close(fit.r2_centered, 1.0 - 59.0 / 780.0, 1e-12));
        assert!(close(fit.f_statistic, 11163.0 / 59.0, 1e-12));
        // With one regressor F = t², and both tests give the same p-value.
        assert!(close(fit.t_values[0].powi(2), fit.f_statistic, 1e-12));
        assert!(close(fit.p_values[0], fit.f_p_value, 1e-9));
        // F = 189.2 on (1, 3) degrees of freedom: p = 8.3152e-4 (scipy.stats.f.sf(11163/59, 1, 3)).
        assert!(close(fit.f_p_value, 8.315246617531998e-4, 1e-6), "{}", fit.f_p_value);
        assert_eq!((fit.n, fit.df_model, fit.df_resid), (4, 1, 3));
    }

    #[test]
    fn recovers_known_coefficients_from_exact_data() {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for tin in [8.0, 64.0, 256.0, 1024.0] {
            for tout in [16.0, 128.0, 1024.0] {
                x.extend([tin, tout, tin * tout]);
                y.push(0.5 * tin + 3.0 * tout + 0.002 * tin * tout);
            }
        }
        let fit = ols_through_origin(&x, 3, &y).unwrap();
        for (b, want) in fit.coefficients.iter().zip([0.5, 3.0, 0.002]) {
            assert!(close(*b, want, 1e-9), "{b} vs {want}");
        }
        assert!(fit.rss < 1e-12 * y.iter().map(|v| v * v).sum::<f64>());
    }

    #[test]
    fn refuses_what_it_cannot_fit() {
        let e = ols_through_origin(&[1.0, 2.0], 2, &[1.0]).unwrap_err().to_string();
        assert!(e.contains("need more observations"), "{e}");
        let e =
            ols_through_origin(&[1.0, 0.0, 2.0, 0.0, 3.0, 0.0], 2, &[1.0, 2.0, 3.0]).unwrap_err().to_string();
        assert!(e.contains("column 1 is all zeros"), "{e}");
        let e =
            ols_through_origin(&[1.0, 2.0, 2.0, 4.0, 3.0, 6.0], 2, &[1.0, 2.0, 4.0]).unwrap_err().to_string();
        assert!(e.contains("collinear"), "{e}");
        let e = ols_through_origin(&[1.0, f64::NAN, 3.0], 1, &[1.0, 2.0, 3.0]).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
    }
}
