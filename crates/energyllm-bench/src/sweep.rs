//! Sweeps: energy and SLO attainment per method as the load and the SLO move
//! (`cargo xtask sweep`).

use std::fmt::Write as _;

use crate::eval::{evaluate, EvalSettings};
use crate::report::mean_ci95;
use crate::Error;

/// Parses `A..B` (5 evenly spaced points), `A..B:STEP`, or a comma-separated list.
pub fn parse_points(spec: &str, what: &str) -> Result<Vec<f64>, Error> {
    let bad = |why: &str| Error::Setting(format!("{what} `{spec}`: {why} (write A..B, A..B:STEP or A,B,C)"));
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
    if let Some((range, step)) = spec.split_once("..").map(|(a, rest)| (a, rest.split_once(':'))) {
        let (b, step) = match step {
            Some((b, st)) => (b, Some(num(st).ok_or_else(|| bad("the step must be a positive number"))?)),
            None => (spec.split_once("..").map_or("", |p| p.1), None),
        };
        let (lo, hi) = (num(range).ok_or_else(|| bad("bad start"))?, num(b).ok_or_else(|| bad("bad end"))?);
        if lo > hi {
            return Err(bad("the start is above the end"));
        }
        let step = step.unwrap_or((hi - lo) / 4.0).max(1e-9);
        let n = ((hi - lo) / step + 1e-9).floor() as usize;
        if n > 1000 {
            return Err(bad("more than 1000 points"));
        }
        return Ok((0..=n).map(|i| lo + step * i as f64).collect());
    }
    spec.split(',').map(|p| num(p).ok_or_else(|| bad("every value must be a positive number"))).collect()
}

/// One cell of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// Method label.
    pub method: String,
    /// Arrival rate, in requests/s.
    pub arrival_rate_rps: f64,
    /// End-to-end SLO, in seconds.
    pub slo_e2e_s: f64,
    /// Mean GPU energy per request over runs, in joules.
    pub energy_per_request_j: f64,
    /// Mean SLO attainment over runs, in percent.
    pub slo_attainment_pct: f64,
    /// Mean efficiency over runs.
    pub efficiency: f64,
}

/// Evaluates every method of `base` at every (rate, SLO) pair.
pub fn sweep(
    base: &EvalSettings,
    rates_rps: &[f64],
    slos_s: &[f64],
    mut on_point: impl FnMut(usize, usize),
) -> Result<Vec<SweepPoint>, Error> {
    let total = rates_rps.len() * slos_s.len();
    let mut out = Vec::new();
    for (i, &rate) in rates_rps.iter().enumerate() {
        for (j, &slo) in slos_s.iter().enumerate() {
            let mut s = base.clone();
            s.arrival_rate_rps = rate;
            s.setup.controller.slo.e2e_s = Some(slo);
            for m in evaluate(&s, |_| {})? {
                let mean = |get: fn(&energyllm_core::RunSummary) -> f64| {
                    mean_ci95(&m.runs.iter().map(get).collect::<Vec<_>>()).0
                };
                out.push(SweepPoint {
                    method: m.summary.method.clone(),
                    arrival_rate_rps: rate,
                    slo_e2e_s: slo,
                    energy_per_request_j: mean(|r| r.energy_per_request_j),
                    slo_attainment_pct: mean(|r| r.slo_attainment_pct),
                    efficiency: mean(|r| r.efficiency),
                });
            }
            on_point(i * slos_s.len() + j + 1, total);
        }
    }
    Ok(out)
}

/// CSV of every point.
pub fn to_csv(points: &[SweepPoint]) -> String {
    let mut s = String::from(
        "method,arrival_rate_rps,slo_e2e_s,energy_per_request_j,slo_attainment_pct,efficiency\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "{},{},{},{:.3},{:.3},{:.4}",
            p.method,
            p.arrival_rate_rps,
            p.slo_e2e_s,
            p.energy_per_request_j,
            p.slo_attainment_pct,
            p.efficiency
        );
    }
    s
}

/// One Markdown table per SLO: rows are methods, columns arrival rates, cells
/// "energy J / SLO %".
pub fn to_markdown(points: &[SweepPoint]) -> String {
    let mut slos: Vec<f64> = points.iter().map(|p| p.slo_e2e_s).collect();
    slos.dedup();
    slos.sort_by(f64::total_cmp);
    slos.dedup();
    let mut s = String::new();
    for slo in slos {
        let at: Vec<&SweepPoint> = points.iter().filter(|p| p.slo_e2e_s == slo).collect();
        let mut rates: Vec<f64> = at.iter().map(|p| p.arrival_rate_rps).collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        let mut methods: Vec<&str> = Vec::new();
        for p in &at {
            if !methods.contains(&p.method.as_str()) {
                methods.push(&p.method);
            }
        }
        let _ = writeln!(s, "### SLO {slo} s: energy per request (J) / SLO attainment (%)\n");
        s.push_str("| Method |");
        for r in &rates {
            let _ = write!(s, " {r} req/s |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(rates.len()));
        s.push('\n');
        for m in methods {
            let _ = write!(s, "| {m} |");
            for r in &rates {
                match at.iter().find(|p| p.method == m && p.arrival_rate_rps == *r) {
                    Some(p) => {
                        let _ = write!(s, " {:.0} / {:.1} |", p.energy_per_request_j, p.slo_attainment_pct);
                    }
                    None => s.push_str(" — |"),
                }
            }
            s.push('\n');
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists_parse() {
        assert_eq!(parse_points("0.2..1.0", "r").unwrap(), vec![0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(parse_points("8..14:2", "s").unwrap(), vec![8.0, 10.0, 12.0, 14.0]);
        assert_eq!(parse_points("0.5,1,2", "r").unwrap(), vec![0.5, 1.0, 2.0]);
        for bad in ["2..1", "a..b", "1..2:0", "1,x", "-1"] {
            assert!(parse_points(bad, "rates").unwrap_err().to_string().contains("rates"), "{bad}");
        }
    }
}
