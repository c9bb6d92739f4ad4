//! A large synthetic ShareGPT file, for benchmarking the converter on inputs of any size.

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Writes a synthetic ShareGPT file of about `target_bytes` bytes (a JSON array of multi-turn
/// conversations of English-like words), for benchmarking [`process`] on large inputs. Returns the
/// number of conversations written. Deterministic for a given seed.
pub fn write_synthetic_sharegpt(out: &mut impl Write, target_bytes: u64, seed: u64) -> std::io::Result<u64> {
    const WORDS: &[&str] = &[
        "the",
        "model",
        "energy",
        "request",
        "token",
        "latency",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "frequency",
        "batch",
        "serving",
        "GPU",
        "power",
        "we",
        "that",
        "for",
        "with",
        "can",
        "explain",
        "how",
        "why",
        "data",
        "function",
        "return",
        "value",
        "example",
        "please",
        "write",
        "code",
        "python",
        "rust",
        "system",
        "memory",
        "cache",
        "throughput",
        "question",
        "answer",
        "because",
        "however",
        "therefore",
        "result",
        "time",
        "queue",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut written = 0u64;
    let mut conversations = 0u64;
    let mut text = String::new();
    out.write_all(b"[\n")?;
    while written < target_bytes {
        if conversations > 0 {
            out.write_all(b",\n")?;
        }
        let turns = rng.gen_range(1..=4) * 2;
        let mut conv = format!("{{\"id\": \"c{conversations}\", \"conversations\": [");
        for t in 0..turns {
            text.clear();
            // Prompts short, answers longer; both with a heavy-ish tail.
            let words = if t % 2 == 0 { rng.gen_range(3..80) } else { rng.gen_range(20..400) };
            for w in 0..words {
                if w > 0 {
                    text.push(if rng.gen_range(0..12) == 0 { '\n' } else { ' ' });
                }
                text.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
            }
            let from = if t % 2 == 0 { "human" } else { "gpt" };
            if t > 0 {
                conv.push_str(", ");
            }
            conv.push_str(&format!("{{\"from\": \"{from}\", \"value\": {}}}", Value::String(text.clone())));
        }
        conv.push_str("]}");
        out.write_all(conv.as_bytes())?;
        written += conv.len() as u64 + 2;
        conversations += 1;
    }
    out.write_all(b"\n]\n")?;
    Ok(conversations)
}
