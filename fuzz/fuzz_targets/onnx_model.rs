//! ONNX model files: the protobuf decoding, the tree-ensemble reader, and tract's loading and
//! running of whatever graph decodes.
//!
//! energyllm catches tract's panics (tract-onnx panics on some malformed graphs) and turns them
//! into errors. libfuzzer-sys's panic hook would abort on those before they are caught, so this
//! target puts back a quiet hook: a panic that escapes energyllm still aborts, in libfuzzer-sys'
//! own `catch_unwind` around the target.
#![no_main]
use std::sync::Once;

use energyllm_models::onnx::{decode_proto, tree_ensemble_from_proto, OnnxModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Ok(proto) = decode_proto(data, "fuzz.onnx") else { return };
    if let Ok(Some(trees)) = tree_ensemble_from_proto(&proto, "fuzz.onnx") {
        let _ = trees.predict(&[0.5; 8]);
        return;
    }
    if let Ok(model) = OnnxModel::from_proto(&proto, "fuzz.onnx") {
        let _ = model.run(&vec![0.5; model.input_len().min(4096)]);
    }
});
