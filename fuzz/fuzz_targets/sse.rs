//! The server-sent-events decoder, fed in chunks split where the input says.
#![no_main]
use energyllm_engines::live::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let mut d = SseDecoder::new();
    for chunk in rest.chunks(step) {
        if d.push(chunk).is_err() {
            return;
        }
    }
    let _ = d.finish();
});
