//! Batch- and iteration-level profile CSVs (ours and EnergyLLM's `performance_profile.csv`).
#![no_main]
use std::path::Path;

use energyllm_models::profile::{parse_batch_profile, parse_iteration_profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_batch_profile(data, Path::new("fuzz.csv"));
    let _ = parse_iteration_profile(data, Path::new("fuzz.csv"));
});
