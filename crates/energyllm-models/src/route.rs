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
//! ([`MinCostFlow`]); integral capacities give an integral optimum, so no rounding is needed.
//! Lower bounds (minimum shares) are carried by a lexicographic cost: a flow unit through a
//! system's "minimum" arc earns one unit of a higher-priority tier, so every feasible minimum is
//! met before any energy or quality trade-off is considered, without a big-M constant that
//! would swamp the floating-point costs.
//!
//! Energy and quality are normalised (`E_ref`, `A_ref`, see [`Normalisation`]) so that ζ trades
//! fractions, not joules against accuracy points; the raw totals are reported beside.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use crate::Error;

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
        Bilinear { coefficients: self.energy_j }.eval(f64::from(input_tokens), f64::from(output_tokens))
            / f64::from(self.batch_size.max(1))
    }

    /// Predicted runtime of one query's share of its batch, in seconds, floored at
    /// `min_runtime_s` (and at zero).
    pub fn runtime_per_query_s(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        (Bilinear { coefficients: self.runtime_s }.eval(f64::from(input_tokens), f64::from(output_tokens))
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
        Ok(RouteProblem { config, classes, energy_j, bounds, total, energy_ref_j, quality_ref, clamped })
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

/// An arc cost ordered lexicographically: `tier` first (lower-bound bonuses), then `value`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cost {
    tier: i64,
    value: f64,
}

impl Cost {
    const ZERO: Cost = Cost { tier: 0, value: 0.0 };
    const INF: Cost = Cost { tier: i64::MAX / 4, value: 0.0 };

    fn value(value: f64) -> Self {
        Cost { tier: 0, value }
    }
    fn add(self, o: Cost) -> Cost {
        Cost { tier: self.tier + o.tier, value: self.value + o.value }
    }
    fn sub(self, o: Cost) -> Cost {
        Cost { tier: self.tier - o.tier, value: self.value - o.value }
    }
    fn neg(self) -> Cost {
        Cost { tier: -self.tier, value: -self.value }
    }
    fn cmp(&self, o: &Cost) -> Ordering {
        self.tier.cmp(&o.tier).then(self.value.total_cmp(&o.value))
    }
}

struct Arc {
    to: usize,
    cap: u64,
    cost: Cost,
}

/// Min-cost flow by successive shortest paths with Johnson potentials (Dijkstra on reduced
/// costs). Arcs are stored in pairs, forward at even index and its residual at odd.
struct MinCostFlow {
    arcs: Vec<Arc>,
    out: Vec<Vec<usize>>,
    original_cap: Vec<u64>,
}

#[derive(PartialEq)]
struct HeapItem(Cost, usize);
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        o.0.cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

impl MinCostFlow {
    fn new(nodes: usize) -> Self {
        MinCostFlow { arcs: Vec::new(), out: vec![Vec::new(); nodes], original_cap: Vec::new() }
    }

    fn add_arc(&mut self, from: usize, to: usize, cap: u64, cost: Cost) -> usize {
        let id = self.arcs.len();
        self.arcs.push(Arc { to, cap, cost });
        self.arcs.push(Arc { to: from, cap: 0, cost: cost.neg() });
        self.out[from].push(id);
        self.out[to].push(id + 1);
        self.original_cap.push(cap);
        id
    }

    /// Flow on the forward arc `id`.
    fn flow(&self, id: usize) -> u64 {
        self.original_cap[id / 2] - self.arcs[id].cap
    }

    /// Sends up to `want` units from `s` to `t` at least cost; returns the amount sent.
    fn run(&mut self, s: usize, t: usize, want: u64) -> u64 {
        let n = self.out.len();
        // Initial potentials by Bellman–Ford: arc costs may be negative (the lower-bound tier),
        // but the network is acyclic, so it converges in a few rounds.
        let mut pot = vec![Cost::INF; n];
        pot[s] = Cost::ZERO;
        for _ in 0..n {
            let mut changed = false;
            for u in 0..n {
                if pot[u].tier == Cost::INF.tier {
                    continue;
                }
                for &a in &self.out[u] {
                    let arc = &self.arcs[a];
                    let d = pot[u].add(arc.cost);
                    if arc.cap > 0 && d.cmp(&pot[arc.to]) == Ordering::Less {
                        pot[arc.to] = d;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut sent = 0;
        let mut dist = vec![Cost::INF; n];
        let mut prev = vec![usize::MAX; n];
        while sent < want {
            dist.iter_mut().for_each(|d| *d = Cost::INF);
            prev.iter_mut().for_each(|p| *p = usize::MAX);
            dist[s] = Cost::ZERO;
            let mut heap = BinaryHeap::new();
            heap.push(HeapItem(Cost::ZERO, s));
            while let Some(HeapItem(d, u)) = heap.pop() {
                if d.cmp(&dist[u]) == Ordering::Greater {
                    continue;
                }
                for &a in &self.out[u] {
                    let arc = &self.arcs[a];
                    if arc.cap == 0 || pot[arc.to].tier == Cost::INF.tier {
                        continue;
                    }
                    let mut reduced = arc.cost.add(pot[u]).sub(pot[arc.to]);
                    // Reduced costs are ≥ 0 in exact arithmetic; clip rounding noise so
                    // Dijkstra's invariant holds.
                    if reduced.tier == 0 && reduced.value < 0.0 {
                        reduced.value = 0.0;
                    }
                    let nd = d.add(reduced);
                    if nd.cmp(&dist[arc.to]) == Ordering::Less {
                        dist[arc.to] = nd;
                        prev[arc.to] = a;
                        heap.push(HeapItem(nd, arc.to));
                    }
                }
            }
            if prev[t] == usize::MAX {
                break;
            }
            for v in 0..n {
                if dist[v].tier != Cost::INF.tier {
                    pot[v] = pot[v].add(dist[v]);
                }
            }
            let mut push = want - sent;
            let mut v = t;
            while v != s {
                let a = prev[v];
                push = push.min(self.arcs[a].cap);
                v = self.arcs[a ^ 1].to;
            }
            let mut v = t;
            while v != s {
                let a = prev[v];
                self.arcs[a].cap -= push;
                self.arcs[a ^ 1].cap += push;
                v = self.arcs[a ^ 1].to;
            }
            sent += push;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn system(name: &str, energy: [f64; 3], quality: f64) -> RouteSystem {
        RouteSystem {
            name: name.into(),
            model: String::new(),
            gpu: String::new(),
            gpus: 1,
            energy_j: energy,
            runtime_s: [0.001, 0.01, 0.0],
            batch_size: 1,
            quality,
            min_share: None,
            max_share: None,
            max_queries: None,
            min_energy_j: 0.0,
            min_runtime_s: 0.0,
        }
    }

    fn config(systems: Vec<RouteSystem>, strict: bool) -> RouteConfig {
        RouteConfig {
            route: RouteSettings { strict_shares: strict, ..RouteSettings::default() },
            system: systems,
        }
    }

    /// Every assignment of the individual queries, the feasible ones' best objective.
    fn brute_force(p: &RouteProblem, zeta: f64) -> Option<f64> {
        let queries: Vec<usize> = p
            .classes()
            .iter()
            .enumerate()
            .flat_map(|(c, q)| std::iter::repeat_n(c, q.count as usize))
            .collect();
        let k = p.systems().len();
        let mut best: Option<f64> = None;
        let combos = k.pow(queries.len() as u32);
        for mut code in 0..combos {
            let mut counts = vec![vec![0u64; k]; p.classes().len()];
            for &c in &queries {
                counts[c][code % k] += 1;
                code /= k;
            }
            let a = p.evaluate(zeta, counts);
            let feasible = a.per_system.iter().zip(p.bounds()).all(|(&n, &(lo, hi))| n >= lo && n <= hi);
            if feasible && best.is_none_or(|b| a.objective < b) {
                best = Some(a.objective);
            }
        }
        best
    }

    /// A small deterministic generator (no rand dependency in the test's logic).
    fn lcg(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn matches_brute_force_on_tiny_instances() {
        let mut rng = 7u64;
        let mut solved = 0;
        for instance in 0..60 {
            let k = 2 + (lcg(&mut rng) % 2) as usize;
            let systems: Vec<RouteSystem> = (0..k)
                .map(|i| {
                    let mut s = system(
                        &format!("s{i}"),
                        [
                            (lcg(&mut rng) % 50) as f64 - 10.0,
                            (lcg(&mut rng) % 50) as f64,
                            (lcg(&mut rng) % 100) as f64 / 100.0,
                        ],
                        40.0 + (lcg(&mut rng) % 30) as f64,
                    );
                    match lcg(&mut rng) % 4 {
                        0 => s.max_queries = Some(1 + lcg(&mut rng) % 3),
                        1 => s.min_share = Some(0.3),
                        2 => s.max_share = Some(0.6),
                        _ => {}
                    }
                    s
                })
                .collect();
            let n = 3 + (lcg(&mut rng) % 4) as usize;
            let queries: Vec<(u32, u32)> = (0..n)
                .map(|_| (1 + (lcg(&mut rng) % 3) as u32 * 40, 1 + (lcg(&mut rng) % 3) as u32 * 60))
                .collect();
            let strict = instance % 2 == 0;
            let Ok(p) = RouteProblem::new(config(systems, strict), group_queries(queries)) else {
                // Infeasible limits are rejected up front; brute force must agree.
                continue;
            };
            for zeta in [0.0, 0.3, 0.7, 1.0] {
                let a = p.solve(zeta).unwrap();
                let best = brute_force(&p, zeta).expect("new() accepted a feasible problem");
                assert!(
                    (a.objective - best).abs() < 1e-9 * (1.0 + best.abs()),
                    "instance {instance} ζ={zeta}"
                );
                for (&m, &(lo, hi)) in a.per_system.iter().zip(p.bounds()) {
                    assert!(m >= lo && m <= hi, "instance {instance}: {m} outside [{lo}, {hi}]");
                }
                assert_eq!(a.per_system.iter().sum::<u64>(), p.total());
            }
            solved += 1;
        }
        // The limits are drawn loosely enough that most instances are feasible.
        assert!(solved >= 40, "only {solved} feasible instances");
    }

    fn three_systems() -> Vec<RouteSystem> {
        vec![
            system("small", [0.0, 0.0, 1.0], 50.0),
            system("medium", [0.0, 0.0, 2.0], 55.0),
            system("large", [0.0, 0.0, 12.0], 65.0),
        ]
    }

    fn queries() -> Vec<QueryClass> {
        group_queries((0..100u32).map(|i| (10 + i % 7 * 30, 20 + i % 5 * 40)))
    }

    #[test]
    fn zeta_one_minimises_energy_and_zeta_zero_maximises_quality_under_strict_shares() {
        let p = RouteProblem::new(config(three_systems(), true), queries()).unwrap();
        let energy = p.solve(1.0).unwrap();
        // Every system keeps at least one query; the rest go to the cheapest, and the one
        // query each of the others gets is the cheapest query there is.
        assert_eq!(energy.per_system[1..], [1, 1]);
        let quality = p.solve(0.0).unwrap();
        assert_eq!(quality.per_system[..2], [1, 1]);
        assert!((quality.mean_quality - (50.0 + 55.0 + 65.0 * 98.0) / 100.0).abs() < 1e-9);
        // Any other feasible assignment is no better on its own axis.
        for zeta in [0.1, 0.5, 0.9] {
            let a = p.solve(zeta).unwrap();
            assert!(a.energy_j >= energy.energy_j - 1e-6);
            assert!(a.mean_quality <= quality.mean_quality + 1e-9);
        }
        let smallest = p.classes().iter().map(|c| f64::from(c.input_tokens) * f64::from(c.output_tokens));
        let min_tt = smallest.fold(f64::INFINITY, f64::min);
        let rest: f64 = p
            .classes()
            .iter()
            .map(|c| c.count as f64 * f64::from(c.input_tokens) * f64::from(c.output_tokens))
            .sum::<f64>()
            - 2.0 * min_tt;
        assert!((energy.energy_j - (rest + 2.0 * min_tt + 12.0 * min_tt)).abs() < 1e-6);
    }

    #[test]
    fn without_strict_shares_the_extremes_take_everything() {
        let p = RouteProblem::new(config(three_systems(), false), queries()).unwrap();
        assert_eq!(p.solve(1.0).unwrap().per_system, vec![100, 0, 0]);
        assert_eq!(p.solve(0.0).unwrap().per_system, vec![0, 0, 100]);
    }

    #[test]
    fn user_shares_and_capacities_hold_across_the_sweep() {
        let mut systems = three_systems();
        systems[0].max_share = Some(0.5);
        systems[1].min_share = Some(0.2);
        systems[2].max_queries = Some(30);
        let p = RouteProblem::new(config(systems, true), queries()).unwrap();
        for a in p.sweep(11).unwrap() {
            assert!(a.per_system[0] <= 50, "{:?}", a.per_system);
            assert!(a.per_system[1] >= 20);
            assert!((1..=30).contains(&a.per_system[2]));
            assert_eq!(a.per_system.iter().sum::<u64>(), 100);
        }
        // Energy falls and quality falls as ζ grows (weakly).
        let sweep = p.sweep(11).unwrap();
        for w in sweep.windows(2) {
            assert!(w[1].energy_j <= w[0].energy_j + 1e-6);
            assert!(w[1].mean_quality <= w[0].mean_quality + 1e-9);
        }
    }

    #[test]
    fn infeasible_limits_say_what_to_change() {
        let mut systems = three_systems();
        systems.iter_mut().for_each(|s| s.min_share = Some(0.4));
        let e = RouteProblem::new(config(systems, true), queries()).unwrap_err().to_string();
        assert!(e.contains("min_share"), "{e}");
        let mut systems = three_systems();
        systems.iter_mut().for_each(|s| s.max_queries = Some(10));
        let e = RouteProblem::new(config(systems, true), queries()).unwrap_err().to_string();
        assert!(e.contains("max_queries"), "{e}");
        let mut systems = three_systems();
        systems[1].name = "small".into();
        let e = RouteProblem::new(config(systems, true), queries()).unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn negative_predictions_are_floored_and_counted() {
        let systems = vec![system("a", [-100.0, -100.0, 1.0], 50.0), system("b", [1.0, 1.0, 0.0], 60.0)];
        let p = RouteProblem::new(config(systems, false), group_queries([(10, 10), (300, 300)])).unwrap();
        assert_eq!(p.clamped(), 1);
        assert_eq!(p.systems()[0].energy_per_query_j(10, 10), 0.0);
        let mut floored = p.systems()[0].clone();
        floored.min_energy_j = 2.5;
        assert_eq!(floored.energy_per_query_j(10, 10), 2.5);
        assert!(floored.energy_per_query_j(300, 300) > 2.5);
    }
}
