//! Named features and the one dataset type every model family fits on.

use serde::{Deserialize, Serialize};

use energyllm_core::PerfQuery;

use crate::Error;

/// A named quantity with its unit: a model's input feature or target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantity {
    /// Column name, as in the profile CSV (`freq_mhz`, `latency_s`, …).
    pub name: String,
    /// Unit (`MHz`, `s`, `W`, `tokens`, `requests`, `J`).
    pub unit: String,
}

impl Quantity {
    /// A quantity from its name and unit.
    pub fn new(name: &str, unit: &str) -> Self {
        Quantity { name: name.to_owned(), unit: unit.to_owned() }
    }
}

/// Names and units of the performance-model features, in the order of [`perf_features`].
pub const PERF_FEATURES: [(&str, &str); 5] = [
    ("freq_mhz", "MHz"),
    ("batch_size", "requests"),
    ("prefill_tokens", "tokens"),
    ("decode_tokens", "tokens"),
    ("kv_tokens", "tokens"),
];

/// The performance-model features as [`Quantity`]s.
pub fn perf_feature_quantities() -> Vec<Quantity> {
    PERF_FEATURES.iter().map(|(n, u)| Quantity::new(n, u)).collect()
}

/// A query as the feature vector the fitted models read: clock, batch, prefill, decode and KV
/// tokens, in the order of [`PERF_FEATURES`].
pub fn perf_features(q: &PerfQuery) -> [f64; 5] {
    [
        f64::from(q.freq.0),
        f64::from(q.batch),
        f64::from(q.prefill_tokens),
        f64::from(q.decode_tokens),
        q.kv_tokens as f64,
    ]
}

/// Records (row-major features) with one target, and the names of both.
///
/// This is linfa's `DatasetBase` cut down to what the models need: fitting never mutates it,
/// and cross-validation takes row subsets with [`Dataset::select`].
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    features: Vec<Quantity>,
    target: Quantity,
    records: Vec<f64>,
    targets: Vec<f64>,
}

impl Dataset {
    /// A dataset from row-major `records` (`targets.len()` rows of `features.len()` values).
    /// Fails when the sizes disagree or a value is not finite, naming the row and column.
    pub fn new(
        features: Vec<Quantity>,
        target: Quantity,
        records: Vec<f64>,
        targets: Vec<f64>,
    ) -> Result<Self, Error> {
        let p = features.len();
        let bad = |reason: String| Error::Data { name: format!("dataset for `{}`", target.name), reason };
        if p == 0 {
            return Err(bad("no features".into()));
        }
        if records.len() != targets.len() * p {
            return Err(bad(format!(
                "{} feature values do not make {} rows of {p} features",
                records.len(),
                targets.len()
            )));
        }
        for (i, row) in records.chunks_exact(p).enumerate() {
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("row {i}: `{}` is {}", features[j].name, row[j])));
            }
        }
        if let Some(i) = targets.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("row {i}: target `{}` is {}", target.name, targets[i])));
        }
        Ok(Dataset { features, target, records, targets })
    }

    /// Feature names and units.
    pub fn features(&self) -> &[Quantity] {
        &self.features
    }
    /// Target name and unit.
    pub fn target(&self) -> &Quantity {
        &self.target
    }
    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.features.len()
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.targets.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        let p = self.n_features();
        &self.records[i * p..(i + 1) * p]
    }
    /// Rows, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.records.chunks_exact(self.n_features())
    }
    /// Targets, in row order.
    pub fn targets(&self) -> &[f64] {
        &self.targets
    }
    /// Feature `j` of every row (column-major, as the tree learner wants it).
    pub fn column(&self, j: usize) -> Vec<f64> {
        self.rows().map(|r| r[j]).collect()
    }
    /// Smallest and largest value of each feature (`(0, 0)` for an empty dataset).
    pub fn feature_ranges(&self) -> Vec<(f64, f64)> {
        (0..self.n_features())
            .map(|j| {
                let mut it = self.rows().map(|r| r[j]);
                let first = it.next().unwrap_or(0.0);
                it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)))
            })
            .collect()
    }
    /// The rows at `indices`, in that order (an index out of range is skipped).
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut records = Vec::with_capacity(indices.len() * self.n_features());
        let mut targets = Vec::with_capacity(indices.len());
        for &i in indices.iter().filter(|&&i| i < self.len()) {
            records.extend_from_slice(self.row(i));
            targets.push(self.targets[i]);
        }
        Dataset { features: self.features.clone(), target: self.target.clone(), records, targets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_shapes_and_values_name_the_row_and_column() {
        let f = vec![Quantity::new("a", "x"), Quantity::new("b", "y")];
        let t = Quantity::new("t", "s");
        let e = Dataset::new(f.clone(), t.clone(), vec![1.0, 2.0, 3.0], vec![1.0, 2.0]).unwrap_err();
        assert!(e.to_string().contains("do not make 2 rows"), "{e}");
        let e =
            Dataset::new(f.clone(), t.clone(), vec![1.0, 2.0, 3.0, f64::NAN], vec![1.0, 2.0]).unwrap_err();
        assert!(e.to_string().contains("row 1: `b` is NaN"), "{e}");
        let d = Dataset::new(f, t, vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 2.0]).unwrap();
        assert_eq!(d.column(1), vec![2.0, 4.0]);
        assert_eq!(d.select(&[1, 7]).row(0), &[3.0, 4.0]);
        assert_eq!(d.feature_ranges(), vec![(1.0, 3.0), (2.0, 4.0)]);
    }
}
