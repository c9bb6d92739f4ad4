//! Summary statistics of a length file or trace (`energyllm dataset stats`) and an SVG histogram.
//!
//! The histogram is written by hand rather than with plotters: it is two panels of rectangles on
//! log-spaced bins, about a hundred lines, and hand-written output is byte-for-byte
//! deterministic and adds no dependency to the command-line program.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::arrivals::gap_stats;
use crate::trace::{read_records, ReadOptions, ReadReport};
use crate::Error;

/// Count, mean and percentiles of one length column.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LengthSummary {
    /// Mean, in tokens.
    pub mean: f64,
    /// Median (linear interpolation between ranks).
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Smallest.
    pub min: u32,
    /// Largest.
    pub max: u32,
}

impl LengthSummary {
    /// The summary of `values` (sorted in place); `None` if empty.
    pub fn of(values: &mut [u32]) -> Option<Self> {
        values.sort_unstable();
        let (&min, &max) = (values.first()?, values.last()?);
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
        Some(LengthSummary {
            mean,
            median: quantile(values, 0.5),
            p90: quantile(values, 0.9),
            p99: quantile(values, 0.99),
            min,
            max,
        })
    }
}

/// The `q`-quantile of sorted `values` with linear interpolation (NumPy's default).
pub fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = pos - lo as f64;
    f64::from(sorted[lo]) * (1.0 - frac) + f64::from(sorted[hi]) * frac
}

/// Arrival statistics of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ArrivalSummary {
    /// First to last arrival, in seconds.
    pub span_s: f64,
    /// Mean arrival rate, (requests − 1) / span, in requests per second.
    pub rate_rps: f64,
    /// Mean gap between arrivals, in seconds.
    pub mean_gap_s: f64,
    /// Burstiness: coefficient of variation of the gaps (1 for Poisson, above 1 is burstier);
    /// `None` with fewer than three arrivals.
    pub gap_cv: Option<f64>,
    /// Whether the file's times were already in order (a trace must be, to replay).
    pub sorted: bool,
}

/// Statistics of a length file or trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetStats {
    /// File path or built-in name.
    pub name: String,
    /// Format read.
    pub format: String,
    /// Requests.
    pub count: u64,
    /// Lines skipped as invalid (with `--skip-invalid`).
    pub skipped: u64,
    /// Prompt lengths.
    pub input: LengthSummary,
    /// Output lengths.
    pub output: LengthSummary,
    /// Arrival statistics, when every record has a time.
    pub arrivals: Option<ArrivalSummary>,
    /// Prompt lengths, sorted (for the histogram).
    #[serde(skip)]
    pub input_lens: Vec<u32>,
    /// Output lengths, sorted (for the histogram).
    #[serde(skip)]
    pub output_lens: Vec<u32>,
}

impl DatasetStats {
    /// Reads `reader` (named `name` in errors and reports). Lengths are kept in memory as two
    /// `u32` per request to compute exact percentiles.
    pub fn read(reader: impl BufRead, name: &Path, opts: &ReadOptions) -> Result<Self, Error> {
        let mut input_lens = Vec::new();
        let mut output_lens = Vec::new();
        let mut times = Vec::new();
        let mut all_timed = true;
        let report: ReadReport = read_records(reader, name, opts, |r, _| {
            input_lens.push(r.input_len);
            output_lens.push(r.output_len);
            match r.arrival_s {
                Some(t) if all_timed => times.push(t),
                _ => all_timed = false,
            }
            Ok(())
        })?;
        let arrivals = if all_timed { arrival_summary(&mut times) } else { None };
        let empty = || Error::Workload { name: name.display().to_string(), reason: "no requests".into() };
        Ok(DatasetStats {
            name: name.display().to_string(),
            format: report.format.map_or_else(|| "?".into(), |f| f.to_string()),
            count: report.records,
            skipped: report.skipped,
            input: LengthSummary::of(&mut input_lens).ok_or_else(empty)?,
            output: LengthSummary::of(&mut output_lens).ok_or_else(empty)?,
            arrivals,
            input_lens,
            output_lens,
        })
    }

    /// The statistics as a short plain-text table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({} format): {} requests", self.name, self.format, self.count);
        if self.skipped > 0 {
            let _ = writeln!(s, "skipped {} invalid lines", self.skipped);
        }
        let _ = writeln!(
            s,
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}",
            "tokens", "mean", "median", "p90", "p99", "min", "max"
        );
        for (label, l) in [("input (prompt)", &self.input), ("output", &self.output)] {
            let _ = writeln!(
                s,
                "{label:<14} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>8}",
                l.mean, l.median, l.p90, l.p99, l.min, l.max
            );
        }
        match &self.arrivals {
            Some(a) => {
                let _ = writeln!(
                    s,
                    "arrivals: span {:.1} s, rate {:.3} req/s, mean gap {:.3} s, burstiness (CV of gaps) {}{}",
                    a.span_s,
                    a.rate_rps,
                    a.mean_gap_s,
                    a.gap_cv.map_or_else(|| "n/a".to_owned(), |cv| format!("{cv:.2}")),
                    if a.sorted { "" } else { " — times are NOT sorted; sort the file before replaying it" }
                );
            }
            None => {
                let _ = writeln!(s, "arrivals: none (lengths only)");
            }
        }
        s
    }
}

fn arrival_summary(times: &mut [f64]) -> Option<ArrivalSummary> {
    let sorted = times.windows(2).all(|w| w[0] <= w[1]);
    if !sorted {
        times.sort_by(f64::total_cmp);
    }
    if times.len() < 2 {
        return None;
    }
    let span_s = times.last()? - times.first()?;
    let mean_gap_s = span_s / (times.len() - 1) as f64;
    let gap_cv = gap_stats(times).map(|(_, cv)| cv);
    let rate_rps = if span_s > 0.0 { (times.len() - 1) as f64 / span_s } else { f64::INFINITY };
    Some(ArrivalSummary { span_s, rate_rps, mean_gap_s, gap_cv, sorted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_arrivals() {
        let text =
            "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,10\n1,2,20\n2,3,30\n3,4,40\n4,100,50\n";
        let s = DatasetStats::read(text.as_bytes(), Path::new("t.csv"), &ReadOptions::default()).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!((s.input.mean, s.input.median, s.input.min, s.input.max), (22.0, 3.0, 1, 100));
        assert!((s.input.p90 - 61.6).abs() < 1e-9, "{}", s.input.p90);
        let a = s.arrivals.unwrap();
        assert_eq!((a.span_s, a.rate_rps, a.gap_cv, a.sorted), (4.0, 1.0, Some(0.0), true));
        let text_out = s.to_text();
        assert!(text_out.contains("t.csv (splitwise format): 5 requests"), "{text_out}");
        assert!(text_out.contains("burstiness (CV of gaps) 0.00"), "{text_out}");

        let lengths_only = "{\"input_len\": 5, \"output_len\": 6}\n";
        let s = DatasetStats::read(lengths_only.as_bytes(), Path::new("l"), &ReadOptions::default()).unwrap();
        assert!(s.arrivals.is_none());
        assert!(s.to_text().contains("arrivals: none"));
    }

    #[test]
    fn unsorted_times_are_flagged() {
        let text = "{\"input_len\": 5, \"output_len\": 6, \"arrival_s\": 3}\n{\"input_len\": 5, \"output_len\": 6, \"arrival_s\": 1}\n\
                    {\"input_len\": 5, \"output_len\": 6, \"arrival_s\": 2}\n";
        let s = DatasetStats::read(text.as_bytes(), Path::new("u"), &ReadOptions::default()).unwrap();
        assert!(!s.arrivals.unwrap().sorted);
        assert!(s.to_text().contains("NOT sorted"));
    }
}
