//! ONNX model files: the protobuf decoding, the tree-ensemble reader, and tract's loading and
//! running of whatever graph decodes.
#![no_main]
use energyllm_models::onnx::{decode_proto, tree_ensemble_from_proto, OnnxModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proto) = decode_proto(data, "fuzz.onnx") else { return };
    if let Ok(Some(trees)) = tree_ensemble_from_proto(&proto, "fuzz.onnx") {
        let _ = trees.predict(&[0.5; 8]);
        return;
    }
    if let Ok(model) = OnnxModel::from_proto(&proto, "fuzz.onnx") {
        let _ = model.run(&vec![0.5; model.input_len().min(4096)]);
    }
});
