/*!
What users bring to energyllm: request lengths, raw chat datasets, request traces in the formats
people share, and the arrival processes that turn lengths into a stream of requests.

A simulated run needs a list of [`Request`]s: when each arrives and how many tokens it reads and
writes. They come from one of two places:

- **drawn**: lengths sampled uniformly from a [`LengthDataset`] (a processed dataset or a
  bundled sample) at times drawn from an [`ArrivalPattern`] (Poisson, Gamma, on/off, diurnal) at
  a mean rate — [`sample_requests`];
- **replayed**: a [`Trace`] (Azure, Mooncake, Splitwise/Vidur or EnergyLLM files) replayed in
  order with its gaps scaled — [`Replay`].

Modules: [`trace`] reads the trace and length formats, [`arrivals`] draws arrival times,
[`load_profile`] time-warps any arrival stream to a share of capacity that may move over the day,
[`raw_dataset`] turns raw conversation datasets (ShareGPT, LMSYS-Chat-1M, WildChat) into lengths
with a real tokenizer ([`tokenize`]), [`stats`] summarises a file, [`bundled`] lists the files
shipped in `data/` and [`synthetic`] holds the recipes of the two synthetic ones.

Why it is shaped so: this crate depends on energyllm-core alone, so that reading what users
bring never pulls in the simulator, the engines or a GPU library, and a parser can be fuzzed on
its own. Every reader names the file, line and field of a bad record and can skip bad records
instead, counting them; none holds more than a line (or one ShareGPT conversation) of raw input
at a time. Errors are this crate's own [`Error`]. The heavy tokenizer and Parquet readers are
behind the `hf-tokenizer` and `parquet` features.
*/
#![deny(missing_docs)]

pub mod arrivals;
pub mod bundled;
mod error;
pub mod load_profile;
pub mod raw_dataset;
mod spec;
pub mod stats;
pub mod synthetic;
pub mod tokenize;
pub mod trace;

use std::io::BufRead;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use energyllm_core::{Request, RequestId, Timestamp};

pub use arrivals::ArrivalPattern;
pub use load_profile::LoadProfile;
pub use trace::{ReadOptions, ReadReport, Replay, Trace, TraceEntry, TraceFormat, TraceRecord};

pub use error::Error;

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

impl LengthDataset {
    /// The bundled ShareGPT-like sample.
    pub fn sharegpt_like() -> Self {
        // The bundled files are checked by tests, so parsing cannot fail at run time.
        Self::builtin("sharegpt-like")
            .unwrap_or_else(|_| LengthDataset { name: "sharegpt-like (bundled)".into(), samples: Vec::new() })
    }

    /// A bundled workload by name (see [`bundled::BUNDLED`]); a trace gives its lengths.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let b = bundled::find(name).ok_or_else(|| Error::Workload {
            name: name.into(),
            reason: format!("no bundled workload of that name; bundled: {}", bundled::names()),
        })?;
        let label = format!("{name} (bundled)");
        let (mut d, _) = Self::parse(b.contents.as_bytes(), Path::new(&label), &ReadOptions::default())?;
        d.name = label;
        Ok(d)
    }

    /// A file in any trace or length format (see [`trace`]), or a bundled name if no such file
    /// exists. Returns the report of skipped lines too.
    pub fn open(spec: &str, opts: &ReadOptions) -> Result<(Self, ReadReport), Error> {
        let path = Path::new(spec);
        if !path.exists() && bundled::find(spec).is_some() {
            return Ok((Self::builtin(spec)?, ReadReport::default()));
        }
        let file = std::fs::File::open(path).map_err(|source| not_found_hint(path, source))?;
        Self::parse(std::io::BufReader::new(file), path, opts)
    }

    /// Reads a JSON-lines file of `{"input_len": N, "output_len": M}` objects (other fields are
    /// ignored, blank lines skipped).
    pub fn load_jsonl(path: &Path) -> Result<Self, Error> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::parse_jsonl(std::io::BufReader::new(file), path)
    }

    /// Parses EnergyLLM JSON lines from `reader`; `path` names the source in errors.
    pub fn parse_jsonl(reader: impl BufRead, path: &Path) -> Result<Self, Error> {
        let opts = ReadOptions { format: Some(TraceFormat::Energyllm), skip_invalid: false };
        Ok(Self::parse(reader, path, &opts)?.0)
    }

    /// Parses any trace or length format from `reader`; `path` names the source in errors.
    pub fn parse(reader: impl BufRead, path: &Path, opts: &ReadOptions) -> Result<(Self, ReadReport), Error> {
        let mut samples = Vec::new();
        let report = trace::read_records(reader, path, opts, |r, _| {
            samples.push(LengthSample { input_len: r.input_len, output_len: r.output_len });
            Ok(())
        })?;
        Ok((LengthDataset { name: path.display().to_string(), samples }, report))
    }
}

impl Trace {
    /// A bundled trace by name.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let b = bundled::find(name).filter(|b| b.kind == bundled::BundledKind::Trace).ok_or_else(|| {
            let traces: Vec<&str> = bundled::BUNDLED
                .iter()
                .filter(|b| b.kind == bundled::BundledKind::Trace)
                .map(|b| b.name)
                .collect();
            Error::Workload {
                name: name.into(),
                reason: format!("no bundled trace of that name; bundled traces: {}", traces.join(", ")),
            }
        })?;
        let label = format!("{name} (bundled)");
        let (mut t, _) = Trace::parse(b.contents.as_bytes(), Path::new(&label), &ReadOptions::default())?;
        t.name = label;
        Ok(t)
    }

    /// A trace file in any trace format, or a bundled trace name if no such file exists.
    pub fn open(spec: &str, opts: &ReadOptions) -> Result<(Self, ReadReport), Error> {
        let path = Path::new(spec);
        if !path.exists() && bundled::find(spec).is_some() {
            return Ok((Self::builtin(spec)?, ReadReport::default()));
        }
        let file = std::fs::File::open(path).map_err(|source| not_found_hint(path, source))?;
        Trace::parse(std::io::BufReader::new(file), path, opts)
    }
}

fn not_found_hint(path: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::Workload {
            name: path.display().to_string(),
            reason: format!("no such file, and not a bundled name ({})", bundled::names()),
        }
    } else {
        Error::Io { path: path.to_owned(), source }
    }
}

/// Draws lengths uniformly, with replacement, from a dataset.
pub struct LengthSampler<'a> {
    dataset: &'a LengthDataset,
    rng: ChaCha8Rng,
}

impl<'a> LengthSampler<'a> {
    /// A sampler over `dataset`; the same seed gives the same draws. Its random stream is separate
    /// from the arrival process's, so changing one does not change the other.
    pub fn new(dataset: &'a LengthDataset, seed: u64) -> Result<Self, Error> {
        if dataset.samples.is_empty() {
            return Err(Error::Workload {
                name: dataset.name.clone(),
                reason: "no requests to draw lengths from".into(),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        Ok(LengthSampler { dataset, rng })
    }

    /// The next draw.
    pub fn draw(&mut self) -> LengthSample {
        self.dataset.samples[self.rng.gen_range(0..self.dataset.samples.len())]
    }
}

/// Requests over `[0, duration_s)` with arrival times from `pattern` at mean rate `rate_rps` and
/// lengths drawn from `dataset`. The same seed gives the same requests.
pub fn sample_requests(
    dataset: &LengthDataset,
    pattern: &ArrivalPattern,
    rate_rps: f64,
    duration_s: f64,
    seed: u64,
) -> Result<Vec<Request>, Error> {
    let mut lengths = LengthSampler::new(dataset, seed)?;
    let times = pattern.arrival_times(rate_rps, duration_s, seed)?;
    Ok(times
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let s = lengths.draw();
            Request {
                id: RequestId(i as u64),
                arrival: Timestamp::from_secs_f64(t),
                input_tokens: s.input_len,
                output_tokens: s.output_len,
            }
        })
        .collect())
}

/// Poisson arrivals at `rate_rps` over `[0, duration_s)`, each request's lengths drawn
/// uniformly (with replacement) from `dataset`. The same seed gives the same requests.
pub fn poisson_requests(
    dataset: &LengthDataset,
    rate_rps: f64,
    duration_s: f64,
    seed: u64,
) -> Result<Vec<Request>, Error> {
    sample_requests(dataset, &ArrivalPattern::Poisson, rate_rps, duration_s, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sample_parses() {
        let d = LengthDataset::parse_jsonl(SHAREGPT_LIKE_SAMPLE.as_bytes(), Path::new("x")).unwrap();
        assert_eq!(d.samples.len(), 1000);
        assert_eq!(LengthDataset::sharegpt_like().samples, d.samples);
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

    #[test]
    fn lengths_and_arrivals_use_separate_streams() {
        let a = LengthDataset::builtin("sharegpt-like").unwrap();
        let b = LengthDataset::builtin("wildchat-like").unwrap();
        let ra = poisson_requests(&a, 1.0, 200.0, 3).unwrap();
        let rb = poisson_requests(&b, 1.0, 200.0, 3).unwrap();
        assert_eq!(
            ra.iter().map(|r| r.arrival).collect::<Vec<_>>(),
            rb.iter().map(|r| r.arrival).collect::<Vec<_>>()
        );
    }

    #[test]
    fn open_accepts_files_and_bundled_names() {
        let (d, _) = LengthDataset::open("arxiv-summarization", &ReadOptions::default()).unwrap();
        assert_eq!(d.name, "arxiv-summarization (bundled)");
        let e = LengthDataset::open("/no/such/file.jsonl", &ReadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no such file, and not a bundled name (sharegpt-like"), "{e}");
        let e = Trace::open("sharegpt-like", &ReadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no bundled trace of that name; bundled traces: mooncake-conversation"), "{e}");
    }
}
