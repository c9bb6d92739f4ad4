//! What the gateway reads from a client's request body before queueing it.
#![no_main]
use energyllm_engines::live::gateway::parse_request_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = parse_request_body(data) {
        assert!(b.input_tokens >= 1);
    }
});
