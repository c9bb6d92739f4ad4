//! PPO policies as ONNX graphs (cargo feature `onnx`): export a checkpoint's actor, serve an ONNX
//! policy through tract.
//!
//! The exported graph is what `torch.onnx.export` makes of the same network: input
//! `observation` of shape `[1, n_features]`, one `Gemm` (`transB = 1`, weights stored out × in as
//! in [`Mlp`]) per layer with `Relu` or `Tanh` between them, output `logits` of shape
//! `[1, n_actions]`, opset 13. The [`PolicySpec`] rides along as the metadata entry
//! [`SPEC_METADATA_KEY`] (JSON), so loading an exported file checks it exactly as loading the
//! checkpoint would.
//!
//! A file without that entry (a policy trained in PyTorch) is served too: its features come from
//! the plugin's `features=` setting (default token-aware), its action space is the deployment's,
//! every action allowed, and the safety shield is on (so it needs a performance model, as the
//! default checkpoint does; `shield=false` turns it off). Its input and output widths are checked against them at load, so a
//! network made for other features or another action space is refused with the numbers.

use std::path::Path;

use energyllm_core::registry::PolicyContext;
use energyllm_models::onnx::{decode_proto, encode_proto, pb, OnnxModel};

use crate::agent::{Checkpoint, Network, PolicySpec, PpoPolicy, PpoPolicyConfig, CHECKPOINT_FORMAT};
use crate::features::FeatureSet;
use crate::nn::Activation;
use crate::Error;

/// The ONNX metadata key that holds the exported policy's [`PolicySpec`] as JSON.
pub const SPEC_METADATA_KEY: &str = "energyllm.policy_spec";
/// The opset the exporter targets (Gemm, Relu and Tanh as ONNX 1.8 defines them).
pub const OPSET: i64 = 13;
/// Largest ONNX policy file accepted, in bytes (a 256-256 network is about 400 kB).
pub const MAX_ONNX_POLICY_BYTES: u64 = 64 << 20;

fn tensor_value(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    let shape = pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| pb::tensor_shape_proto::Dimension {
                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect(),
    };
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn initializer(name: String, dims: Vec<i64>, values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name,
        dims,
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn int_attribute(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_owned(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn dim(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The checkpoint's actor as an ONNX model (see the [module docs](self)).
pub fn to_proto(checkpoint: &Checkpoint) -> pb::ModelProto {
    let actor = &checkpoint.actor;
    let n_layers = actor.sizes().len() - 1;
    let activation = match actor.activation() {
        Activation::Relu => "Relu",
        Activation::Tanh => "Tanh",
    };
    let mut graph = pb::GraphProto {
        name: "ppo_actor".into(),
        input: vec![tensor_value("observation", &[1, dim(actor.input_dim())])],
        output: vec![tensor_value("logits", &[1, dim(actor.output_dim())])],
        ..Default::default()
    };
    let mut x = "observation".to_owned();
    for (l, layer) in actor.layer_views().enumerate() {
        let (w, b) = (format!("layer{l}.weight"), format!("layer{l}.bias"));
        graph.initializer.push(initializer(
            w.clone(),
            vec![dim(layer.fan_out), dim(layer.fan_in)],
            layer.weights,
        ));
        graph.initializer.push(initializer(b.clone(), vec![dim(layer.fan_out)], layer.bias));
        let last = l + 1 == n_layers;
        let z = if last { "logits".to_owned() } else { format!("layer{l}.linear") };
        graph.node.push(pb::NodeProto {
            name: format!("layer{l}.gemm"),
            op_type: "Gemm".into(),
            input: vec![x, w, b],
            output: vec![z.clone()],
            attribute: vec![int_attribute("transB", 1)],
            ..Default::default()
        });
        x = z;
        if !last {
            let y = format!("layer{l}.out");
            graph.node.push(pb::NodeProto {
                name: format!("layer{l}.act"),
                op_type: activation.into(),
                input: vec![x],
                output: vec![y.clone()],
                ..Default::default()
            });
            x = y;
        }
    }
    // Serialising plain data with string keys cannot fail.
    let spec = serde_json::to_string(&checkpoint.spec).unwrap_or_default();
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "energyllm".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{CHECKPOINT_FORMAT} actor: observation features to action logits"),
        graph: Some(graph),
        metadata_props: vec![pb::StringStringEntryProto { key: SPEC_METADATA_KEY.into(), value: spec }],
        ..Default::default()
    }
}

/// Writes the checkpoint's actor as an ONNX file.
pub fn export(checkpoint: &Checkpoint, path: &Path) -> Result<(), Error> {
    std::fs::write(path, encode_proto(&to_proto(checkpoint)))
        .map_err(|source| Error::Io { path: path.to_owned(), source })
}

fn onnx_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Checkpoint { name: name.to_owned(), reason: reason.into() }
}

/// An error of the ONNX layer, reworded for the policy file `name` (which it already names).
fn model_error(name: &str, e: energyllm_models::Error) -> Error {
    match e {
        energyllm_models::Error::Onnx { reason, .. } => onnx_error(name, reason),
        other => onnx_error(name, other.to_string()),
    }
}

/// The spec stored in an exported file, if there is one.
fn stored_spec(proto: &pb::ModelProto, name: &str) -> Result<Option<PolicySpec>, Error> {
    let Some(entry) = proto.metadata_props.iter().find(|e| e.key == SPEC_METADATA_KEY) else {
        return Ok(None);
    };
    let spec: PolicySpec = serde_json::from_str(&entry.value).map_err(|e| {
        onnx_error(
            name,
            format!("its `{SPEC_METADATA_KEY}` metadata is not a policy spec ({e}); re-export it"),
        )
    })?;
    spec.check(name)?;
    Ok(Some(spec))
}

/// Loads an ONNX policy for the context's action space (see the [module docs](self)).
pub fn load(path: &Path, config: &PpoPolicyConfig, ctx: &PolicyContext) -> Result<PpoPolicy, Error> {
    let name = path.display().to_string();
    let io = |source| Error::Io { path: path.to_owned(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_ONNX_POLICY_BYTES {
        return Err(onnx_error(
            &name,
            format!("is {len} bytes, more than the {} MiB limit", MAX_ONNX_POLICY_BYTES >> 20),
        ));
    }
    let proto = decode_proto(&std::fs::read(path).map_err(io)?, &name)
        .map_err(|e| onnx_error(&name, e.to_string()))?;
    let spec = match (stored_spec(&proto, &name)?, config.features) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "{name} carries its own feature spec; drop `features=` (it is for ONNX files without one)"
            )))
        }
        (Some(spec), None) => spec,
        (None, features) => PolicySpec::new(features.unwrap_or(FeatureSet::TokenAware), &ctx.action_space),
    };
    let space = spec.check(&name)?;
    let model = OnnxModel::from_proto(&proto, &name).map_err(|e| model_error(&name, e))?;
    if model.input_len() != spec.features.dim() {
        return Err(onnx_error(
            &name,
            format!(
                "reads {} inputs, but the `{}` features are {}; pass `features=` matching how it was trained",
                model.input_len(),
                spec.features.label(),
                spec.features.dim()
            ),
        ));
    }
    let outputs = model.run(&vec![0.0; model.input_len()]).map_err(|e| model_error(&name, e))?;
    if outputs.len() != space.len() {
        return Err(onnx_error(
            &name,
            format!(
                "gives {} outputs, but the action space has {} actions ({} clocks × {} batch caps)",
                outputs.len(),
                space.len(),
                space.freqs().len(),
                space.batches().len()
            ),
        ));
    }
    PpoPolicy::with_network(spec, Network::onnx(model, outputs.len()), &name, config, ctx)
}
