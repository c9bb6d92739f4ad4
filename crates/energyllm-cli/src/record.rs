//! The evaluation of record (`eval --table record`, the main job of `cargo xtask eval`): every
//! bundled workload on the A100-40GB and the H100, at 0.2, 0.4, 0.6 and 0.8 of capacity and over
//! a daily cycle, each table with both bars; then a load curve per workload × GPU and one summary
//! of the savings an operator asks about.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use energyllm_bench::eval::MethodResult;
use energyllm_bench::plots::{load_curve_svg, LoadCurvePoint};
use energyllm_bench::report::best_deployable;

use crate::eval::{run_table, EvalArgs, Protocol, TableResult};
use crate::output::write_files;

/// One workload of the record: a bundled trace's arrivals replayed (time-warped to the load),
/// or Poisson arrivals, with lengths from a bundled dataset.
///
/// The Mooncake conversation trace's own prompts (13.4k tokens on average, p99 95k) cannot meet
/// a chat SLO on one GPU with an 8B model even at a thirtieth of the trace's rate (on the
/// A100-40GB 70% of requests meet TTFT ≤ 2 s + 2 ms per prompt token; prefills of 100k tokens
/// stall everyone behind them). Its arrivals — a real production burst pattern, gap CV 2.85 —
/// are kept, with chat lengths drawn from the ShareGPT-like sample.
struct Workload {
    name: &'static str,
    trace: Option<&'static str>,
    dataset: Option<&'static str>,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "mooncake-arrivals",
        trace: Some("mooncake-conversation"),
        dataset: Some("sharegpt-like"),
    },
    Workload { name: "arxiv-summarization", trace: None, dataset: Some("arxiv-summarization") },
    Workload { name: "sharegpt-like", trace: None, dataset: Some("sharegpt-like") },
];

const GPUS: [&str; 2] = ["a100-40gb", "h100"];

/// Constant loads, as shares of capacity.
const LOADS: [f64; 4] = [0.2, 0.4, 0.6, 0.8];

/// The daily cycle: a compressed day from 0.2 to 0.9 of capacity and back.
const DAILY: &str = "diurnal:lo=0.2,hi=0.9,period_s=600";

/// The tables of the record, each with its name and arguments.
fn tables(args: &EvalArgs) -> Vec<(String, String, EvalArgs)> {
    let mut out = Vec::new();
    let (workloads, gpus, loads): (&[Workload], &[&str], &[f64]) =
        if args.quick { (&WORKLOADS[2..], &GPUS[..1], &[0.4, 0.8]) } else { (&WORKLOADS, &GPUS, &LOADS) };
    for w in workloads {
        for &gpu in gpus {
            let group = format!("{}-{gpu}", w.name);
            let base = EvalArgs {
                protocol: Protocol::Serving,
                gpu: Some(gpu.into()),
                trace: w.trace.map(String::from),
                dataset: w.dataset.map(PathBuf::from),
                // Three runs per table keep the whole record near a minute; fewer if asked.
                runs: if args.quick { 1 } else { args.runs.min(3) },
                duration: Some(if args.quick { 120.0 } else { 300.0 }),
                load: None,
                load_profile: None,
                out: args.out.as_ref().map(|d| d.join("record").join(&group)),
                ..args.clone()
            };
            for &load in loads {
                let name = format!("load-{load}");
                let mut a = EvalArgs { load: Some(load), ..base.clone() };
                a.out = base.out.as_ref().map(|d| d.join(&name));
                out.push((group.clone(), name, a));
            }
            let period = if args.quick { 120.0 } else { 600.0 };
            let mut daily = EvalArgs {
                load_profile: Some(DAILY.replace("period_s=600", &format!("period_s={period}"))),
                duration: Some(period),
                ..base.clone()
            };
            daily.out = base.out.as_ref().map(|d| d.join("daily"));
            out.push((group.clone(), "daily".into(), daily));
        }
    }
    out
}

fn find<'a>(results: &'a [MethodResult], prefix: &str) -> Option<&'a MethodResult> {
    results.iter().find(|m| m.summary.method.starts_with(prefix))
}

/// One row of the summary: the two bars and the best deployable method of one table.
fn summary_row(out: &mut String, group: &str, name: &str, t: &TableResult) {
    let cell = |m: Option<&MethodResult>| {
        m.filter(|m| !m.details.is_empty()).map_or("—".to_owned(), |m| {
            format!("{:.1} J ({:.1}%)", m.summary.energy_per_request_j, m.summary.slo_attainment_pct)
        })
    };
    let vllm = find(&t.results, "vllm-default");
    let best_static = find(&t.results, "best-static");
    let best = best_deployable(&t.results, t.target_pct);
    let saving = |bar: Option<&MethodResult>| match (best, bar) {
        (Some(b), Some(v)) if !v.details.is_empty() && v.summary.slo_attainment_pct >= t.target_pct => {
            format!(
                "{:+.1}%",
                100.0 * (b.summary.energy_per_request_j / v.summary.energy_per_request_j - 1.0)
            )
        }
        _ => "—".into(),
    };
    let setting = best_static
        .map(|b| b.summary.method.trim_start_matches("best-static").trim().to_owned())
        .unwrap_or_else(|| "—".into());
    let _ = writeln!(
        out,
        "| {group} | {name} | {:.3} | {} | {} | {} | {} | {} | {} |",
        t.settings.load.map_or(f64::NAN, |l| l.capacity_rps),
        cell(vllm),
        cell(best_static),
        setting,
        best.map_or("none reaches the target".to_owned(), |b| format!(
            "{}: {}",
            b.summary.method,
            cell(Some(b))
        )),
        saving(vllm),
        saving(best_static),
    );
}

/// Runs the evaluation of record: every table, a load curve per workload × GPU, the summary.
/// Its workloads, GPUs, loads and run lengths are fixed; flags that would change them are refused
/// rather than ignored.
pub fn run_record(args: &EvalArgs) -> anyhow::Result<()> {
    for (flag, set) in [
        ("--gpu", args.gpu.is_some()),
        ("--trace", args.trace.is_some()),
        ("--dataset", args.dataset.is_some()),
        ("--duration", args.duration.is_some()),
        ("--load", args.load.is_some()),
        ("--load-profile", args.load_profile.is_some()),
    ] {
        if set {
            anyhow::bail!(
                "{flag} does not apply to the evaluation of record, whose workloads, GPUs and loads are fixed; \
                 use --table main to evaluate your own"
            );
        }
    }
    let mut cache = args.capacity_cache()?;
    let mut summary = String::from(
        "| workload × GPU | load | capacity (req/s) | vllm-default | best-static | setting | best deployable | \
         vs vllm-default | vs best-static |\n|---|---|---:|---:|---:|---|---|---:|---:|\n",
    );
    let mut curve: Vec<LoadCurvePoint> = Vec::new();
    let mut current_group = String::new();
    let all = tables(args);
    let flush_curve = |group: &str, curve: &mut Vec<LoadCurvePoint>| -> anyhow::Result<()> {
        if let (Some(dir), false) = (&args.out, curve.is_empty()) {
            let svg =
                load_curve_svg(&format!("Energy per request against load: {group}"), curve, args.slo_target);
            write_files(&dir.join("record").join(group), &[("load-curve.svg", svg)])?;
        }
        curve.clear();
        Ok(())
    };
    for (group, name, table) in &all {
        if *group != current_group {
            flush_curve(&current_group, &mut curve)?;
            current_group = group.clone();
        }
        println!("## record: {group}, {name}\n");
        let t = run_table(table, &mut cache).with_context(|| format!("record table {group} {name}"))?;
        println!();
        summary_row(&mut summary, group, name, &t);
        if let Some(load) = table.load {
            for m in &t.results {
                if m.details.is_empty() {
                    continue;
                }
                curve.push(LoadCurvePoint {
                    method: m.summary.method.split(" (").next().unwrap_or("").to_owned(),
                    load,
                    energy_per_request_j: m.summary.energy_per_request_j,
                    slo_attainment_pct: m.summary.slo_attainment_pct,
                });
            }
        }
    }
    flush_curve(&current_group, &mut curve)?;
    let text = format!(
        "## record: summary\n\nEnergy per request (busy GPU energy) and SLO attainment; the savings are those of \
         the best deployable method that reaches the {}% target, against each bar when the bar reaches it too.\n\n\
         {summary}",
        args.slo_target
    );
    println!("{text}");
    if let Some(dir) = &args.out {
        write_files(&dir.join("record"), &[("summary.md", text)])?;
    }
    Ok(())
}
