//! Request lengths and arrival times.

use std::io::{BufRead, BufReader};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

use energyllm_core::{Request, RequestId, Timestamp};

use crate::Error;

/// One request's lengths, the schema of the EnergyLLM datasets (`{"input_len": …, "output_len": …}`
/// per JSON line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthSample {
    /// Prompt tokens.
    pub input_len: u32,
    /// Output tokens.
    pub output_len: u32,
}

/// Longest prompt or output a dataset line may give; longer is almost surely a unit mistake.
pub const MAX_TOKENS_PER_FIELD: u64 = 1 << 20;

/// The bundled ShareGPT-like sample (synthetic; see `data/README.md`).
pub const SHAREGPT_LIKE_SAMPLE: &str = include_str!("../data/sharegpt_like_sample.jsonl");

/// A named set of request lengths.
#[derive(Clone, Debug, PartialEq)]
pub struct LengthDataset {
    /// File path or built-in name, for reports.
    pub name: String,
    /// The lengths, in file order.
    pub samples: Vec<LengthSample>,
}

#[derive(Deserialize)]
struct Line {
    input_len: Option<serde_json::Value>,
    output_len: Option<serde_json::Value>,
}

impl LengthDataset {
    /// The bundled ShareGPT-like sample.
    pub fn sharegpt_like() -> Self {
        // The bundled file is checked by a test, so parsing cannot fail at run time.
        Self::parse_jsonl(SHAREGPT_LIKE_SAMPLE.as_bytes(), Path::new("sharegpt-like (bundled)"))
            .unwrap_or_else(|_| LengthDataset { name: "sharegpt-like (bundled)".into(), samples: Vec::new() })
    }

    /// Reads a JSON-lines file of `{"input_len": N, "output_len": M}` objects (other fields are
    /// ignored, blank lines skipped).
    pub fn load_jsonl(path: &Path) -> Result<Self, Error> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::parse_jsonl(BufReader::new(file), path)
    }

    /// Parses JSON lines from `reader`; `path` names the source in errors.
    pub fn parse_jsonl(reader: impl BufRead, path: &Path) -> Result<Self, Error> {
        let mut samples = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line_no = i + 1;
            let bad = |reason: String| Error::WorkloadLine { path: path.to_owned(), line: line_no, reason };
            let line = line.map_err(|e| bad(format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line =
                serde_json::from_str(&line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
            let field = |name: &str, v: Option<serde_json::Value>| -> Result<u32, Error> {
                let v = v.ok_or_else(|| bad(format!("missing field `{name}`")))?;
                let n = v
                    .as_u64()
                    .ok_or_else(|| bad(format!("`{name}` must be a non-negative integer, got {v}")))?;
                if n > MAX_TOKENS_PER_FIELD {
                    return Err(bad(format!(
                        "`{name}` = {n} tokens is implausibly large (limit {MAX_TOKENS_PER_FIELD})"
                    )));
                }
                Ok(n as u32)
            };
            let input_len = field("input_len", parsed.input_len)?;
            let output_len = field("output_len", parsed.output_len)?;
            samples.push(LengthSample { input_len, output_len });
        }
        if samples.is_empty() {
            return Err(Error::Workload {
                name: path.display().to_string(),
                reason: "no requests in the file".into(),
            });
        }
        Ok(LengthDataset { name: path.display().to_string(), samples })
    }
}

/// Poisson arrivals at `rate_rps` over `[0, duration_s)`, each request's lengths drawn
/// uniformly (with replacement) from `dataset`. The same seed gives the same requests.
pub fn poisson_requests(
    dataset: &LengthDataset,
    rate_rps: f64,
    duration_s: f64,
    seed: u64,
) -> Result<Vec<Request>, Error> {
    if !(rate_rps.is_finite() && rate_rps > 0.0) {
        return Err(Error::Setting(format!(
            "arrival rate must be a positive number of requests/s, got {rate_rps}"
        )));
    }
    if !(duration_s.is_finite() && duration_s > 0.0) {
        return Err(Error::Setting(format!(
            "duration must be a positive number of seconds, got {duration_s}"
        )));
    }
    if dataset.samples.is_empty() {
        return Err(Error::Workload {
            name: dataset.name.clone(),
            reason: "no requests to draw lengths from".into(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let gaps = Exp::new(rate_rps).map_err(|e| Error::Setting(format!("arrival rate {rate_rps}: {e}")))?;
    let mut out = Vec::with_capacity((rate_rps * duration_s * 1.1) as usize + 8);
    let mut t = 0.0;
    loop {
        t += gaps.sample(&mut rng);
        if t >= duration_s {
            break;
        }
        let s = dataset.samples[rng.gen_range(0..dataset.samples.len())];
        out.push(Request {
            id: RequestId(out.len() as u64),
            arrival: Timestamp::from_secs_f64(t),
            input_tokens: s.input_len,
            output_tokens: s.output_len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sample_parses() {
        let d = LengthDataset::parse_jsonl(SHAREGPT_LIKE_SAMPLE.as_bytes(), Path::new("x")).unwrap();
        assert_eq!(d.samples.len(), 1000);
    }

    #[test]
    fn bad_lines_are_named_with_file_line_and_field() {
        let cases = [
            (
                "{\"input_len\": 3, \"output_len\": 4}\n{\"input_len\": 3}\n",
                "f.jsonl:2: missing field `output_len`",
            ),
            (
                "{\"input_len\": -3, \"output_len\": 4}\n",
                "f.jsonl:1: `input_len` must be a non-negative integer",
            ),
            ("\n\nnot json\n", "f.jsonl:3: not a JSON object"),
            ("{\"input_len\": 99999999999, \"output_len\": 4}\n", "implausibly large"),
            ("\n", "no requests"),
        ];
        for (text, want) in cases {
            let e =
                LengthDataset::parse_jsonl(text.as_bytes(), Path::new("f.jsonl")).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn poisson_arrivals_are_seeded_and_at_the_asked_rate() {
        let d = LengthDataset::sharegpt_like();
        let a = poisson_requests(&d, 2.0, 5000.0, 7).unwrap();
        assert_eq!(a, poisson_requests(&d, 2.0, 5000.0, 7).unwrap());
        assert_ne!(a, poisson_requests(&d, 2.0, 5000.0, 8).unwrap());
        // 10 000 expected arrivals: the count is within 4 standard deviations (±400).
        assert!((a.len() as f64 - 10_000.0).abs() < 400.0, "{}", a.len());
        assert!(a.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        assert!(poisson_requests(&d, 0.0, 10.0, 0).is_err());
    }
}
