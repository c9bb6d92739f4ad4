//! The routing problem: per-system limits from shares and capacities, the objective, the
//! optimal assignment at one ζ (a min-cost flow over query classes) and the ζ sweep.

use serde::Serialize;

use crate::Error;

use super::flow::{Cost, MinCostFlow};
use super::{Normalisation, QueryClass, RouteConfig, RouteSettings, RouteSystem};

/// A query set and the systems it may go to.
#[derive(Clone, Debug)]
pub struct RouteProblem {
    config: RouteConfig,
    classes: Vec<QueryClass>,
    /// Per class and system: predicted energy per query (J), floored at zero.
    energy_j: Vec<Vec<f64>>,
    bounds: Vec<(u64, u64)>,
    total: u64,
    energy_ref_j: f64,
    quality_ref: f64,
    clamped: u64,
    extrapolated: u64,
}

/// One solved assignment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    /// The trade-off weight it was solved for.
    pub zeta: f64,
    /// Queries of each class sent to each system: `counts[class][system]`.
    pub counts: Vec<Vec<u64>>,
    /// Queries per system.
    pub per_system: Vec<u64>,
    /// The (normalised) objective value.
    pub objective: f64,
    /// Predicted energy of the whole set, in joules.
    pub energy_j: f64,
    /// Mean quality over the queries.
    pub mean_quality: f64,
    /// Predicted busy time of each system, in seconds (sum of its queries' runtimes).
    pub runtime_s: Vec<f64>,
}

impl RouteProblem {
    /// Builds the problem; fails when the config is invalid, the set is empty, or the share
    /// and capacity limits cannot all hold.
    pub fn new(config: RouteConfig, classes: Vec<QueryClass>) -> Result<Self, Error> {
        config.validate()?;
        let total: u64 = classes.iter().map(|c| c.count).sum();
        if total == 0 {
            return Err(Error::param("route", "the query set is empty: give a lengths file with queries"));
        }
        let k = config.system.len();
        let strict = config.route.strict_shares && k > 1;
        let mut bounds = Vec::with_capacity(k);
        for s in &config.system {
            let n = total as f64;
            // Shares are turned into counts conservatively (ceil for minima, floor for maxima),
            // so a solution in counts always satisfies the shares as fractions.
            let lo = match s.min_share {
                Some(f) => (f * n - 1e-9).ceil().max(0.0) as u64,
                None => u64::from(strict),
            };
            let mut hi = match s.max_share {
                Some(f) => (f * n + 1e-9).floor() as u64,
                None if strict => total - 1,
                None => total,
            };
            if let Some(cap) = s.max_queries {
                hi = hi.min(cap);
            }
            if lo > hi {
                return Err(Error::param(
                    "route",
                    format!(
                        "system `{}`: needs at least {lo} of {total} queries but may take at most {hi}; \
                         relax min_share, max_share or max_queries",
                        s.name
                    ),
                ));
            }
            bounds.push((lo, hi));
        }
        let (min_sum, max_sum): (u64, u64) =
            bounds.iter().fold((0, 0), |(a, b), &(lo, hi)| (a + lo, b.saturating_add(hi)));
        if min_sum > total {
            return Err(Error::param(
                "route",
                format!(
                    "the systems' minimum shares add up to {min_sum} queries, more than the {total} in the set; \
                     lower some min_share (with strict_shares, every system needs at least one query)"
                ),
            ));
        }
        if max_sum < total {
            return Err(Error::param(
                "route",
                format!(
                    "the systems can take at most {max_sum} queries together but the set has {total}; \
                     raise max_share or max_queries, or add a system"
                ),
            ));
        }
        let mut clamped = 0;
        let mut extrapolated = 0;
        let energy_j: Vec<Vec<f64>> = classes
            .iter()
            .map(|c| {
                config
                    .system
                    .iter()
                    .map(|s| {
                        if s.raw_energy_j(c.input_tokens, c.output_tokens) < s.min_energy_j.max(0.0) {
                            clamped += c.count;
                        }
                        if s.extrapolates(c.input_tokens, c.output_tokens) {
                            extrapolated += c.count;
                        }
                        s.energy_per_query_j(c.input_tokens, c.output_tokens)
                    })
                    .collect()
            })
            .collect();
        let (energy_ref_j, quality_ref) = match config.route.normalisation {
            Normalisation::None => (1.0, 1.0),
            Normalisation::Mean => {
                let sum: f64 =
                    classes.iter().zip(&energy_j).map(|(c, e)| c.count as f64 * e.iter().sum::<f64>()).sum();
                let mean = sum / (total as f64 * k as f64);
                let best = config.system.iter().map(|s| s.quality.abs()).fold(0.0, f64::max);
                (if mean > 0.0 { mean } else { 1.0 }, if best > 0.0 { best } else { 1.0 })
            }
        };
        Ok(RouteProblem {
            config,
            classes,
            energy_j,
            bounds,
            total,
            energy_ref_j,
            quality_ref,
            clamped,
            extrapolated,
        })
    }

    /// The systems.
    pub fn systems(&self) -> &[RouteSystem] {
        &self.config.system
    }
    /// The query classes.
    pub fn classes(&self) -> &[QueryClass] {
        &self.classes
    }
    /// Queries in the set.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// `(min, max)` queries per system after shares and limits.
    pub fn bounds(&self) -> &[(u64, u64)] {
        &self.bounds
    }
    /// Queries × systems whose predicted energy was below the system's floor (`min_energy_j`,
    /// or zero) and was raised to it.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }
    /// (query, system) predictions outside the lengths the system's model was fitted on
    /// (counted per query, over every system that has a `fitted_range`).
    pub fn extrapolated(&self) -> u64 {
        self.extrapolated
    }
    /// The settings of the config.
    pub fn settings(&self) -> &RouteSettings {
        &self.config.route
    }

    /// The objective's cost of sending one query of class `c` to system `k` at `zeta`.
    pub fn unit_cost(&self, zeta: f64, c: usize, k: usize) -> f64 {
        zeta * self.energy_j[c][k] / self.energy_ref_j
            - (1.0 - zeta) * self.config.system[k].quality / self.quality_ref
    }

    /// Totals of an assignment given as `counts[class][system]`.
    pub fn evaluate(&self, zeta: f64, counts: Vec<Vec<u64>>) -> Assignment {
        let k = self.config.system.len();
        let mut per_system = vec![0u64; k];
        let mut runtime_s = vec![0.0; k];
        let (mut objective, mut energy_j, mut quality) = (0.0, 0.0, 0.0);
        for (c, row) in counts.iter().enumerate() {
            let class = self.classes[c];
            for (s, &n) in row.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let n_f = n as f64;
                per_system[s] += n;
                objective += n_f * self.unit_cost(zeta, c, s);
                energy_j += n_f * self.energy_j[c][s];
                quality += n_f * self.config.system[s].quality;
                runtime_s[s] +=
                    n_f * self.config.system[s].runtime_per_query_s(class.input_tokens, class.output_tokens);
            }
        }
        Assignment {
            zeta,
            counts,
            per_system,
            objective,
            energy_j,
            mean_quality: quality / self.total as f64,
            runtime_s,
        }
    }

    /// The optimal assignment at `zeta` ∈ [0, 1].
    pub fn solve(&self, zeta: f64) -> Result<Assignment, Error> {
        if !(0.0..=1.0).contains(&zeta) {
            return Err(Error::param("route", format!("zeta = {zeta} is outside [0, 1]")));
        }
        let (nc, nk) = (self.classes.len(), self.config.system.len());
        // Nodes: source, classes, systems, sink.
        let (source, sink) = (0, 1 + nc + nk);
        let mut g = MinCostFlow::new(sink + 1);
        let mut class_arcs = Vec::with_capacity(nc);
        for (c, class) in self.classes.iter().enumerate() {
            g.add_arc(source, 1 + c, class.count, Cost::ZERO);
            // Every query of a class is routed somewhere, so subtracting the class's cheapest
            // cost from all its arcs changes the objective by a constant and keeps arcs ≥ 0.
            let base = (0..nk).map(|k| self.unit_cost(zeta, c, k)).fold(f64::INFINITY, f64::min);
            let arcs: Vec<usize> = (0..nk)
                .map(|k| {
                    g.add_arc(1 + c, 1 + nc + k, class.count, Cost::value(self.unit_cost(zeta, c, k) - base))
                })
                .collect();
            class_arcs.push(arcs);
        }
        for (k, &(lo, hi)) in self.bounds.iter().enumerate() {
            g.add_arc(1 + nc + k, sink, lo, Cost { tier: -1, value: 0.0 });
            g.add_arc(1 + nc + k, sink, hi - lo, Cost::ZERO);
        }
        let flow = g.run(source, sink, self.total);
        if flow < self.total {
            // Ruled out by the checks in `new`; kept as an error rather than a panic.
            return Err(Error::param(
                "route",
                format!("only {flow} of {} queries could be placed; raise the capacity limits", self.total),
            ));
        }
        let counts = class_arcs.iter().map(|arcs| arcs.iter().map(|&a| g.flow(a)).collect()).collect();
        Ok(self.evaluate(zeta, counts))
    }

    /// Optimal assignments at `points` evenly spaced ζ over `[0, 1]`.
    pub fn sweep(&self, points: u32) -> Result<Vec<Assignment>, Error> {
        let steps = points.max(2) - 1;
        (0..=steps).map(|i| self.solve(f64::from(i) / f64::from(steps))).collect()
    }
}
