//! Prometheus text from an engine's `/metrics`, and what the gateway reads from it.
#![no_main]
use energyllm_engines::live::{EngineKind, Metrics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Metrics::parse(text) {
        for kind in [EngineKind::Vllm, EngineKind::Tgi, EngineKind::Llamacpp] {
            let _ = kind.state_from_metrics(&m);
            let latency = kind.latency_from_metrics(&m);
            if let Some(h) = latency.ttft_s {
                let _ = (h.mean(), h.quantile(0.99), h.since(&h));
            }
            let _ = kind.counters_from_metrics(&m);
        }
    }
});
