//! The workload files shipped in `data/` (compiled into the program, so they work on a fresh
//! clone), and the code that regenerates them (`cargo xtask gen-samples`).
//!
//! Two are synthetic (drawn from [`crate::synthetic`] recipes); three are converted from public
//! traces whose licences allow it (Mooncake, Apache-2.0; Vidur, MIT). The conversions are
//! deterministic functions of the source files, so regenerating from the same sources gives the
//! same bytes. See `data/README.md` for sources, licences and statistics.

use std::io::BufRead;
use std::path::Path;

use crate::synthetic::{SHAREGPT_LIKE, WILDCHAT_LIKE};
use crate::trace::{read_records, ReadOptions, TraceFormat};
use crate::Error;

/// What a bundled file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundledKind {
    /// Lengths only: draw from it with an arrival process (`--dataset NAME`).
    Lengths,
    /// Arrival times and lengths: replay it (`--trace NAME`), or draw lengths from it.
    Trace,
}

/// A workload file shipped with the program.
#[derive(Clone, Copy, Debug)]
pub struct Bundled {
    /// Name on the command line (`--dataset NAME`, `--trace NAME`, `dataset stats NAME`).
    pub name: &'static str,
    /// File name under `crates/energyllm-workload/data/`.
    pub file: &'static str,
    /// The file's contents (EnergyLLM JSON lines).
    pub contents: &'static str,
    /// Lengths only, or a trace.
    pub kind: BundledKind,
    /// One line on what it is.
    pub description: &'static str,
}

/// Every bundled workload.
pub const BUNDLED: &[Bundled] = &[
    Bundled {
        name: "sharegpt-like",
        file: "sharegpt_like_sample.jsonl",
        contents: include_str!("../data/sharegpt_like_sample.jsonl"),
        kind: BundledKind::Lengths,
        description: "1000 synthetic chat requests fitted to published ShareGPT statistics",
    },
    Bundled {
        name: "wildchat-like",
        file: "wildchat_like_sample.jsonl",
        contents: include_str!("../data/wildchat_like_sample.jsonl"),
        kind: BundledKind::Lengths,
        description: "1000 synthetic chat requests fitted to published WildChat statistics",
    },
    Bundled {
        name: "mooncake-conversation",
        file: "mooncake_conversation_trace.jsonl",
        contents: include_str!("../data/mooncake_conversation_trace.jsonl"),
        kind: BundledKind::Trace,
        description: "Mooncake (Kimi) conversation trace, first 20 minutes (Apache-2.0)",
    },
    Bundled {
        name: "mooncake-synthetic",
        file: "mooncake_synthetic_trace.jsonl",
        contents: include_str!("../data/mooncake_synthetic_trace.jsonl"),
        kind: BundledKind::Trace,
        description: "Mooncake synthetic trace, Poisson arrivals, public-dataset lengths (Apache-2.0)",
    },
    Bundled {
        name: "arxiv-summarization",
        file: "arxiv_summarization_lengths.jsonl",
        contents: include_str!("../data/arxiv_summarization_lengths.jsonl"),
        kind: BundledKind::Lengths,
        description: "arXiv summarisation lengths (Llama-2 tokenizer) from Vidur, every 7th row (MIT)",
    },
];

/// The bundled workload called `name`.
pub fn find(name: &str) -> Option<&'static Bundled> {
    BUNDLED.iter().find(|b| b.name == name)
}

/// The bundled names, comma-separated, for error messages.
pub fn names() -> String {
    BUNDLED.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

/// Only the first 20 minutes of the Mooncake conversation trace are shipped (3 658 of 12 031
/// requests), to keep the file small; a contiguous window keeps its burstiness.
pub const MOONCAKE_CONVERSATION_WINDOW_S: f64 = 1200.0;

/// Every 7th row of the Vidur arXiv summarisation lengths is shipped (4 037 of 28 257).
pub const ARXIV_EVERY: usize = 7;

/// Converts a Mooncake JSON-lines trace to EnergyLLM JSON lines with `arrival_s`, keeping
/// arrivals before `window_s` seconds (all if `None`). The `hash_ids` are dropped.
pub fn convert_mooncake(reader: impl BufRead, path: &Path, window_s: Option<f64>) -> Result<String, Error> {
    let mut out = String::new();
    let opts = ReadOptions { format: Some(TraceFormat::Mooncake), skip_invalid: false };
    read_records(reader, path, &opts, |r, _| {
        let t = r.arrival_s.unwrap_or(0.0);
        if window_s.is_none_or(|w| t < w) {
            out.push_str(&format!(
                "{{\"input_len\":{},\"output_len\":{},\"arrival_s\":{t}}}\n",
                r.input_len, r.output_len
            ));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Converts Vidur's length CSV (`num_prefill_tokens,num_decode_tokens,…`) to EnergyLLM JSON
/// lines, keeping every `every`-th data row starting with the first.
pub fn convert_vidur_lengths(reader: impl BufRead, path: &Path, every: usize) -> Result<String, Error> {
    let mut out = String::new();
    let mut i = 0usize;
    let opts = ReadOptions { format: Some(TraceFormat::Splitwise), skip_invalid: false };
    read_records(reader, path, &opts, |r, _| {
        if i % every.max(1) == 0 {
            out.push_str(&format!("{{\"input_len\":{},\"output_len\":{}}}\n", r.input_len, r.output_len));
        }
        i += 1;
        Ok(())
    })?;
    Ok(out)
}

/// Source files of the converted samples, relative to the shared data directory.
pub const MOONCAKE_CONVERSATION_SOURCE: &str = "mooncake-traces/conversation_trace.jsonl";
/// See [`MOONCAKE_CONVERSATION_SOURCE`].
pub const MOONCAKE_SYNTHETIC_SOURCE: &str = "mooncake-traces/synthetic_trace.jsonl";
/// See [`MOONCAKE_CONVERSATION_SOURCE`].
pub const ARXIV_SOURCE: &str =
    "vidur/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv";

/// The contents of every bundled file, regenerated: the synthetic ones always, the converted
/// ones only when `shared_data` (the directory holding `mooncake-traces/` and `vidur/`) is given.
/// Returns (file name, contents) pairs.
pub fn regenerate(shared_data: Option<&Path>) -> Result<Vec<(&'static str, String)>, Error> {
    let mut out = vec![
        ("sharegpt_like_sample.jsonl", SHAREGPT_LIKE.to_jsonl()),
        ("wildchat_like_sample.jsonl", WILDCHAT_LIKE.to_jsonl()),
    ];
    if let Some(dir) = shared_data {
        let open = |rel: &str| -> Result<(std::io::BufReader<std::fs::File>, std::path::PathBuf), Error> {
            let p = dir.join(rel);
            let f = std::fs::File::open(&p).map_err(|source| Error::Io { path: p.clone(), source })?;
            Ok((std::io::BufReader::new(f), p))
        };
        let (r, p) = open(MOONCAKE_CONVERSATION_SOURCE)?;
        out.push((
            "mooncake_conversation_trace.jsonl",
            convert_mooncake(r, &p, Some(MOONCAKE_CONVERSATION_WINDOW_S))?,
        ));
        let (r, p) = open(MOONCAKE_SYNTHETIC_SOURCE)?;
        out.push(("mooncake_synthetic_trace.jsonl", convert_mooncake(r, &p, None)?));
        let (r, p) = open(ARXIV_SOURCE)?;
        out.push(("arxiv_summarization_lengths.jsonl", convert_vidur_lengths(r, &p, ARXIV_EVERY)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LengthDataset, Trace};

    #[test]
    fn every_bundled_file_loads() {
        for b in BUNDLED {
            let d = LengthDataset::builtin(b.name).unwrap();
            assert!(!d.samples.is_empty(), "{}", b.name);
            if b.kind == BundledKind::Trace {
                let t = Trace::builtin(b.name).unwrap();
                assert_eq!(t.entries[0].arrival_s, 0.0);
            }
        }
        assert!(find("nope").is_none());
    }

    #[test]
    fn converted_files_have_the_documented_sizes() {
        let count = |n: &str| find(n).unwrap().contents.lines().count();
        assert_eq!(count("mooncake-conversation"), 3658);
        assert_eq!(count("mooncake-synthetic"), 3993);
        assert_eq!(count("arxiv-summarization"), 4037);
        let t = Trace::builtin("mooncake-conversation").unwrap();
        assert!(t.span_s() < MOONCAKE_CONVERSATION_WINDOW_S);
        for b in BUNDLED {
            assert!(b.contents.len() < 300 * 1024, "{} is {} bytes", b.file, b.contents.len());
        }
    }

    #[test]
    fn conversions_on_fixtures() {
        let moon = "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 2, \"hash_ids\": [1]}\n\
                    {\"timestamp\": 2500, \"input_length\": 6, \"output_length\": 3, \"hash_ids\": []}\n";
        assert_eq!(
            convert_mooncake(moon.as_bytes(), Path::new("m"), Some(2.0)).unwrap(),
            "{\"input_len\":5,\"output_len\":2,\"arrival_s\":0}\n"
        );
        assert_eq!(
            convert_mooncake(moon.as_bytes(), Path::new("m"), None).unwrap().lines().nth(1),
            Some("{\"input_len\":6,\"output_len\":3,\"arrival_s\":2.5}")
        );
        let vidur = "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n1,2,3,0.5\n4,5,9,0.8\n6,7,13,0.9\n";
        assert_eq!(
            convert_vidur_lengths(vidur.as_bytes(), Path::new("v"), 2).unwrap(),
            "{\"input_len\":1,\"output_len\":2}\n{\"input_len\":6,\"output_len\":7}\n"
        );
        let broken = "{\"timestamp\": 0, \"input_length\": 5}\n";
        assert!(convert_mooncake(broken.as_bytes(), Path::new("m"), None)
            .unwrap_err()
            .to_string()
            .contains("m:1: missing field `output_length`"));
    }

    /// Needs the shared data directory (not in the repository): run with
    /// `ENERGYLLM_SHARED_DATA=../shared/data cargo test -p energyllm-workload -- --ignored`, or use
    /// `cargo xtask gen-samples --check`.
    #[test]
    #[ignore = "needs the shared data directory; set ENERGYLLM_SHARED_DATA"]
    fn converted_files_are_exactly_what_the_sources_give() {
        let dir = std::env::var_os("ENERGYLLM_SHARED_DATA").expect("set ENERGYLLM_SHARED_DATA");
        for (file, contents) in regenerate(Some(Path::new(&dir))).unwrap() {
            let b = BUNDLED.iter().find(|b| b.file == file).unwrap();
            assert!(b.contents == contents, "data/{file} is stale: run `cargo xtask gen-samples`");
        }
    }
}
