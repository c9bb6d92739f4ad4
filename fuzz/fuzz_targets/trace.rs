//! Every trace and length format, detected from the content (energyllm JSON lines, Mooncake,
//! Azure, Splitwise CSV…), strict and with invalid lines skipped, as lengths and as a trace.
#![no_main]
use std::path::Path;

use energyllm_workload::{LengthDataset, ReadOptions, Trace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for skip_invalid in [false, true] {
        let opts = ReadOptions { skip_invalid, ..ReadOptions::default() };
        let _ = LengthDataset::parse(data, Path::new("fuzz"), &opts);
        let _ = Trace::parse(data, Path::new("fuzz"), &opts);
    }
});
