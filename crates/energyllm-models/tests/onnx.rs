#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ONNX fixtures made by tests/fixtures/onnx/make_fixtures.py: predictions must match what ONNX
//! Runtime recorded to 1e-4. Built only with `--features onnx` (see `required-features`).

use std::path::{Path, PathBuf};

use energyllm_core::{Mhz, PerfModel, PerfQuery};
use energyllm_models::onnx::{
    decode_proto, tree_ensemble_from_proto, OnnxModel, OnnxPerfModel, OnnxRegressor,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx").join(name)
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn values(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn the_policy_mlp_runs_through_tract() {
    let exp = expected();
    let m = OnnxModel::load(&fixture("policy_mlp.onnx")).unwrap();
    assert_eq!(m.input_len(), 8);
    let obs = rows(&exp["policy_mlp"]["observations"]);
    let want = rows(&exp["policy_mlp"]["onnxruntime"]);
    for (o, w) in obs.iter().zip(&want) {
        let x: Vec<f32> = o.iter().map(|&v| v as f32).collect();
        let got = m.run(&x).unwrap();
        assert_eq!(got.len(), 4);
        for (g, w) in got.iter().zip(w) {
            assert!((f64::from(*g) - w).abs() <= 1e-4, "{g} vs {w}");
        }
    }
    let e = m.run(&[0.0; 3]).unwrap_err().to_string();
    assert!(e.contains("3 inputs") && e.contains("reads 8"), "{e}");
}

#[test]
fn scikit_learn_regressors_match_onnx_runtime() {
    let exp = expected();
    let features = rows(&exp["features"]);
    for (name, tract) in [("sklearn_linear", true), ("sklearn_gbr", false), ("sklearn_rf", false)] {
        let m = OnnxRegressor::load(&fixture(&format!("{name}.onnx"))).unwrap();
        assert_eq!(matches!(m, OnnxRegressor::Tract(_)), tract, "{name}: {m:?}");
        let want = values(&exp[name]["onnxruntime"]);
        assert_eq!(want.len(), features.len());
        for (x, w) in features.iter().zip(&want) {
            let got = m.predict(x).unwrap();
            assert!((got - w).abs() <= 1e-4, "{name}: {got} vs {w}");
        }
    }
}

#[test]
fn a_latency_and_power_pair_is_a_perf_model() {
    let m = OnnxPerfModel {
        latency: OnnxRegressor::load(&fixture("sklearn_gbr.onnx")).unwrap(),
        power: OnnxRegressor::load(&fixture("sklearn_linear.onnx")).unwrap(),
    };
    let exp = expected();
    let x = &rows(&exp["features"])[0];
    let q = PerfQuery {
        freq: Mhz(x[0] as u32),
        batch: x[1] as u32,
        prefill_tokens: x[2] as u32,
        decode_tokens: x[3] as u32,
        kv_tokens: x[4] as u64,
    };
    let p = m.predict(&q);
    assert!((p.latency_s - values(&exp["sklearn_gbr"]["onnxruntime"])[0]).abs() <= 1e-4);
    assert!((p.power_w - values(&exp["sklearn_linear"]["onnxruntime"])[0].max(0.0)).abs() <= 1e-4);
}

#[test]
fn broken_files_and_broken_trees_are_clear_errors() {
    let bytes = std::fs::read(fixture("sklearn_gbr.onnx")).unwrap();
    let e = decode_proto(&bytes[..bytes.len() / 2], "half.onnx").unwrap_err().to_string();
    assert!(e.contains("half.onnx") && e.contains("not a valid ONNX"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"definitely not protobuf \xff\xff\xff").unwrap();
    assert!(OnnxRegressor::load(&junk).unwrap_err().to_string().contains("junk.onnx"));

    let proto = decode_proto(&bytes, "gbr.onnx").unwrap();
    let with = |f: &dyn Fn(&mut tract_onnx::pb::NodeProto)| {
        let mut p = proto.clone();
        let node =
            p.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "TreeEnsembleRegressor").unwrap();
        f(node);
        tree_ensemble_from_proto(&p, "gbr.onnx").unwrap_err().to_string()
    };
    let e = with(&|n| n.attribute.retain(|a| a.name != "nodes_modes"));
    assert!(e.contains("nodes_modes"), "{e}");
    let e = with(&|n| {
        let a = n.attribute.iter_mut().find(|a| a.name == "nodes_truenodeids").unwrap();
        a.ints[0] = 9999;
    });
    assert!(e.contains("9999") || e.contains("root"), "{e}");
    let e = with(&|n| {
        let a = n.attribute.iter_mut().find(|a| a.name == "nodes_modes").unwrap();
        a.strings[0] = b"BRANCH_MEMBER".to_vec();
    });
    assert!(e.contains("BRANCH_MEMBER"), "{e}");
    let e = with(&|n| {
        let a = n.attribute.iter_mut().find(|a| a.name == "post_transform").unwrap();
        a.s = b"LOGISTIC".to_vec();
    });
    assert!(e.contains("LOGISTIC"), "{e}");
}

/// A graph found by fuzzing (fuzz/fuzz_targets/onnx_model.rs) on which tract-onnx 0.23 panics
/// while reading it: loading it is an error that names the file, not a crash.
#[test]
fn a_graph_that_makes_tract_panic_is_an_error() {
    let path = fixture("fuzz/tract-panic.onnx");
    let e = energyllm_models::onnx::OnnxRegressor::load(&path).unwrap_err().to_string();
    assert!(e.contains("tract-panic.onnx") && e.contains("tract"), "{e}");
}
