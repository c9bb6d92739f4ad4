//! A compact, validated tree ensemble evaluated natively.
//!
//! Every tree model in the crate ends up here, whatever fitted it: the gradient-boosted trees
//! forust-ml grows, and ONNX-ML `TreeEnsembleRegressor` graphs exported from scikit-learn,
//! XGBoost or LightGBM (which tract does not run). One evaluator means one thing to make fast
//! (a prediction is a few hundred branch-and-load steps over a flat array) and one thing to
//! validate when a model file is read.
//!
//! Prediction takes a fast path when the inputs are finite and every branch is an ordering
//! comparison (all of forust's and scikit-learn's): each comparison is rewritten as `x < t`
//! (`x ≤ t` is `x < next_up(t)`, `x > t` and `x ≥ t` swap the children), leaves loop to
//! themselves with their output in the threshold slot, and eight trees are walked in lockstep
//! for the ensemble's depth. A tree walk is a chain of dependent loads; walking eight at once
//! lets the CPU overlap them, which is what brings a 160-tree prediction near a microsecond.
//! Anything else (NaN inputs, equality tests) takes the plain walk with the same results.
//!
//! **Invariant:** every child index is greater than its parent's index and within the node
//! array, and every feature index is below `n_features`. [`TreeEnsemble::new`] checks it, and a
//! deserialised ensemble goes through the same check, so evaluation terminates and never
//! indexes out of bounds whatever file it came from.

use serde::{Deserialize, Serialize};

/// How a branch node compares the feature with its threshold; the comparison being true sends
/// the walk to `true_child`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A leaf: `value` is its output.
    Leaf,
    /// `x < threshold`.
    Lt,
    /// `x ≤ threshold`.
    Leq,
    /// `x > threshold`.
    Gt,
    /// `x ≥ threshold`.
    Gte,
    /// `x == threshold`.
    Eq,
    /// `x != threshold`.
    Neq,
}

/// One node. For a branch, `value` is the threshold; for a leaf, the output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Leaf or comparison.
    pub kind: NodeKind,
    /// Feature index compared (ignored for leaves).
    pub feature: u32,
    /// Threshold (branch) or output (leaf).
    pub value: f64,
    /// Next node when the comparison holds.
    pub true_child: u32,
    /// Next node when it does not.
    pub false_child: u32,
    /// Where a missing (NaN) feature goes: `true_child` if set, else `false_child`.
    pub missing_true: bool,
}

impl Node {
    /// A leaf with output `value`.
    pub fn leaf(value: f64) -> Node {
        Node { kind: NodeKind::Leaf, feature: 0, value, true_child: 0, false_child: 0, missing_true: false }
    }
}

/// How tree outputs combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregate {
    /// Sum (boosting).
    Sum,
    /// Mean (random forests).
    Average,
    /// Smallest.
    Min,
    /// Largest.
    Max,
}

/// Trees over `n_features` inputs: `base + aggregate(tree outputs)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEnsemble", into = "RawEnsemble")]
pub struct TreeEnsemble {
    n_features: u32,
    nodes: Vec<Node>,
    roots: Vec<u32>,
    base: f64,
    aggregate: Aggregate,
    /// Derived from `nodes` on construction (never stored).
    fast: Option<FastPath>,
}

/// One node of the fast path: go to `next[0]` if `x[feature] < threshold`, else `next[1]`.
/// A leaf has `next = [self, self]` and its output as `threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Step {
    threshold: f64,
    feature: u32,
    next: [u32; 2],
}

#[derive(Clone, Debug, PartialEq)]
struct FastPath {
    steps: Vec<Step>,
    /// Branch steps from a root to the deepest reachable leaf.
    depth: u32,
}

/// The smallest double above `t` (for finite `t`), so that `x ≤ t` ⇔ `x < next_up(t)`.
/// (`f64::next_up` needs Rust 1.86; the workspace supports 1.85.)
fn next_up(t: f64) -> f64 {
    if t.is_nan() || t == f64::INFINITY {
        t
    } else if t == 0.0 {
        f64::from_bits(1)
    } else if t > 0.0 {
        f64::from_bits(t.to_bits() + 1)
    } else {
        f64::from_bits(t.to_bits() - 1)
    }
}

impl FastPath {
    fn build(nodes: &[Node], roots: &[u32]) -> Option<FastPath> {
        let mut steps = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let (t, f) = (n.true_child, n.false_child);
            let (threshold, next) = match n.kind {
                NodeKind::Leaf => (n.value, [i as u32, i as u32]),
                NodeKind::Lt => (n.value, [t, f]),
                NodeKind::Leq => (next_up(n.value), [t, f]),
                NodeKind::Gte => (n.value, [f, t]),
                NodeKind::Gt => (next_up(n.value), [f, t]),
                NodeKind::Eq | NodeKind::Neq => return None,
            };
            steps.push(Step {
                threshold,
                feature: if n.kind == NodeKind::Leaf { 0 } else { n.feature },
                next,
            });
        }
        // Children come after parents, so one forward pass gives each reachable node's depth.
        let mut depth: Vec<Option<u32>> = vec![None; nodes.len()];
        for &r in roots {
            depth[r as usize] = Some(0);
        }
        let mut max = 0;
        for (i, n) in nodes.iter().enumerate() {
            let Some(d) = depth[i] else { continue };
            max = max.max(d);
            if n.kind != NodeKind::Leaf {
                for c in [n.true_child, n.false_child] {
                    let slot = &mut depth[c as usize];
                    *slot = Some(slot.map_or(d + 1, |e| e.max(d + 1)));
                }
            }
        }
        Some(FastPath { steps, depth: max })
    }
}

/// The serialised form, validated into a [`TreeEnsemble`] on the way in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RawEnsemble {
    n_features: u32,
    nodes: Vec<Node>,
    roots: Vec<u32>,
    base: f64,
    aggregate: Aggregate,
}

impl TryFrom<RawEnsemble> for TreeEnsemble {
    type Error = String;
    fn try_from(r: RawEnsemble) -> Result<Self, String> {
        TreeEnsemble::new(r.n_features, r.nodes, r.roots, r.base, r.aggregate)
    }
}

impl From<TreeEnsemble> for RawEnsemble {
    fn from(t: TreeEnsemble) -> Self {
        RawEnsemble {
            n_features: t.n_features,
            nodes: t.nodes,
            roots: t.roots,
            base: t.base,
            aggregate: t.aggregate,
        }
    }
}

impl TreeEnsemble {
    /// Checks the invariant (see the module docs) and builds the ensemble; the message says
    /// which node breaks it.
    pub fn new(
        n_features: u32,
        nodes: Vec<Node>,
        roots: Vec<u32>,
        base: f64,
        aggregate: Aggregate,
    ) -> Result<Self, String> {
        if roots.is_empty() {
            return Err("the ensemble has no trees".into());
        }
        if !base.is_finite() {
            return Err(format!("base value {base} is not finite"));
        }
        let len = nodes.len();
        if let Some(r) = roots.iter().find(|&&r| r as usize >= len) {
            return Err(format!("tree root {r} is past the {len} nodes"));
        }
        for (i, n) in nodes.iter().enumerate() {
            if !n.value.is_finite() {
                return Err(format!("node {i} has a non-finite value {}", n.value));
            }
            if n.kind == NodeKind::Leaf {
                continue;
            }
            if n.feature >= n_features {
                return Err(format!("node {i} reads feature {} of {n_features}", n.feature));
            }
            for c in [n.true_child, n.false_child] {
                if c as usize <= i || c as usize >= len {
                    return Err(format!(
                        "node {i} has child {c}: children must come after their parent and within the {len} nodes"
                    ));
                }
            }
        }
        let fast = FastPath::build(&nodes, &roots);
        Ok(TreeEnsemble { n_features, nodes, roots, base, aggregate, fast })
    }

    /// Builds an ensemble from trees whose nodes are numbered in any order, renumbering each tree
    /// depth-first so the invariant holds. `trees[t]` lists tree `t`'s nodes with child indices
    /// local to that list; node 0 is the root. Fails on a cycle, a shared node or a dangling
    /// child.
    pub fn from_trees(
        n_features: u32,
        trees: &[Vec<Node>],
        base: f64,
        aggregate: Aggregate,
    ) -> Result<Self, String> {
        let mut nodes = Vec::with_capacity(trees.iter().map(Vec::len).sum());
        let mut roots = Vec::with_capacity(trees.len());
        for (t, tree) in trees.iter().enumerate() {
            if tree.is_empty() {
                return Err(format!("tree {t} has no nodes"));
            }
            let offset = nodes.len();
            roots.push(u32::try_from(offset).map_err(|_| "too many nodes".to_owned())?);
            // Depth-first with an explicit stack; `placed[i]` is node i's new index.
            let mut placed: Vec<Option<usize>> = vec![None; tree.len()];
            let mut stack = vec![(0usize, None::<(usize, bool)>)];
            while let Some((old, parent)) = stack.pop() {
                let Some(node) = tree.get(old) else {
                    return Err(format!(
                        "tree {t}: a node points to child {old}, past its {} nodes",
                        tree.len()
                    ));
                };
                if placed[old].is_some() {
                    return Err(format!("tree {t}: node {old} is reached twice (a cycle or a shared node)"));
                }
                let new = nodes.len();
                placed[old] = Some(new);
                let new32 = u32::try_from(new).map_err(|_| "too many nodes".to_owned())?;
                if let Some((p, is_true)) = parent {
                    let pn: &mut Node = &mut nodes[p];
                    if is_true {
                        pn.true_child = new32;
                    } else {
                        pn.false_child = new32;
                    }
                }
                nodes.push(*node);
                if node.kind != NodeKind::Leaf {
                    stack.push((node.false_child as usize, Some((new, false))));
                    stack.push((node.true_child as usize, Some((new, true))));
                }
            }
        }
        TreeEnsemble::new(n_features, nodes, roots, base, aggregate)
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.n_features as usize
    }
    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }
    /// Number of nodes over all trees.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }
    /// The constant added to the aggregate.
    pub fn base(&self) -> f64 {
        self.base
    }
    /// How tree outputs combine.
    pub fn aggregate(&self) -> Aggregate {
        self.aggregate
    }

    /// One tree's output for `x`.
    #[inline]
    fn tree_output(&self, root: u32, x: &[f64]) -> f64 {
        let mut i = root as usize;
        loop {
            // In range by the invariant; `get` keeps this total without a panic path mattering.
            let Some(n) = self.nodes.get(i) else { return 0.0 };
            let v = x.get(n.feature as usize).copied().unwrap_or(f64::NAN);
            let go_true = match n.kind {
                NodeKind::Leaf => return n.value,
                _ if v.is_nan() => n.missing_true,
                NodeKind::Lt => v < n.value,
                NodeKind::Leq => v <= n.value,
                NodeKind::Gt => v > n.value,
                NodeKind::Gte => v >= n.value,
                NodeKind::Eq => v == n.value,
                NodeKind::Neq => v != n.value,
            };
            i = if go_true { n.true_child } else { n.false_child } as usize;
        }
    }

    /// The ensemble's output for feature vector `x` (a missing feature reads as NaN and follows
    /// each node's missing-value direction).
    pub fn predict(&self, x: &[f64]) -> f64 {
        let n = self.n_features as usize;
        let agg = match &self.fast {
            Some(fast) if x.len() >= n && x[..n].iter().all(|v| v.is_finite()) => {
                self.aggregate_fast(fast, x)
            }
            _ => self.aggregate_outputs(self.roots.iter().map(|&r| self.tree_output(r, x))),
        };
        self.base + agg
    }

    /// The plain walk, for the tests that compare it with the fast path.
    #[cfg(test)]
    fn predict_plain(&self, x: &[f64]) -> f64 {
        self.base + self.aggregate_outputs(self.roots.iter().map(|&r| self.tree_output(r, x)))
    }

    fn aggregate_outputs(&self, outputs: impl Iterator<Item = f64>) -> f64 {
        match self.aggregate {
            Aggregate::Sum => outputs.sum(),
            Aggregate::Average => outputs.sum::<f64>() / self.roots.len() as f64,
            Aggregate::Min => outputs.fold(f64::INFINITY, f64::min),
            Aggregate::Max => outputs.fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// Eight trees at a time, in lockstep, for `depth` steps (see the module docs). Every index
    /// is in range by the invariant, and `x` holds every feature (checked by the caller).
    #[inline]
    fn aggregate_fast(&self, fast: &FastPath, x: &[f64]) -> f64 {
        const LANES: usize = 8;
        let steps = &fast.steps[..];
        let mut outputs = [0.0f64; LANES];
        let walk = |chunk: &[u32], out: &mut [f64; LANES]| {
            let mut idx = [0u32; LANES];
            idx[..chunk.len()].copy_from_slice(chunk);
            for _ in 0..fast.depth {
                for i in idx.iter_mut().take(chunk.len()) {
                    let s = &steps[*i as usize];
                    *i = s.next[usize::from(x[s.feature as usize] >= s.threshold)];
                }
            }
            for (o, &i) in out.iter_mut().zip(&idx).take(chunk.len()) {
                *o = steps[i as usize].threshold;
            }
        };
        let mut acc = match self.aggregate {
            Aggregate::Sum | Aggregate::Average => 0.0,
            Aggregate::Min => f64::INFINITY,
            Aggregate::Max => f64::NEG_INFINITY,
        };
        for chunk in self.roots.chunks(LANES) {
            walk(chunk, &mut outputs);
            let done = &outputs[..chunk.len()];
            acc = match self.aggregate {
                Aggregate::Sum | Aggregate::Average => acc + done.iter().sum::<f64>(),
                Aggregate::Min => done.iter().copied().fold(acc, f64::min),
                Aggregate::Max => done.iter().copied().fold(acc, f64::max),
            };
        }
        if self.aggregate == Aggregate::Average {
            acc / self.roots.len() as f64
        } else {
            acc
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn branch(kind: NodeKind, feature: u32, value: f64, t: u32, f: u32) -> Node {
        Node { kind, feature, value, true_child: t, false_child: f, missing_true: false }
    }

    #[test]
    fn evaluates_and_renumbers_out_of_order_trees() {
        // Children listed before their siblings' subtrees, so renumbering moves them.
        let tree = vec![
            branch(NodeKind::Leq, 1, 2.0, 2, 1),
            Node::leaf(10.0),
            branch(NodeKind::Gt, 0, 0.5, 4, 3),
            Node::leaf(-1.0),
            Node::leaf(1.0),
        ];
        let e = TreeEnsemble::from_trees(2, &[tree.clone(), tree], 0.5, Aggregate::Average).unwrap();
        assert_eq!(e.predict(&[1.0, 2.0]), 0.5 + 1.0);
        assert_eq!(e.predict(&[0.0, 2.0]), 0.5 - 1.0);
        assert_eq!(e.predict(&[0.0, 3.0]), 0.5 + 10.0);
        // Missing values go to the false child unless marked otherwise.
        assert_eq!(e.predict(&[0.0]), 0.5 + 10.0);
    }

    #[test]
    fn the_fast_path_agrees_with_the_plain_walk_on_every_comparison() {
        // One tree per comparison kind, thresholds hit exactly, at zero, and around them.
        let kinds = [NodeKind::Lt, NodeKind::Leq, NodeKind::Gt, NodeKind::Gte];
        let mut trees = Vec::new();
        for (k, kind) in kinds.iter().enumerate() {
            for t in [-1.5, 0.0, 2.0] {
                trees.push(vec![
                    branch(*kind, (k % 2) as u32, t, 1, 2),
                    branch(NodeKind::Leq, 1, t, 3, 4),
                    Node::leaf(10.0 * (k + 1) as f64),
                    Node::leaf(1.0),
                    Node::leaf(-1.0),
                ]);
            }
        }
        for agg in [Aggregate::Sum, Aggregate::Average, Aggregate::Min, Aggregate::Max] {
            let e = TreeEnsemble::from_trees(2, &trees, 0.25, agg).unwrap();
            assert!(e.fast.is_some());
            for a in [-2.0, -1.5, -0.0, 0.0, 1e-300, 2.0, 3.0] {
                for b in [-1.5, 0.0, 2.0, 2.5] {
                    let x = [a, b];
                    assert_eq!(e.predict(&x), e.predict_plain(&x), "{agg:?} {x:?}");
                }
            }
            // Non-finite or missing inputs take the plain walk.
            assert_eq!(e.predict(&[f64::NAN, 0.0]), e.predict_plain(&[f64::NAN, 0.0]));
            assert_eq!(e.predict(&[1.0]), e.predict_plain(&[1.0]));
        }
        let eq = vec![branch(NodeKind::Eq, 0, 1.0, 1, 2), Node::leaf(1.0), Node::leaf(2.0)];
        let e = TreeEnsemble::from_trees(1, &[eq], 0.0, Aggregate::Sum).unwrap();
        assert!(e.fast.is_none());
        assert_eq!((e.predict(&[1.0]), e.predict(&[1.5])), (1.0, 2.0));
        assert_eq!(next_up(0.0), f64::from_bits(1));
        assert!(next_up(-1.0) > -1.0 && next_up(1.0) > 1.0);
    }

    #[test]
    fn broken_trees_are_refused() {
        let cyc = vec![branch(NodeKind::Lt, 0, 1.0, 1, 0), Node::leaf(1.0)];
        let e = TreeEnsemble::from_trees(1, &[cyc], 0.0, Aggregate::Sum).unwrap_err();
        assert!(e.contains("reached twice"), "{e}");
        let dangling = vec![branch(NodeKind::Lt, 0, 1.0, 1, 9), Node::leaf(1.0)];
        let e = TreeEnsemble::from_trees(1, &[dangling], 0.0, Aggregate::Sum).unwrap_err();
        assert!(e.contains("child 9"), "{e}");
        let bad_feature = vec![branch(NodeKind::Lt, 3, 1.0, 1, 2), Node::leaf(1.0), Node::leaf(2.0)];
        let e = TreeEnsemble::from_trees(1, &[bad_feature], 0.0, Aggregate::Sum).unwrap_err();
        assert!(e.contains("feature 3 of 1"), "{e}");
        let backwards = vec![Node::leaf(1.0), branch(NodeKind::Lt, 0, 1.0, 0, 0)];
        let e = TreeEnsemble::new(1, backwards, vec![1], 0.0, Aggregate::Sum).unwrap_err();
        assert!(e.contains("must come after"), "{e}");
    }
}
