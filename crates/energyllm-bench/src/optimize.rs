//! A small Nelder–Mead minimiser for fitting a handful of simulator constants.
//!
//! Written here rather than pulled in (argmin) because the fits have at most eight parameters,
//! run once in `cargo xtask calibrate`, and need nothing beyond the textbook simplex method.

/// Minimises `f` from `x0` with initial steps `step`; returns the best point and its value.
/// Deterministic: the same inputs give the same result.
pub fn nelder_mead(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: &[f64],
    max_evals: usize,
) -> (Vec<f64>, f64) {
    let n = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    let mut evals = 0;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    simplex.push((x0.to_vec(), eval(x0, &mut evals)));
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] += step[i];
        let v = eval(&x, &mut evals);
        simplex.push((x, v));
    }
    while evals < max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        if (worst - best).abs() <= 1e-12 * (1.0 + best.abs()) {
            break;
        }
        let centroid: Vec<f64> =
            (0..n).map(|j| simplex[..n].iter().map(|p| p.0[j]).sum::<f64>() / n as f64).collect();
        let along = |t: f64| -> Vec<f64> {
            (0..n).map(|j| centroid[j] + t * (simplex[n].0[j] - centroid[j])).collect()
        };
        let reflected = along(-1.0);
        let fr = eval(&reflected, &mut evals);
        if fr < simplex[0].1 {
            let expanded = along(-2.0);
            let fe = eval(&expanded, &mut evals);
            simplex[n] = if fe < fr { (expanded, fe) } else { (reflected, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (reflected, fr);
        } else {
            let contracted = if fr < simplex[n].1 { along(-0.5) } else { along(0.5) };
            let fc = eval(&contracted, &mut evals);
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (contracted, fc);
            } else {
                let x_best = simplex[0].0.clone();
                for p in simplex.iter_mut().skip(1) {
                    p.0 = (0..n).map(|j| x_best[j] + 0.5 * (p.0[j] - x_best[j])).collect();
                    p.1 = eval(&p.0, &mut evals);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

/// The best objective with parameter `k` held at `held` and the others refitted from `x_best`.
pub fn held_at(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x_best: &[f64],
    step: &[f64],
    k: usize,
    held: f64,
    max_evals: usize,
) -> f64 {
    let others: Vec<usize> = (0..x_best.len()).filter(|&i| i != k).collect();
    let mut reduced = |y: &[f64]| {
        let mut x = x_best.to_vec();
        x[k] = held;
        for (&i, v) in others.iter().zip(y) {
            x[i] = *v;
        }
        let v = f(&x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    let y0: Vec<f64> = others.iter().map(|&i| x_best[i]).collect();
    let steps: Vec<f64> = others.iter().map(|&i| step[i]).collect();
    if y0.is_empty() {
        reduced(&[])
    } else {
        nelder_mead(&mut reduced, &y0, &steps, max_evals).1
    }
}

/// How well the data pin each parameter of a fit: for parameter `k`, the best objective with
/// `x_k` held at `x_best[k] × factor` (at `step[k] × factor` when `x_best[k]` is 0, where a
/// factor would not move it) and the others refitted, for each factor. A value that barely
/// rises above the optimum says the data cannot tell that parameter's value (alone, or traded
/// against the others); a steep rise says they pin it.
pub fn profile(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x_best: &[f64],
    step: &[f64],
    factors: &[f64],
    max_evals: usize,
) -> Vec<Vec<f64>> {
    (0..x_best.len())
        .map(|k| {
            factors
                .iter()
                .map(|factor| {
                    let held = if x_best[k] == 0.0 { step[k] * factor } else { x_best[k] * factor };
                    held_at(f, x_best, step, k, held, max_evals)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_rosenbrock() {
        let mut f = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let (x, v) = nelder_mead(&mut f, &[-1.2, 1.0], &[0.5, 0.5], 5000);
        assert!(v < 1e-8, "{v}");
        assert!((x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3, "{x:?}");
    }

    #[test]
    fn a_profile_tells_a_pinned_parameter_from_a_free_one_and_from_a_traded_pair() {
        // x0 is pinned at 1; x1 does not matter; x2 and x3 only matter through their sum.
        let mut f = |x: &[f64]| (x[0] - 1.0).powi(2) + (x[2] + x[3] - 2.0).powi(2);
        let p = profile(&mut f, &[1.0, 1.0, 1.0, 1.0], &[0.1; 4], &[0.5, 2.0], 4000);
        assert!(p[0].iter().all(|v| *v > 0.2), "pinned: {:?}", p[0]);
        assert!(p[1].iter().all(|v| *v < 1e-6), "free: {:?}", p[1]);
        assert!(p[2].iter().chain(&p[3]).all(|v| *v < 1e-6), "traded: {:?} {:?}", p[2], p[3]);
    }
}
