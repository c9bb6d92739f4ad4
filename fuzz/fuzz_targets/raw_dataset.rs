//! Raw conversation datasets (ShareGPT JSON, LMSYS-Chat-1M, WildChat, generic JSON lines) into
//! lengths, counting tokens with the default encoding.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use energyllm_workload::raw_dataset::{process, ProcessOptions, RawFormat};
use energyllm_workload::tokenize::{Tokenizer, DEFAULT_ENCODING};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    let tokenizer = TOKENIZER.get_or_init(|| Tokenizer::from_spec(DEFAULT_ENCODING).expect("built-in encoding"));
    // The first byte picks the format and whether bad records are skipped.
    let Some((&pick, rest)) = data.split_first() else { return };
    let format = RawFormat::ALL[usize::from(pick) % RawFormat::ALL.len()];
    let opts = ProcessOptions { skip_invalid: pick & 0x80 != 0, ..ProcessOptions::new(format) };
    let mut out = Vec::new();
    let _ = process(rest, Path::new("fuzz"), &mut out, tokenizer, &opts);
});
