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
    s.push('\n');
    s.push_str(TABLE_NOTE);
    s
}

/// What the table's columns mean, printed under every table.
pub const TABLE_NOTE: &str = "Energy(J): GPU energy while serving (power × busy time) per completed request, the \
EnergyLLM paper's definition. Board energy(J): all board energy per completed request, idle included. \
Efficiency = SLO(%) / Energy(J) × 100. Throughput in requests/s. With several runs, each figure is the mean over \
runs ± the 95% confidence half-width; the best deployable method per column is in bold.\n";

/// Student-t quantile t(0.975, df) for a two-sided 95% confidence interval of a mean.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => T[d - 1],
        _ => 1.96,
    }
}

/// Mean and 95% confidence half-width of `values` (half-width NaN for a single value).
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t975(n - 1) * (var / n as f64).sqrt())
}

struct Column {
    header: &'static str,
    higher_is_better: bool,
    decimals: usize,
    get: fn(&RunSummary) -> f64,
}

const COLUMNS: [Column; 7] = [
    Column { header: "Efficiency↑", higher_is_better: true, decimals: 2, get: |s| s.efficiency },
    Column { header: "SLO(%)↑", higher_is_better: true, decimals: 1, get: |s| s.slo_attainment_pct },
    Column { header: "Energy(J)↓", higher_is_better: false, decimals: 1, get: |s| s.energy_per_request_j },
    Column { header: "Latency(s)↓", higher_is_better: false, decimals: 2, get: |s| s.mean_latency_s },
    Column { header: "P99(s)↓", higher_is_better: false, decimals: 2, get: |s| s.p99_latency_s },
    Column { header: "Throughput↑", higher_is_better: true, decimals: 3, get: |s| s.throughput_rps },
    Column {
        header: "Board energy(J)",
        higher_is_better: false,
        decimals: 1,
        get: |s| s.total_energy_per_request_j,
    },
];

/// The savings an operator asks about, against the two bars: `vllm-default` (what runs today)
/// and `best-static` (the best fixed setting in hindsight), at the SLO target. For each
/// deployable method that reaches the target: its energy and its saving against each bar. Says
/// plainly when a bar or a method misses the target.
pub fn savings_note(results: &[MethodResult], target_pct: f64) -> String {
    let energy = |m: &MethodResult| m.summary.energy_per_request_j;
    let slo = |m: &MethodResult| m.summary.slo_attainment_pct;
    let find = |name: &str| results.iter().find(|m| m.summary.method.starts_with(name));
    let mut s = String::new();
    let vllm = find("vllm-default");
    let best = find(crate::best_static::BEST_STATIC);
    match vllm {
        Some(v) => {
            let _ = writeln!(
                s,
                "vllm-default (top clock, the engine's default cap): {:.1} J/request at {:.1}% SLO{}.",
                energy(v),
                slo(v),
                if slo(v) >= target_pct {
                    String::new()
                } else {
                    format!(" — below the {target_pct}% target")
                }
            );
        }
        None => s.push_str("vllm-default was not run, so no saving against it is stated.\n"),
    }
    match best {
        Some(b) if !b.details.is_empty() => {
            let _ = writeln!(s, "{}: {:.1} J/request at {:.2}% SLO.", b.summary.method, energy(b), slo(b));
        }
        Some(b) => {
            let _ = writeln!(s, "{}.", b.summary.method);
        }
        None => {}
    }
    let change = |e: f64, base: f64| 100.0 * (e / base - 1.0);
    let mut meeting = deployable_meeting(results, target_pct);
    meeting.sort_by(|a, b| energy(a).total_cmp(&energy(b)));
    if meeting.is_empty() {
        let _ = writeln!(s, "No deployable method reaches the {target_pct}% target here.");
    }
    for m in meeting {
        let _ = write!(s, "{}: {:.1} J/request at {:.2}% SLO", m.summary.method, energy(m), slo(m));
        if let Some(v) = vllm.filter(|v| slo(v) >= target_pct) {
            let _ = write!(s, "; energy {:+.1}% against vllm-default", change(energy(m), energy(v)));
        }
        if let Some(b) = best.filter(|b| !b.details.is_empty()) {
            let _ = write!(s, ", {:+.1}% against best-static", change(energy(m), energy(b)));
        }
        s.push_str(".\n");
    }
    let missing: Vec<String> = results
        .iter()
        .filter(|m| !is_reference(&m.summary.method) && slo(m) < target_pct)
        .map(|m| format!("{} ({:.2}%)", m.summary.method, slo(m)))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(s, "Below the {target_pct}% target: {}.", missing.join(", "));
    }
    s
}

/// The deployable methods other than `vllm-default` whose pooled attainment reaches
/// `target_pct`, in table order.
pub fn deployable_meeting(results: &[MethodResult], target_pct: f64) -> Vec<&MethodResult> {
    results
        .iter()
        .filter(|m| !is_reference(&m.summary.method) && !m.summary.method.starts_with("vllm-default"))
        .filter(|m| m.summary.slo_attainment_pct >= target_pct && m.summary.energy_per_request_j.is_finite())
        .collect()
}

/// The cheapest of [`deployable_meeting`].
pub fn best_deployable(results: &[MethodResult], target_pct: f64) -> Option<&MethodResult> {
    deployable_meeting(results, target_pct)
        .into_iter()
        .min_by(|a, b| a.summary.energy_per_request_j.total_cmp(&b.summary.energy_per_request_j))
}

/// Whether a method is a reference row (not deployable): shown in italics, never marked best.
pub fn is_reference(method: &str) -> bool {
    method.starts_with(crate::eval::CLAIRVOYANT) || method.starts_with(crate::best_static::BEST_STATIC)
}

/// The paper's table with each figure as mean ± 95% CI over runs, the best deployable method of
/// each column in bold (Board energy is shown but not ranked), reference rows in italics.
pub fn markdown_table_ci(results: &[MethodResult]) -> String {
    let stats: Vec<Vec<(f64, f64)>> = results
        .iter()
        .map(|m| COLUMNS.iter().map(|c| mean_ci95(&m.runs.iter().map(c.get).collect::<Vec<_>>())).collect())
        .collect();
    let best: Vec<Option<f64>> = (0..COLUMNS.len())
        .map(|j| {
            let deployable = results.iter().zip(&stats).filter(|(m, _)| !is_reference(&m.summary.method));
            let means = deployable.map(|(_, st)| st[j].0).filter(|v| v.is_finite());
            if COLUMNS[j].higher_is_better {
                means.max_by(f64::total_cmp)
            } else {
                means.min_by(f64::total_cmp)
            }
        })
        .collect();
    let mut s = String::from("| Method |");
    for c in &COLUMNS {
        let _ = write!(s, " {} |", c.header);
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(COLUMNS.len()));
    s.push('\n');
    for (m, st) in results.iter().zip(&stats) {
        let reference = is_reference(&m.summary.method);
        let name =
            if reference { format!("*{} (reference)*", m.summary.method) } else { m.summary.method.clone() };
        let _ = write!(s, "| {name} |");
        for (j, c) in COLUMNS.iter().enumerate() {
            let (mean, ci) = st[j];
            let cell = if ci.is_finite() {
                format!("{mean:.d$} ± {ci:.d$}", d = c.decimals)
            } else {
                format!("{mean:.d$}", d = c.decimals)
            };
            let ranked = j + 1 < COLUMNS.len() && !reference && best[j] == Some(mean);
            if ranked {
                let _ = write!(s, " **{cell}** |");
            } else {
                let _ = write!(s, " {cell} |");
            }
        }
        s.push('\n');
    }
    s
}

/// One line saying what the table shows (from the same per-run means as the table): the most
/// efficient deployable method against Static-High, the next best method and the clairvoyant
/// reference.
pub fn headline(results: &[MethodResult]) -> String {
    struct Row<'a> {
        method: &'a str,
        efficiency: f64,
        slo_pct: f64,
        energy_j: f64,
    }
    let mean = |m: &MethodResult, get: fn(&RunSummary) -> f64| {
        mean_ci95(&m.runs.iter().map(get).collect::<Vec<_>>()).0
    };
    let rows: Vec<Row> = results
        .iter()
        .map(|m| Row {
            method: &m.summary.method,
            efficiency: mean(m, |s| s.efficiency),
            slo_pct: mean(m, |s| s.slo_attainment_pct),
            energy_j: mean(m, |s| s.energy_per_request_j),
        })
        .collect();
    let deployable: Vec<&Row> = rows.iter().filter(|r| !is_reference(r.method)).collect();
    let Some(best) = deployable.iter().copied().max_by(|a, b| a.efficiency.total_cmp(&b.efficiency)) else {
        return String::new();
    };
    let mut line = format!(
        "Headline: the most efficient method is {} ({:.1} J/request at {:.1}% SLO attainment",
        best.method, best.energy_j, best.slo_pct
    );
    if let Some(high) = rows.iter().find(|r| r.method == "static-high" && r.method != best.method) {
        let _ = write!(
            line,
            "; {:.1}% less energy than Static-High at {:.1}%",
            (1.0 - best.energy_j / high.energy_j) * 100.0,
            high.slo_pct
        );
    }
    line.push(')');
    let next = deployable
        .iter()
        .filter(|r| r.method != best.method)
        .max_by(|a, b| a.efficiency.total_cmp(&b.efficiency));
    if let Some(second) = next {
        let _ = write!(
            line,
            "; its efficiency is {:+.1}% against the next best, {}",
            (best.efficiency / second.efficiency - 1.0) * 100.0,
            second.method
        );
    }
    if let Some(oracle) = rows.iter().find(|r| is_reference(r.method)) {
        let _ = write!(
            line,
            "; the clairvoyant reference spends {:.1} J/request ({:+.1}% against it) at {:.1}%",
            oracle.energy_j,
            (best.energy_j / oracle.energy_j - 1.0) * 100.0,
            oracle.slo_pct
        );
    }
    line.push_str(".\n");
    line
}

/// One line per method whose safety shield overrode decisions (the PPO issue asks that overrides
/// be counted and reported); empty when none did.
pub fn shield_note(results: &[MethodResult]) -> String {
    let mut s = String::new();
    for m in results.iter().filter(|m| m.summary.shield_overrides > 0) {
        let _ = writeln!(
            s,
            "Safety shield: {} raised the policy's clock in {} of {} decisions ({:.2}%).",
            m.summary.method,
            m.summary.shield_overrides,
            m.summary.decisions,
            pct_of(m.summary.shield_overrides, m.summary.decisions)
        );
    }
    s
}

fn pct_of(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
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

/// The file name of `method`'s timeline: `timeline-` and the method's name with every character
/// that is not ASCII alphanumeric, `-`, `_` or `.` replaced by `_` (`fixed:freq=960` →
/// `timeline-fixed_freq_960.svg`).
pub fn timeline_file(method: &str) -> String {
    let slug: String = method
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    format!("timeline-{slug}.svg")
}

/// Writes `table.md`, `meta.json`, `summary.{json,csv}`, `runs.{json,csv}`,
/// `requests.{jsonl,csv}` and the plots `pareto.svg`, `energy.svg` and one
/// [`timeline_file`] per method into `dir` (created if missing).
pub fn write_outputs(
    dir: &Path,
    settings: &EvalSettings,
    results: &[MethodResult],
    table_md: &str,
) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    let summaries: Vec<&RunSummary> = results.iter().map(|r| &r.summary).collect();
    write_file(&dir.join("table.md"), table_md.as_bytes())?;
    write_json(&dir.join("meta.json"), &run_metadata(settings))?;
    write_file(&dir.join("pareto.svg"), crate::plots::pareto_svg(results).as_bytes())?;
    write_file(&dir.join("energy.svg"), crate::plots::energy_bars_svg(results).as_bytes())?;
    // Each method's first run, with its SLO misses marked where they happened.
    let slo = settings.setup.controller.slo;
    for m in results {
        let (Some(run), Some(records)) = (m.details.first(), m.records.first()) else { continue };
        let misses_s: Vec<f64> = records.iter().filter(|r| !r.meets(&slo)).map(|r| r.completion_s).collect();
        write_file(
            &dir.join(timeline_file(&m.summary.method)),
            crate::plots::timeline_svg(&m.summary.method, &run.timeline, &misses_s, records.len()).as_bytes(),
        )?;
    }
    write_json(&dir.join("summary.json"), &summaries)?;
    write_csv(&dir.join("summary.csv"), &summaries)?;

    let runs: Vec<RunRow> = results
        .iter()
        .flat_map(|m| m.runs.iter().enumerate())
        .map(|(i, summary)| RunRow { run: i as u32, seed: settings.run_seed(i as u32), summary })
        .collect();
    write_json(&dir.join("runs.json"), &runs)?;
    write_csv(&dir.join("runs.csv"), &runs)?;

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

/// What a reader needs to reproduce a result: the revision, the seed and every setting.
pub fn run_metadata(settings: &EvalSettings) -> serde_json::Value {
    let git_revision = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .map(|rev| {
            // Uncommitted changes to tracked files mean the revision alone does not reproduce this.
            let dirty = std::process::Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        })
        .unwrap_or_else(|| "unknown (not run from a git checkout)".into());
    serde_json::json!({
        "energyllm_version": env!("CARGO_PKG_VERSION"),
        "git_revision": git_revision,
        "seed": settings.seed,
        "runs": settings.runs,
        "run_seeds": (0..settings.runs).map(|i| settings.run_seed(i)).collect::<Vec<_>>(),
        "methods": settings.policies.iter().map(|p| p.label.clone()).collect::<Vec<_>>(),
        "workload": settings.describe_workload(),
        "arrival_rate_rps": settings.load.is_none().then_some(settings.arrival_rate_rps),
        "duration_s": settings.duration_s,
        "held_out_seeds": settings.seed >= 1000,
        "perf_model": settings.perf_model.as_ref().map(|c| c.spec.label.clone()),
        "seeds_note": "tuning (policy choice, hyper-parameters, rewards) uses seeds 0–99; reported tables use seeds from 1000 on; held_out_seeds says whether this run's do",
        "slo": settings.setup.controller.slo.describe(),
        "load": settings.load.map(|l| serde_json::json!({
            "profile": l.profile,
            "capacity_rps": l.capacity_rps,
        })),
        "controller": settings.setup.controller,
        "engine": settings.setup.engine,
        "gpu": settings.setup.gpu,
        "model": settings.setup.model,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use energyllm_core::{RunTotals, Slo};

    use super::*;

    fn method(name: &str, decisions: u64, shield_overrides: u64) -> MethodResult {
        let totals = RunTotals { decisions, shield_overrides, ..RunTotals::default() };
        let summary = RunSummary::compute(name, &Slo::e2e(11.0), &[], &totals, 1);
        MethodResult { summary: summary.clone(), runs: vec![summary], records: vec![], details: vec![] }
    }

    #[test]
    fn the_shield_note_names_only_methods_it_overrode() {
        assert_eq!(shield_note(&[method("static-high", 100, 0)]), "");
        let note = shield_note(&[method("static-high", 100, 0), method("ppo", 400, 6)]);
        assert_eq!(note, "Safety shield: ppo raised the policy's clock in 6 of 400 decisions (1.50%).\n");
    }
}
