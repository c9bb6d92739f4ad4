//! A compact, validated tree ensemble evaluated natively.
//!
//! Every tree model in the crate ends up here, whatever fitted it: the gradient-boosted trees
//! forust-ml grows, and ONNX-ML `TreeEnsembleRegressor` graphs exported from scikit-learn,
//! XGBoost or LightGBM (which tract does not run). One evaluator means one thing to make fast
//! (a prediction is a few hundred branch-and-load steps over a flat array) and one thing to
//! validate when a model file is read.
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
        RawEnsemble { n_features: t.n_features, nodes: t.nodes, roots: t.roots, base: t.base, aggregate: t.aggregate }
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
        Ok(TreeEnsemble { n_features, nodes, roots, base, aggregate })
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
                    return Err(format!("tree {t}: a node points to child {old}, past its {} nodes", tree.len()));
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
        let outputs = self.roots.iter().map(|&r| self.tree_output(r, x));
        let agg = match self.aggregate {
            Aggregate::Sum => outputs.sum(),
            Aggregate::Average => outputs.sum::<f64>() / self.roots.len() as f64,
            Aggregate::Min => outputs.fold(f64::INFINITY, f64::min),
            Aggregate::Max => outputs.fold(f64::NEG_INFINITY, f64::max),
        };
        self.base + agg
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
