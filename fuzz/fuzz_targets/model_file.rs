//! Model files (a versioned header and a postcard body, size-capped and checksummed).
#![no_main]
use energyllm_models::ModelFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ModelFile::from_bytes(data, "fuzz.elm");
});
