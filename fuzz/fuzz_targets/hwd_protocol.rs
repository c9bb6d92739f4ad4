//! The clock daemon's frames: reading length-limited lines from a peer and parsing requests.
#![no_main]
use energyllm_hwd::protocol::{parse_request, read_frame, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = std::io::BufReader::new(data);
    let mut buf = Vec::new();
    while let Ok(Ok(true)) = read_frame(&mut reader, &mut buf) {
        assert!(buf.len() < MAX_FRAME);
        let _ = parse_request(&buf);
    }
});
