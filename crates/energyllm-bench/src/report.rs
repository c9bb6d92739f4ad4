//! Reports: the paper's Markdown table, and CSV/JSON files of summaries, runs and requests.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use energyllm_core::RunSummary;

use crate::eval::{EvalSettings, MethodResult};
use crate::Error;

/// The EnergyLLM paper's table, in its column order, plus board energy so idle power is never
/// hidden.
pub fn markdown_table(summaries: &[RunSummary]) -> String {
    let mut s = String::from(
        "| Method | Efficiency↑ | SLO(%)↑ | Energy(J)↓ | Latency(s)↓ | P99(s)↓ | Throughput↑ | Board energy(J) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in summaries {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | {:.3} | {:.1} |",
            m.method,
            m.efficiency,
            m.slo_attainment_pct,
            m.energy_per_request_j,
            m.mean_latency_s,
            m.p99_latency_s,
            m.throughput_rps,
            m.total_energy_per_request_j
        );
    }
    s.push_str(
        "\nEnergy(J): GPU energy while serving (power × busy time) per completed request, the EnergyLLM \
         paper's definition. Board energy(J): all board energy per completed request, idle included. \
         Efficiency = SLO(%) / Energy(J) × 100. Throughput in requests/s.\n",
    );
    s
}

#[derive(Serialize)]
struct RunRow<'a> {
    run: u32,
    seed: u64,
    #[serde(flatten)]
    summary: &'a RunSummary,
}

#[derive(Serialize)]
struct RequestRow<'a> {
    method: &'a str,
    run: u32,
    #[serde(flatten)]
    record: &'a energyllm_core::RequestRecord,
    e2e_latency_s: f64,
    slo_met: bool,
}

/// Writes `table.md`, `summary.{json,csv}`, `runs.{json,csv}` and `requests.{jsonl,csv}` into
/// `dir` (created if missing).
pub fn write_outputs(dir: &Path, settings: &EvalSettings, results: &[MethodResult]) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    let summaries: Vec<&RunSummary> = results.iter().map(|r| &r.summary).collect();
    let owned: Vec<RunSummary> = summaries.iter().map(|s| (*s).clone()).collect();
    write_file(&dir.join("table.md"), markdown_table(&owned).as_bytes())?;
    write_json(&dir.join("summary.json"), &summaries)?;
    write_csv(&dir.join("summary.csv"), &summaries)?;

    let runs: Vec<RunRow> = results
        .iter()
        .flat_map(|m| m.runs.iter().enumerate())
        .map(|(i, summary)| RunRow { run: i as u32, seed: settings.run_seed(i as u32), summary })
        .collect();
    write_json(&dir.join("runs.json"), &runs)?;
    write_csv(&dir.join("runs.csv"), &runs)?;

    let slo = settings.setup.controller.slo;
    let requests: Vec<RequestRow> = results
        .iter()
        .flat_map(|m| {
            m.records.iter().enumerate().flat_map(move |(i, recs)| {
                recs.iter().map(move |record| RequestRow {
                    method: &m.summary.method,
                    run: i as u32,
                    record,
                    e2e_latency_s: record.e2e_latency_s(),
                    slo_met: record.meets(&slo),
                })
            })
        })
        .collect();
    let mut jsonl = Vec::new();
    for row in &requests {
        serde_json::to_writer(&mut jsonl, row).map_err(|e| report_err("requests.jsonl", e))?;
        jsonl.push(b'\n');
    }
    write_file(&dir.join("requests.jsonl"), &jsonl)?;
    write_csv(&dir.join("requests.csv"), &requests)?;
    Ok(())
}

fn report_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Report { what: what.to_owned(), reason: e.to_string() }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let mut f = fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), Error> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| report_err(&path.display().to_string(), e))?;
    bytes.push(b'\n');
    write_file(path, &bytes)
}

/// Writes rows as CSV with one column per field, in field order (flattened structs included,
/// which the csv crate cannot do itself).
fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), Error> {
    let what = path.display().to_string();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Option<Vec<String>> = None;
    for row in rows {
        let value = serde_json::to_value(row).map_err(|e| report_err(&what, e))?;
        let serde_json::Value::Object(map) = value else {
            return Err(report_err(&what, "a row is not a struct"));
        };
        if header.is_none() {
            let h: Vec<String> = map.keys().cloned().collect();
            w.write_record(&h).map_err(|e| report_err(&what, e))?;
            header = Some(h);
        }
        let cells = map.values().map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        });
        w.write_record(cells).map_err(|e| report_err(&what, e))?;
    }
    let bytes = w.into_inner().map_err(|e| report_err(&what, e))?;
    write_file(path, &bytes)
}
