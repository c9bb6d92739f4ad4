//! PPO checkpoints (JSON with the policy's spec and weights).
#![no_main]
use energyllm_policy::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Checkpoint::parse(text, "fuzz.json");
});
