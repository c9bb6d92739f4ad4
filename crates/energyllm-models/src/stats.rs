//! Accuracy measures and seeded k-fold splits.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How well predictions match observations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Rows compared.
    pub n: usize,
    /// Coefficient of determination, centered: `1 − RSS / Σ(y − ȳ)²` (1 is perfect, 0 is the
    /// mean, below 0 worse than the mean).
    pub r2: f64,
    /// Mean absolute percentage error over rows with `y ≠ 0`, as a fraction (0.05 = 5 %).
    pub mape: f64,
    /// Root mean squared error, in the target's unit.
    pub rmse: f64,
}

impl Accuracy {
    /// Compares `predicted` with `observed` (pairs beyond the shorter slice are ignored).
    pub fn of(observed: &[f64], predicted: &[f64]) -> Accuracy {
        let n = observed.len().min(predicted.len());
        if n == 0 {
            return Accuracy { n, r2: f64::NAN, mape: f64::NAN, rmse: f64::NAN };
        }
        let mean = observed[..n].iter().sum::<f64>() / n as f64;
        let (mut rss, mut tss, mut ape, mut ape_n) = (0.0, 0.0, 0.0, 0usize);
        for (&y, &p) in observed.iter().zip(predicted) {
            rss += (y - p) * (y - p);
            tss += (y - mean) * (y - mean);
            if y != 0.0 {
                ape += ((y - p) / y).abs();
                ape_n += 1;
            }
        }
        let r2 = if tss > 0.0 {
            1.0 - rss / tss
        } else if rss == 0.0 {
            1.0
        } else {
            f64::NEG_INFINITY
        };
        Accuracy {
            n,
            r2,
            mape: if ape_n > 0 { ape / ape_n as f64 } else { f64::NAN },
            rmse: (rss / n as f64).sqrt(),
        }
    }
}

/// Splits `0..n` into `k` test folds of near-equal size after a seeded shuffle; each row is in
/// exactly one fold. `k` is clamped to `1..=n`.
pub fn kfold(n: usize, k: usize, seed: u64) -> Vec<Vec<usize>> {
    let k = k.clamp(1, n.max(1));
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut folds = vec![Vec::with_capacity(n / k + 1); k];
    for (i, row) in idx.into_iter().enumerate() {
        folds[i % k].push(row);
    }
    folds
}

/// The rows of `0..n` not in `fold`, ascending.
pub fn complement(n: usize, fold: &[usize]) -> Vec<usize> {
    let mut in_fold = vec![false; n];
    for &i in fold.iter().filter(|&&i| i < n) {
        in_fold[i] = true;
    }
    (0..n).filter(|&i| !in_fold[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_by_hand() {
        // y = 1, 2, 3; ŷ = 1, 2, 4. ȳ = 2, RSS = 1, TSS = 2 → R² = 0.5; APE = 0, 0, 1/3.
        let a = Accuracy::of(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert_eq!(a.n, 3);
        assert!((a.r2 - 0.5).abs() < 1e-12);
        assert!((a.mape - 1.0 / 9.0).abs() < 1e-12);
        assert!((a.rmse - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn folds_partition_the_rows_and_depend_only_on_the_seed() {
        let f = kfold(10, 3, 7);
        let mut all: Vec<usize> = f.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(f.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
        assert_eq!(f, kfold(10, 3, 7));
        assert_ne!(f, kfold(10, 3, 8));
        assert_eq!(complement(5, &[1, 3]), vec![0, 2, 4]);
    }
}
