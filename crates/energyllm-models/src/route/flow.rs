//! The solver: min-cost flow by successive shortest paths, with a lexicographic arc cost that
//! carries the lower bounds.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An arc cost ordered lexicographically: `tier` first (lower-bound bonuses), then `value`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Cost {
    pub(super) tier: i64,
    pub(super) value: f64,
}

impl Cost {
    pub(super) const ZERO: Cost = Cost { tier: 0, value: 0.0 };
    const INF: Cost = Cost { tier: i64::MAX / 4, value: 0.0 };

    pub(super) fn value(value: f64) -> Self {
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
pub(super) struct MinCostFlow {
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
    pub(super) fn new(nodes: usize) -> Self {
        MinCostFlow { arcs: Vec::new(), out: vec![Vec::new(); nodes], original_cap: Vec::new() }
    }

    pub(super) fn add_arc(&mut self, from: usize, to: usize, cap: u64, cost: Cost) -> usize {
        let id = self.arcs.len();
        self.arcs.push(Arc { to, cap, cost });
        self.arcs.push(Arc { to: from, cap: 0, cost: cost.neg() });
        self.out[from].push(id);
        self.out[to].push(id + 1);
        self.original_cap.push(cap);
        id
    }

    /// Flow on the forward arc `id`.
    pub(super) fn flow(&self, id: usize) -> u64 {
        self.original_cap[id / 2] - self.arcs[id].cap
    }

    /// Sends up to `want` units from `s` to `t` at least cost; returns the amount sent.
    pub(super) fn run(&mut self, s: usize, t: usize, want: u64) -> u64 {
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
