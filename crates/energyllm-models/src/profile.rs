//! Profile CSV schemas: what the profiler writes and the fitters read.
//!
//! Two levels, two files:
//!
//! - [`BatchProfileRow`]: one batch run to completion at one clock. Its first seven columns are
//!   EnergyLLM's `performance_profile.csv` (`freq_mhz, batch_size, avg_input_len,
//!   avg_output_len, total_latency_sec, avg_gpu_power_watts, energy_j`), so a file EnergyLLM
//!   wrote reads as it is (the other columns default) and a file we write feeds EnergyLLM's
//!   scripts. The rest are ours, including the per-iteration columns derived from the request
//!   timestamps every engine reports (time to first token, time per output token, iterations).
//! - [`IterationProfileRow`]: one engine iteration, with the features the gradient-boosted
//!   trees and the iteration-rate predictor read (clock, batch, prefill, decode and KV tokens)
//!   and its latency and power.
//!
//! Readers report a bad row by file, line and column; values are checked (finite, in range)
//! as they are read, so a model is never fitted on a NaN.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dataset::{perf_feature_quantities, Dataset, Quantity};
use crate::Error;

/// One batch profiled at one clock: EnergyLLM's columns, then ours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchProfileRow {
    /// SM clock the batch ran at, in MHz.
    pub freq_mhz: u32,
    /// Requests in the batch.
    pub batch_size: u32,
    /// Mean prompt length, in tokens.
    pub avg_input_len: f64,
    /// Mean generated length, in tokens.
    pub avg_output_len: f64,
    /// Submission of the batch to its last token, in seconds.
    pub total_latency_sec: f64,
    /// Mean board power over the batch, in watts (`energy_j / total_latency_sec`).
    pub avg_gpu_power_watts: f64,
    /// Board energy over the batch, in joules.
    pub energy_j: f64,
    /// Repeat index of this (clock, batch, token config) point. Default 0.
    #[serde(default)]
    pub repeat: u32,
    /// Requests that completed. Default: `batch_size`.
    #[serde(default)]
    pub completed: Option<u32>,
    /// Requests the engine refused. Default 0.
    #[serde(default)]
    pub rejected: u32,
    /// Mean time to first token, in seconds (the prefill iterations).
    #[serde(default)]
    pub mean_ttft_s: Option<f64>,
    /// Mean time per output token after the first, in seconds: one decode iteration of the
    /// batch when every request decodes together.
    #[serde(default)]
    pub mean_tpot_s: Option<f64>,
    /// Iterations the batch took, estimated from the timestamps: the longest request's output
    /// length (one token per iteration once decoding; the prefill yields the first).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// `total_latency_sec / iterations`, in seconds.
    #[serde(default)]
    pub mean_iteration_s: Option<f64>,
    /// Generated tokens per second over the batch.
    #[serde(default)]
    pub output_tokens_per_s: Option<f64>,
    /// Energy per generated token, in joules.
    #[serde(default)]
    pub energy_per_output_token_j: Option<f64>,
    /// Engine backend that served the batch.
    #[serde(default)]
    pub engine: String,
    /// Actuator backend that set the clock and read the energy.
    #[serde(default)]
    pub actuator: String,
    /// How energy was measured: `counter` (the device's energy counter) or `power-samples`.
    #[serde(default)]
    pub energy_source: String,
}

impl BatchProfileRow {
    fn check(&self) -> Result<(), String> {
        positive("total_latency_sec", self.total_latency_sec)?;
        non_negative("avg_gpu_power_watts", self.avg_gpu_power_watts)?;
        non_negative("energy_j", self.energy_j)?;
        non_negative("avg_input_len", self.avg_input_len)?;
        non_negative("avg_output_len", self.avg_output_len)?;
        if self.batch_size == 0 {
            return Err("`batch_size` must be ≥ 1".into());
        }
        Ok(())
    }
}

/// One engine iteration: the performance-model features and what the iteration cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IterationProfileRow {
    /// SM clock, in MHz.
    pub freq_mhz: u32,
    /// Requests in the iteration (decoding plus prefilling).
    pub batch_size: u32,
    /// Prompt tokens processed.
    pub prefill_tokens: u32,
    /// Decode tokens processed (one per decoding request).
    pub decode_tokens: u32,
    /// Tokens in the KV cache that the iteration's attention reads.
    pub kv_tokens: u64,
    /// Iteration time, in seconds.
    pub latency_s: f64,
    /// Mean board power over the iteration, in watts.
    pub power_w: f64,
    /// Board energy of the iteration, in joules.
    pub energy_j: f64,
}

impl IterationProfileRow {
    fn check(&self) -> Result<(), String> {
        positive("latency_s", self.latency_s)?;
        non_negative("power_w", self.power_w)?;
        non_negative("energy_j", self.energy_j)?;
        if self.prefill_tokens == 0 && self.decode_tokens == 0 {
            return Err("`prefill_tokens` and `decode_tokens` are both 0: an iteration does some work".into());
        }
        Ok(())
    }

    /// Features in the order of [`PERF_FEATURES`](crate::PERF_FEATURES).
    pub fn features(&self) -> [f64; 5] {
        [
            f64::from(self.freq_mhz),
            f64::from(self.batch_size),
            f64::from(self.prefill_tokens),
            f64::from(self.decode_tokens),
            self.kv_tokens as f64,
        ]
    }
}

/// Which iteration-level quantity a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IterationTarget {
    /// `latency_s`.
    Latency,
    /// `power_w`.
    Power,
}

impl IterationTarget {
    /// Column name and unit.
    pub fn quantity(self) -> Quantity {
        match self {
            IterationTarget::Latency => Quantity::new("latency_s", "s"),
            IterationTarget::Power => Quantity::new("power_w", "W"),
        }
    }

    fn value(self, row: &IterationProfileRow) -> f64 {
        match self {
            IterationTarget::Latency => row.latency_s,
            IterationTarget::Power => row.power_w,
        }
    }
}

/// The iteration rows as a dataset over the five performance features.
pub fn iteration_dataset(rows: &[IterationProfileRow], target: IterationTarget) -> Result<Dataset, Error> {
    let records = rows.iter().flat_map(|r| r.features()).collect();
    let targets = rows.iter().map(|r| target.value(r)).collect();
    Dataset::new(perf_feature_quantities(), target.quantity(), records, targets)
}

fn positive(field: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("`{field}` must be a positive number, got {v}"))
    }
}

fn non_negative(field: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("`{field}` must be a finite number ≥ 0, got {v}"))
    }
}

/// Reads a batch-level profile (ours or EnergyLLM's `performance_profile.csv`).
pub fn read_batch_profile(path: &Path) -> Result<Vec<BatchProfileRow>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parse_batch_profile(file, path)
}

/// Reads an iteration-level profile.
pub fn read_iteration_profile(path: &Path) -> Result<Vec<IterationProfileRow>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    parse_iteration_profile(file, path)
}

/// Parses a batch-level profile from `reader`; `path` names it in errors.
pub fn parse_batch_profile(reader: impl std::io::Read, path: &Path) -> Result<Vec<BatchProfileRow>, Error> {
    read_rows(reader, path, BatchProfileRow::check)
}

/// Parses an iteration-level profile from `reader`; `path` names it in errors.
pub fn parse_iteration_profile(
    reader: impl std::io::Read,
    path: &Path,
) -> Result<Vec<IterationProfileRow>, Error> {
    read_rows(reader, path, IterationProfileRow::check)
}

fn read_rows<T: DeserializeOwned>(
    input: impl std::io::Read,
    path: &Path,
    check: fn(&T) -> Result<(), String>,
) -> Result<Vec<T>, Error> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| Error::Data {
            name: path.display().to_string(),
            reason: format!("cannot read the header: {e}"),
        })?
        .clone();
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).map_err(|e| line_error(path, &e, &headers))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let row: T = record.deserialize(Some(&headers)).map_err(|e| line_error(path, &e, &headers))?;
        check(&row).map_err(|reason| Error::DataLine { path: path.to_owned(), line, reason })?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::Data { name: path.display().to_string(), reason: "no data rows".into() });
    }
    Ok(rows)
}

fn line_error(path: &Path, e: &csv::Error, headers: &csv::StringRecord) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    let reason = match e.kind() {
        csv::ErrorKind::Deserialize { pos, err } => {
            let line = pos.as_ref().map_or(line, |p| p.line());
            let column = err.field().and_then(|i| headers.get(i as usize)).map(|c| format!("column `{c}`: "));
            return Error::DataLine {
                path: path.to_owned(),
                line,
                reason: format!("{}{}", column.unwrap_or_default(), err.kind()),
            };
        }
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        other => format!("{other:?}"),
    };
    Error::DataLine { path: path.to_owned(), line, reason }
}

/// Writes rows as CSV with a header.
pub fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), Error> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    for r in rows {
        w.serialize(r)
            .map_err(|e| Error::Data { name: path.display().to_string(), reason: e.to_string() })?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_energyllm_profile_reads_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("performance_profile.csv");
        std::fs::write(
            &p,
            "freq_mhz,batch_size,avg_input_len,avg_output_len,total_latency_sec,avg_gpu_power_watts,energy_j\n\
             1410,8,250,150,4.5,300,1350\n",
        )
        .unwrap();
        let rows = read_batch_profile(&p).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].freq_mhz, rows[0].batch_size, rows[0].energy_j), (1410, 8, 1350.0));
        assert_eq!(rows[0].mean_tpot_s, None);
    }

    #[test]
    fn bad_rows_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("it.csv");
        let header =
            "freq_mhz,batch_size,prefill_tokens,decode_tokens,kv_tokens,latency_s,power_w,energy_j\n";
        std::fs::write(&p, format!("{header}1410,1,0,1,10,0.01,200,2\n1410,1,0,1,10,abc,200,2\n")).unwrap();
        let e = read_iteration_profile(&p).unwrap_err().to_string();
        assert!(e.contains("it.csv:3") && e.contains("latency_s"), "{e}");
        std::fs::write(&p, format!("{header}1410,1,0,1,10,-0.01,200,2\n")).unwrap();
        let e = read_iteration_profile(&p).unwrap_err().to_string();
        assert!(e.contains("it.csv:2") && e.contains("`latency_s` must be a positive"), "{e}");
        std::fs::write(&p, format!("{header}1410,1,0,1\n")).unwrap();
        let e = read_iteration_profile(&p).unwrap_err().to_string();
        assert!(e.contains("it.csv:2") && e.contains("4 fields"), "{e}");
        std::fs::write(&p, header).unwrap();
        let e = read_iteration_profile(&p).unwrap_err().to_string();
        assert!(e.contains("no data rows"), "{e}");
    }

    #[test]
    fn rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("it.csv");
        let row = IterationProfileRow {
            freq_mhz: 1200,
            batch_size: 4,
            prefill_tokens: 100,
            decode_tokens: 3,
            kv_tokens: 900,
            latency_s: 0.02,
            power_w: 250.0,
            energy_j: 5.0,
        };
        write_rows(&p, std::slice::from_ref(&row)).unwrap();
        assert_eq!(read_iteration_profile(&p).unwrap(), vec![row]);
    }
}
