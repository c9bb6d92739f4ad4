//! An engine's answers, plain and streamed, as each adapter reads them.
#![no_main]
use energyllm_engines::live::upstream::{parse_plain, StreamAccumulator};
use energyllm_engines::live::EngineKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for kind in [EngineKind::Vllm, EngineKind::Tgi, EngineKind::Llamacpp] {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            let _ = parse_plain(kind, &v);
        }
        let mut acc = StreamAccumulator::new(kind);
        for (k, event) in text.split("\n\n").enumerate() {
            let _ = acc.event(event, k as f64 * 0.01);
        }
        let _ = acc.output_tokens();
    }
});
