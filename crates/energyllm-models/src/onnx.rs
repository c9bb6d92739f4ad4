//! ONNX models: tract for neural networks and linear models, the native evaluator for tree
//! ensembles (behind the `onnx` cargo feature).
//!
//! A model exported from Python loads as it is:
//!
//! - [`OnnxModel`] runs any graph tract implements: a PyTorch policy network (Gemm/Relu), a
//!   scikit-learn linear regressor (the ONNX-ML `LinearRegressor` op), … with a fixed input
//!   shape of one row.
//! - tract 0.23 does not implement ONNX-ML `TreeEnsembleRegressor`, which is what a
//!   scikit-learn, XGBoost or LightGBM tree model (a throttLL'eM- or EnergyLLM-style model)
//!   becomes. [`tree_ensemble_from_proto`] reads that op's attributes from the graph protobuf
//!   (tract's `pb` types) into a [`TreeEnsemble`], which the crate evaluates natively.
//! - [`OnnxRegressor`] picks between the two when loading a file, and [`OnnxPerfModel`] pairs a
//!   latency and a power regressor over the five performance features as a `PerfModel`.
//!
//! Files are read with a size limit ([`MAX_ONNX_FILE_BYTES`]); every attribute is checked
//! (lengths agree, ids resolve, modes are known, trees are trees) before a tree is built.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

pub use tract_onnx::pb;
use tract_onnx::prelude::{tvec, Framework, Tensor, TypedRunnableModel, *};

use energyllm_core::{PerfModel, PerfPrediction, PerfQuery};

use crate::dataset::perf_features;
use crate::tree::{Aggregate, Node, NodeKind, TreeEnsemble};
use crate::Error;

/// The largest ONNX file read, in bytes (256 MiB).
pub const MAX_ONNX_FILE_BYTES: u64 = 256 * 1024 * 1024;

fn onnx_err(name: &str, reason: impl Into<String>) -> Error {
    Error::Onnx { name: name.to_owned(), reason: reason.into() }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_ONNX_FILE_BYTES {
        return Err(onnx_err(
            &path.display().to_string(),
            format!("{len} bytes is over the {MAX_ONNX_FILE_BYTES}-byte limit"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_ONNX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Decodes an ONNX protobuf.
pub fn decode_proto(bytes: &[u8], name: &str) -> Result<pb::ModelProto, Error> {
    if bytes.len() as u64 > MAX_ONNX_FILE_BYTES {
        return Err(onnx_err(
            name,
            format!("{} bytes is over the {MAX_ONNX_FILE_BYTES}-byte limit", bytes.len()),
        ));
    }
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| onnx_err(name, format!("not a valid ONNX protobuf: {e}")))
}

/// Encodes an ONNX protobuf (the inverse of [`decode_proto`]): how a graph built from `pb`
/// types, such as an exported policy network, becomes a file.
pub fn encode_proto(proto: &pb::ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(proto)
}

/// The length of the graph's first input along its last axis, when the file states it.
fn input_len(proto: &pb::ModelProto) -> Option<usize> {
    let graph = proto.graph.as_ref()?;
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph.input.iter().find(|i| !initializers.contains(&i.name.as_str()))?;
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    match t.shape.as_ref()?.dim.last()?.value.as_ref()? {
        pb::tensor_shape_proto::dimension::Value::DimValue(n) if *n > 0 => usize::try_from(*n).ok(),
        _ => None,
    }
}

/// A graph tract runs, optimised for one row of `f32` input.
#[derive(Clone)]
pub struct OnnxModel {
    name: String,
    plan: Arc<TypedRunnableModel>,
    input_len: usize,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("name", &self.name).field("input_len", &self.input_len).finish()
    }
}

impl OnnxModel {
    /// Loads and optimises a graph for input shape `[1, n]`, `n` from the file's input shape.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let name = path.display().to_string();
        let proto = decode_proto(&read_bounded(path)?, &name)?;
        Self::from_proto(&proto, &name)
    }

    /// Builds from a decoded protobuf; `name` names it in errors.
    pub fn from_proto(proto: &pb::ModelProto, name: &str) -> Result<Self, Error> {
        let n = input_len(proto).ok_or_else(|| {
            onnx_err(
                name,
                "the first graph input has no fixed last dimension: export with a known feature count",
            )
        })?;
        // tract can panic on a malformed graph (fuzzing found one in tract-onnx's graph reader):
        // a file a user hands in must give an error, not end the process.
        let build = || {
            tract_onnx::onnx()
                .model_for_proto_model(proto)
                .and_then(|m| m.with_input_fact(0, f32::fact([1, n]).into()))
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
        };
        let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
            .map_err(|p| onnx_err(name, format!("tract failed on this graph: {}", panic_text(&*p))))?
            .map_err(|e| onnx_err(name, format!("tract cannot run this graph: {e:#}")))?;
        Ok(OnnxModel { name: name.to_owned(), plan, input_len: n })
    }

    /// Values the model reads per row.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Runs one row; returns the first output, flattened.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, Error> {
        if input.len() != self.input_len {
            return Err(onnx_err(
                &self.name,
                format!("{} inputs given, the model reads {}", input.len(), self.input_len),
            ));
        }
        let tensor = Tensor::from_shape(&[1, self.input_len], input)
            .map_err(|e| onnx_err(&self.name, e.to_string()))?;
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.plan.run(tvec!(tensor.into()))))
                .map_err(|p| {
                    onnx_err(&self.name, format!("tract failed running the graph: {}", panic_text(&*p)))
                })?
                .map_err(|e| onnx_err(&self.name, format!("{e:#}")))?;
        let first = out.first().ok_or_else(|| onnx_err(&self.name, "the graph has no output"))?;
        let view = first
            .to_plain_array_view::<f32>()
            .map_err(|e| onnx_err(&self.name, format!("output is not f32: {e}")))?;
        Ok(view.iter().copied().collect())
    }
}

/// A caught panic's message.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints<'a>(node: &'a pb::NodeProto, name: &str) -> &'a [i64] {
    attr(node, name).map_or(&[], |a| a.ints.as_slice())
}

/// A float list attribute, or its `_as_tensor` double form (ONNX-ML opset 3).
fn floats(node: &pb::NodeProto, name: &str, model: &str) -> Result<Vec<f64>, Error> {
    if let Some(a) = attr(node, name) {
        return Ok(a.floats.iter().map(|&v| f64::from(v)).collect());
    }
    let Some(t) = attr(node, &format!("{name}_as_tensor")).and_then(|a| a.t.as_ref()) else {
        return Ok(Vec::new());
    };
    const FLOAT: i32 = 1;
    const DOUBLE: i32 = 11;
    match t.data_type {
        DOUBLE if !t.double_data.is_empty() => Ok(t.double_data.clone()),
        FLOAT if !t.float_data.is_empty() => Ok(t.float_data.iter().map(|&v| f64::from(v)).collect()),
        DOUBLE if t.raw_data.len() % 8 == 0 => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        FLOAT if t.raw_data.len() % 4 == 0 => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()),
        other => Err(onnx_err(
            model,
            format!("attribute `{name}_as_tensor` has data type {other}; expected float or double"),
        )),
    }
}

fn string(node: &pb::NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Reads the graph's `TreeEnsembleRegressor` into a [`TreeEnsemble`]; `Ok(None)` when the graph
/// has none. The graph may hold only that op (and `Cast`/`Identity` around it): a pipeline that
/// scales or encodes features first is refused, since the trees alone would mispredict.
pub fn tree_ensemble_from_proto(proto: &pb::ModelProto, name: &str) -> Result<Option<TreeEnsemble>, Error> {
    let err = |r: String| onnx_err(name, r);
    let Some(graph) = proto.graph.as_ref() else { return Err(err("the file has no graph".into())) };
    let Some(node) = graph.node.iter().find(|n| n.op_type == "TreeEnsembleRegressor") else {
        return Ok(None);
    };
    let others: Vec<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .filter(|op| !matches!(*op, "TreeEnsembleRegressor" | "Cast" | "Identity"))
        .collect();
    if !others.is_empty() || graph.node.iter().filter(|n| n.op_type == "TreeEnsembleRegressor").count() > 1 {
        return Err(err(format!(
            "the graph combines TreeEnsembleRegressor with other ops ({}): export the tree model alone",
            others.join(", ")
        )));
    }
    let n_targets = attr(node, "n_targets").map_or(1, |a| a.i);
    if n_targets != 1 {
        return Err(err(format!(
            "TreeEnsembleRegressor has {n_targets} targets; export one regressor per target"
        )));
    }
    if let Some(p) = string(node, "post_transform").filter(|p| p != "NONE") {
        return Err(err(format!("post_transform `{p}` is not supported (only NONE)")));
    }
    let aggregate = match string(node, "aggregate_function").as_deref().unwrap_or("SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => return Err(err(format!("aggregate_function `{other}` is unknown"))),
    };
    let tree_ids = ints(node, "nodes_treeids");
    let node_ids = ints(node, "nodes_nodeids");
    let feature_ids = ints(node, "nodes_featureids");
    let true_ids = ints(node, "nodes_truenodeids");
    let false_ids = ints(node, "nodes_falsenodeids");
    let missing = ints(node, "nodes_missing_value_tracks_true");
    let values = floats(node, "nodes_values", name)?;
    let modes: Vec<String> = attr(node, "nodes_modes")
        .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default();
    let n = tree_ids.len();
    for (attr_name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", feature_ids.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_values", values.len()),
        ("nodes_modes", modes.len()),
    ] {
        if len != n {
            return Err(err(format!("`{attr_name}` has {len} entries but `nodes_treeids` has {n}")));
        }
    }
    if !missing.is_empty() && missing.len() != n {
        return Err(err(format!(
            "`nodes_missing_value_tracks_true` has {} entries, expected {n}",
            missing.len()
        )));
    }
    let t_trees = ints(node, "target_treeids");
    let t_nodes = ints(node, "target_nodeids");
    let t_ids = ints(node, "target_ids");
    let t_weights = floats(node, "target_weights", name)?;
    if t_nodes.len() != t_trees.len() || t_ids.len() != t_trees.len() || t_weights.len() != t_trees.len() {
        return Err(err("the target_* attributes have different lengths".into()));
    }
    let base = floats(node, "base_values", name)?.first().copied().unwrap_or(0.0);

    // Leaf outputs, summed per (tree, node) as the op specifies.
    let mut leaf_value: HashMap<(i64, i64), f64> = HashMap::new();
    for i in 0..t_trees.len() {
        if t_ids[i] != 0 {
            return Err(err(format!("target entry {i} is for target {}, but n_targets is 1", t_ids[i])));
        }
        *leaf_value.entry((t_trees[i], t_nodes[i])).or_insert(0.0) += t_weights[i];
    }
    // Group node entries by tree, in order of first appearance.
    let mut tree_order: Vec<i64> = Vec::new();
    let mut by_tree: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, &t) in tree_ids.iter().enumerate() {
        by_tree.entry(t).or_insert_with(|| {
            tree_order.push(t);
            Vec::new()
        });
        if let Some(v) = by_tree.get_mut(&t) {
            v.push(i);
        }
    }
    let mut n_features: u32 = input_len(proto).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let mut trees = Vec::with_capacity(tree_order.len());
    for t in tree_order {
        let entries = by_tree.get(&t).map(Vec::as_slice).unwrap_or_default();
        // Local index of each node id, with the root (the node no other node points to) first.
        let children: std::collections::HashSet<i64> = entries
            .iter()
            .filter(|&&i| modes[i] != "LEAF")
            .flat_map(|&i| [true_ids[i], false_ids[i]])
            .collect();
        let roots: Vec<usize> =
            entries.iter().copied().filter(|&i| !children.contains(&node_ids[i])).collect();
        let [root] = roots[..] else {
            return Err(err(format!("tree {t} has {} root nodes; expected one", roots.len())));
        };
        let mut order = vec![root];
        order.extend(entries.iter().copied().filter(|&i| i != root));
        let local: HashMap<i64, u32> =
            order.iter().enumerate().map(|(k, &i)| (node_ids[i], k as u32)).collect();
        if local.len() != order.len() {
            return Err(err(format!("tree {t} repeats a node id")));
        }
        let mut nodes = Vec::with_capacity(order.len());
        for &i in &order {
            let kind = match modes[i].as_str() {
                "LEAF" => {
                    nodes.push(Node::leaf(leaf_value.get(&(t, node_ids[i])).copied().unwrap_or(0.0)));
                    continue;
                }
                "BRANCH_LEQ" => NodeKind::Leq,
                "BRANCH_LT" => NodeKind::Lt,
                "BRANCH_GTE" => NodeKind::Gte,
                "BRANCH_GT" => NodeKind::Gt,
                "BRANCH_EQ" => NodeKind::Eq,
                "BRANCH_NEQ" => NodeKind::Neq,
                other => {
                    return Err(err(format!(
                        "tree {t} node {}: mode `{other}` is not supported",
                        node_ids[i]
                    )))
                }
            };
            let child = |id: i64| {
                local
                    .get(&id)
                    .copied()
                    .ok_or_else(|| err(format!("tree {t} node {}: child {id} does not exist", node_ids[i])))
            };
            let feature = u32::try_from(feature_ids[i]).map_err(|_| {
                err(format!("tree {t} node {}: feature id {} is negative", node_ids[i], feature_ids[i]))
            })?;
            n_features = n_features.max(feature.saturating_add(1));
            nodes.push(Node {
                kind,
                feature,
                value: values[i],
                true_child: child(true_ids[i])?,
                false_child: child(false_ids[i])?,
                missing_true: missing.get(i).is_some_and(|&m| m != 0),
            });
        }
        trees.push(nodes);
    }
    TreeEnsemble::from_trees(n_features, &trees, base, aggregate).map(Some).map_err(err)
}

/// A single-output ONNX regressor: tract for what tract runs, native trees for
/// `TreeEnsembleRegressor`.
#[derive(Clone, Debug)]
pub enum OnnxRegressor {
    /// Run by tract.
    Tract(OnnxModel),
    /// A tree ensemble read from the graph.
    Trees(TreeEnsemble),
}

impl OnnxRegressor {
    /// Loads a file, choosing the evaluator from the graph.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let name = path.display().to_string();
        let proto = decode_proto(&read_bounded(path)?, &name)?;
        match tree_ensemble_from_proto(&proto, &name)? {
            Some(trees) => Ok(OnnxRegressor::Trees(trees)),
            None => Ok(OnnxRegressor::Tract(OnnxModel::from_proto(&proto, &name)?)),
        }
    }

    /// The prediction for one row. Inputs are rounded to `f32` first, the type ONNX
    /// regressors take, so tree thresholds compare as they do in ONNX Runtime.
    pub fn predict(&self, x: &[f64]) -> Result<f64, Error> {
        match self {
            OnnxRegressor::Trees(t) => {
                let row: Vec<f64> = x.iter().map(|&v| f64::from(v as f32)).collect();
                Ok(t.predict(&row))
            }
            OnnxRegressor::Tract(m) => {
                let row: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let out = m.run(&row)?;
                out.first().map(|&v| f64::from(v)).ok_or_else(|| onnx_err(&m.name, "empty output"))
            }
        }
    }
}

/// Latency (seconds) and power (watts) regressors over the five performance features.
#[derive(Clone, Debug)]
pub struct OnnxPerfModel {
    /// Iteration latency, in seconds.
    pub latency: OnnxRegressor,
    /// Power, in watts.
    pub power: OnnxRegressor,
}

impl PerfModel for OnnxPerfModel {
    fn name(&self) -> &str {
        "onnx"
    }

    /// A run error (tract failing on a validated model) gives 0 rather than a panic: the
    /// contract wants a total function, and a policy treats 0 power/latency as "no estimate".
    fn predict(&self, query: &PerfQuery) -> PerfPrediction {
        let x = perf_features(query);
        let clean = |r: Result<f64, Error>| r.ok().filter(|v| v.is_finite()).map_or(0.0, |v| v.max(0.0));
        PerfPrediction { latency_s: clean(self.latency.predict(&x)), power_w: clean(self.power.predict(&x)) }
    }
}
