//! Offline energy-optimal routing (Wilkins, Keshav, Mortier, "Offline Energy-Optimal LLM
//! Serving", HotCarbon'24): assign a known query set `Q` to systems `K` (a model on a GPU type
//! and count) to minimise
//!
//! ```text
//!   Σ_K Σ_{q ∈ Q_K}  ζ·ê_K(q)/E_ref − (1 − ζ)·â_K/A_ref
//! ```
//!
//! subject to the share constraints of the paper (every system gets some work and none gets all
//! of it, `0 < |Q_K|/|Q| < 1`), or user-given shares, and optional per-system query limits.
//!
//! The problem is a transportation problem: queries with the same `(tin, tout)` are
//! interchangeable, so they are grouped into classes, and the assignment is a flow from
//! classes to systems. It is solved exactly by successive shortest paths on that network
//! (`MinCostFlow`); integral capacities give an integral optimum, so no rounding is needed.
//! Lower bounds (minimum shares) are carried by a lexicographic cost: a flow unit through a
//! system's "minimum" arc earns one unit of a higher-priority tier, so every feasible minimum is
//! met before any energy or quality trade-off is considered, without a big-M constant that
//! would swamp the floating-point costs.
//!
//! Energy and quality are normalised (`E_ref`, `A_ref`, see [`Normalisation`]) so that ζ trades
//! fractions, not joules against accuracy points; the raw totals are reported beside.
//!
//! One job a file: this one holds the config and the query classes, `problem.rs` the problem
//! (limits, objective, the solve at one ζ and the sweep), `flow.rs` the min-cost-flow solver.

mod flow;
mod problem;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;

pub use problem::{Assignment, RouteProblem};

/// A bilinear model `a0·tin + a1·tout + a2·tin·tout` (Wilkins et al.), per batch of
/// `batch_size` queries as it was measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bilinear {
    /// `[a0, a1, a2]`: the coefficients of `tin`, `tout` and `tin·tout`.
    pub coefficients: [f64; 3],
}

impl Bilinear {
    /// The model's value at `(tin, tout)`.
    pub fn eval(&self, input_tokens: f64, output_tokens: f64) -> f64 {
        let [a0, a1, a2] = self.coefficients;
        a0 * input_tokens + a1 * output_tokens + a2 * input_tokens * output_tokens
    }
}

/// One system a query can be routed to: a model on a number of GPUs of one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSystem {
    /// Name in tables and plots, e.g. `llama-2-7b@a100x1`. Required.
    pub name: String,
    /// Model served, free text (e.g. `Llama-2 (7B)`). Default: empty.
    #[serde(default)]
    pub model: String,
    /// GPU type, free text (e.g. `A100-40GB`). Default: empty.
    #[serde(default)]
    pub gpu: String,
    /// GPUs the model runs on (tensor or pipeline parallel). Default: 1.
    #[serde(default = "one")]
    pub gpus: u32,
    /// Energy, in joules per batch: `[a0, a1, a2]`. Required.
    pub energy_j: [f64; 3],
    /// Runtime, in seconds per batch: `[a0, a1, a2]`. Required.
    pub runtime_s: [f64; 3],
    /// Queries per batch in the measurements the coefficients were fitted on; one query's
    /// share is the batch's value divided by this. Default: 1.
    #[serde(default = "one")]
    pub batch_size: u32,
    /// Quality score of the model (e.g. a benchmark accuracy in percent), the same for every
    /// query. Required.
    pub quality: f64,
    /// Smallest share of the queries this system must get, in `[0, 1]`. Default: the paper's
    /// rule (at least one query) when `strict_shares` is on, else 0.
    #[serde(default)]
    pub min_share: Option<f64>,
    /// Largest share of the queries this system may get, in `[0, 1]`. Default: the paper's rule
    /// (all but one query) when `strict_shares` is on, else 1.
    #[serde(default)]
    pub max_share: Option<f64>,
    /// Most queries this system can serve (a capacity limit). Default: none.
    #[serde(default)]
    pub max_queries: Option<u64>,
    /// Floor of the predicted energy of one query, in joules, e.g. the measured energy of the
    /// shortest query. A bilinear fit with negative linear terms (the energy-inference fits have
    /// them: one length stays near 32 while the other sweeps) goes below zero for short queries,
    /// and a query that costs nothing anywhere would go wherever quality is best. Default: 0.
    #[serde(default)]
    pub min_energy_j: f64,
    /// Floor of the predicted runtime of one query, in seconds. Default: 0.
    #[serde(default)]
    pub min_runtime_s: f64,
    /// Energy per batch that does not grow with the lengths (the planning models' per-request
    /// term, times the batch), in joules. Default: 0, the Wilkins form.
    #[serde(default)]
    pub energy_intercept_j: f64,
    /// Runtime per batch that does not grow with the lengths, in seconds. Default: 0.
    #[serde(default)]
    pub runtime_intercept_s: f64,
    /// The prompt and output lengths the coefficients were fitted on. A query outside them is an
    /// extrapolation, which `route` counts and reports. Default: none (nothing is flagged).
    #[serde(default)]
    pub fitted_range: Option<FittedRange>,
}

/// The grid of lengths a system's model was fitted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FittedRange {
    /// Smallest and largest prompt length, in tokens.
    pub input_tokens: [u32; 2],
    /// Smallest and largest output length, in tokens.
    pub output_tokens: [u32; 2],
}

impl FittedRange {
    /// Whether a query lies inside the grid.
    pub fn contains(&self, input_tokens: u32, output_tokens: u32) -> bool {
        let inside = |v: u32, [lo, hi]: [u32; 2]| v >= lo && v <= hi;
        inside(input_tokens, self.input_tokens) && inside(output_tokens, self.output_tokens)
    }
}

fn one() -> u32 {
    1
}

impl RouteSystem {
    /// Predicted energy of one query, in joules, floored at `min_energy_j` (and at zero):
    /// a negative energy would make a system look free. [`RouteProblem::clamped`] counts where
    /// the floor applies.
    pub fn energy_per_query_j(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        self.raw_energy_j(input_tokens, output_tokens).max(self.min_energy_j).max(0.0)
    }

    fn raw_energy_j(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        (self.energy_intercept_j
            + Bilinear { coefficients: self.energy_j }
                .eval(f64::from(input_tokens), f64::from(output_tokens)))
            / f64::from(self.batch_size.max(1))
    }

    /// Whether a query lies outside the lengths the model was fitted on.
    pub fn extrapolates(&self, input_tokens: u32, output_tokens: u32) -> bool {
        self.fitted_range.is_some_and(|r| !r.contains(input_tokens, output_tokens))
    }

    /// Predicted runtime of one query's share of its batch, in seconds, floored at
    /// `min_runtime_s` (and at zero).
    pub fn runtime_per_query_s(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        ((self.runtime_intercept_s
            + Bilinear { coefficients: self.runtime_s }
                .eval(f64::from(input_tokens), f64::from(output_tokens)))
            / f64::from(self.batch_size.max(1)))
        .max(self.min_runtime_s)
        .max(0.0)
    }
}

/// How energy and quality are brought to one scale before ζ weighs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalisation {
    /// Energy divided by the mean predicted energy over every (query, system) pair, quality by
    /// the best system's quality: both terms are then near 1. The default.
    #[default]
    Mean,
    /// Raw joules against raw quality points, as the objective is written in the paper.
    None,
}

/// The `[route]` table of a routing config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSettings {
    /// The paper's partition rule `0 < |Q_K|/|Q| < 1` for systems without explicit shares.
    /// Default: true.
    pub strict_shares: bool,
    /// Scale of the two terms. Default: `mean`.
    pub normalisation: Normalisation,
    /// Points of the ζ sweep, evenly spaced over `[0, 1]`. Default: 11.
    pub sweep_points: u32,
}

impl Default for RouteSettings {
    fn default() -> Self {
        RouteSettings { strict_shares: true, normalisation: Normalisation::Mean, sweep_points: 11 }
    }
}

/// A routing config file: settings and the systems.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Settings. Default: see [`RouteSettings`].
    #[serde(default)]
    pub route: RouteSettings,
    /// The systems, at least one (`[[system]]` tables).
    pub system: Vec<RouteSystem>,
}

impl RouteConfig {
    /// Checks every field a solve relies on; errors name the system and the field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.system.is_empty() {
            return Err(Error::param("route", "no systems: add at least one [[system]] table"));
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.system {
            let bad =
                |field: &str, why: &str| Error::param("route", format!("system `{}`: {field} {why}", s.name));
            if !names.insert(s.name.as_str()) {
                return Err(bad("name", "is used twice; give every system its own name"));
            }
            if s.energy_j.iter().chain(&s.runtime_s).any(|v| !v.is_finite()) {
                return Err(bad("energy_j/runtime_s", "must be finite numbers"));
            }
            if !(s.energy_intercept_j.is_finite() && s.runtime_intercept_s.is_finite()) {
                return Err(bad("energy_intercept_j/runtime_intercept_s", "must be finite numbers"));
            }
            if let Some(r) = s.fitted_range {
                if r.input_tokens[0] > r.input_tokens[1] || r.output_tokens[0] > r.output_tokens[1] {
                    return Err(bad("fitted_range", "must list each range as [smallest, largest]"));
                }
            }
            let floor_ok = |v: f64| v.is_finite() && v >= 0.0;
            if !(floor_ok(s.min_energy_j) && floor_ok(s.min_runtime_s)) {
                return Err(bad("min_energy_j/min_runtime_s", "must be finite and ≥ 0"));
            }
            if !s.quality.is_finite() {
                return Err(bad("quality", "must be a finite number"));
            }
            if s.batch_size == 0 || s.gpus == 0 {
                return Err(bad("batch_size/gpus", "must be ≥ 1"));
            }
            for (field, v) in [("min_share", s.min_share), ("max_share", s.max_share)] {
                if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                    return Err(bad(field, "must be in [0, 1]"));
                }
            }
            if let (Some(lo), Some(hi)) = (s.min_share, s.max_share) {
                if lo > hi {
                    return Err(bad("min_share", "is above max_share"));
                }
            }
        }
        if self.route.sweep_points < 2 {
            return Err(Error::param("route", "[route] sweep_points must be ≥ 2"));
        }
        Ok(())
    }
}

/// Queries that share `(tin, tout)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueryClass {
    /// Input tokens.
    pub input_tokens: u32,
    /// Output tokens.
    pub output_tokens: u32,
    /// How many queries of the set have these lengths.
    pub count: u64,
}

/// Groups `(tin, tout)` pairs into classes, in ascending order of lengths.
pub fn group_queries(queries: impl IntoIterator<Item = (u32, u32)>) -> Vec<QueryClass> {
    let mut map: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for q in queries {
        *map.entry(q).or_default() += 1;
    }
    map.into_iter()
        .map(|((input_tokens, output_tokens), count)| QueryClass { input_tokens, output_tokens, count })
        .collect()
}
