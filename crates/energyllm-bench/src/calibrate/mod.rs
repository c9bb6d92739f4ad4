//! Calibration of the simulator against real measurements (`cargo xtask calibrate`).
//!
//! Each section loads one source from the data directory (`../shared/data` in this project's
//! layout; read each folder's PROVENANCE.md), predicts the same configurations with the shipped
//! profiles, and states the error. Where the issue sets a target, a [`Check`] records whether it
//! is met. With `refit`, each section also fits its constants (Nelder–Mead on the same points)
//! and prints them beside the shipped values, so a reader sees both what ships and what the data
//! alone would choose.

mod b200;
mod dvfs;
mod energyllm_grid;
mod heldout;
mod mlenergy;
mod power;
mod splitwise;
mod vidur;

use b200::b200_section;
use dvfs::{a100_joint_refit, dvfs_section};
use energyllm_grid::energyllm_section;
use heldout::{held_out_a100_section, held_out_section};
use mlenergy::mlenergy_v3_section;
use splitwise::splitwise_section;
use vidur::vidur_section;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;

/// One target of the calibration issue.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// The measured error or figure, as printed.
    pub value: String,
    /// The target, as printed.
    pub target: String,
    /// Whether it is met.
    pub met: bool,
    /// Whether the data was held out: no constant was fitted to it. The rest are in-sample:
    /// constants were fitted to those data, so meeting them shows the fit, not a prediction.
    pub held_out: bool,
}

/// The calibration report.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Markdown text, one section per source.
    pub text: String,
    /// The targets, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Targets met.
    pub fn met(&self) -> usize {
        self.checks.iter().filter(|c| c.met).count()
    }

    /// The whole report: the in-sample targets, the held-out ones, then `targets met: N/M`
    /// over both.
    pub fn render(&self) -> String {
        let mut s = self.text.clone();
        for (held_out, title) in [
            (false, "In-sample targets (constants were fitted to these data: they show the fit)"),
            (true, "Held-out targets (no constant was fitted to these data: they show the prediction)"),
        ] {
            let _ = write!(s, "\n## {title}\n\n| target | value | required | met |\n|---|---:|---|---|\n");
            for c in self.checks.iter().filter(|c| c.held_out == held_out) {
                let met = if c.met { "yes" } else { "**no**" };
                let _ = writeln!(s, "| {} | {} | {} | {met} |", c.name, c.value, c.target);
            }
        }
        let _ = writeln!(s, "\ntargets met: {}/{}", self.met(), self.checks.len());
        s
    }
}

/// Factors a constant is held at, from its refit value, to see whether the data pin it.
const PROFILE_FACTORS: [f64; 2] = [0.5, 2.0];

/// The rise in the fit's error, in points, below which the data do not pin a constant: halving or
/// doubling it (the others refitted) costs less than this.
const PINNED_RISE_POINTS: f64 = 1.0;

/// One constant of a fit for [`sensitivity_table`].
struct Sensitivity<'a> {
    name: &'a str,
    shipped: f64,
    refit: f64,
    /// The fit's best error with the constant held at each of [`PROFILE_FACTORS`] of its refit.
    at_factors: Vec<f64>,
    /// The fit's best error with the constant held at its shipped value.
    at_shipped: f64,
}

/// Sensitivity of a fit: for each constant, the best error with it held at half and at twice its
/// refit value, and at its shipped value, the others refitted ([`crate::optimize::held_at`]). A
/// constant is pinned from a side when moving it there costs at least [`PINNED_RISE_POINTS`];
/// its shipped value is flagged when holding it there costs that much.
fn sensitivity_table(s: &mut String, best: f64, rows: &[Sensitivity<'_>]) {
    let _ = writeln!(
        s,
        "How well the data pin each constant (error {best:.2}% at the refit). Each is held at ×0.5 and \
         ×2 of its refit value (0.5 and 2 fit steps when that is 0; a value outside the constant's \
         bounds is clamped to them) and at its shipped value, the others refitted:\n\n\
         | constant | shipped | refit | error at ×0.5 | error at ×2 | pinned by these data | error at shipped |\n\
         |---|---:|---:|---:|---:|---|---|"
    );
    for r in rows {
        let rise = |i: usize| r.at_factors.get(i).map_or(0.0, |e| e - best) >= PINNED_RISE_POINTS;
        let pinned = match (rise(0), rise(1)) {
            (true, true) => "yes",
            (true, false) => "from below only",
            (false, true) => "from above only",
            (false, false) => "**no**",
        };
        let shipped_cost = r.at_shipped - best;
        let verdict = if shipped_cost >= PINNED_RISE_POINTS {
            format!("**{:.2}%** (+{shipped_cost:.2} points)", r.at_shipped)
        } else {
            format!("{:.2}%", r.at_shipped)
        };
        let cells: Vec<String> = r.at_factors.iter().map(|e| format!("{e:.2}%")).collect();
        let _ = writeln!(
            s,
            "| {} | {:.4e} | {:.4e} | {} | {pinned} | {verdict} |",
            r.name,
            r.shipped,
            r.refit,
            cells.join(" | ")
        );
    }
    s.push('\n');
}

fn push_check(checks: &mut Vec<Check>, name: &str, value: String, target: &str, met: bool) {
    checks.push(Check { name: name.into(), value, target: target.into(), met, held_out: false });
}

fn push_held_out(checks: &mut Vec<Check>, name: &str, value: String, target: &str, met: bool) {
    checks.push(Check { name: name.into(), value, target: target.into(), met, held_out: true });
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

fn data_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Data { name: path.display().to_string(), reason: reason.to_string() }
}

fn read_csv(path: &Path) -> Result<Vec<BTreeMap<String, String>>, Error> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| data_err(path, e))?;
    let mut rows = Vec::new();
    for (i, rec) in reader.deserialize::<BTreeMap<String, String>>().enumerate() {
        rows.push(rec.map_err(|e| Error::DataLine {
            path: path.to_owned(),
            line: i + 2,
            reason: e.to_string(),
        })?);
    }
    Ok(rows)
}

fn field(path: &Path, row: &BTreeMap<String, String>, name: &str) -> Result<f64, Error> {
    let v = row.get(name).ok_or_else(|| data_err(path, format!("missing column `{name}`")))?;
    v.trim().parse::<f64>().map_err(|_| data_err(path, format!("column `{name}`: `{v}` is not a number")))
}

fn text<'a>(path: &Path, row: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, Error> {
    row.get(name).map(String::as_str).ok_or_else(|| data_err(path, format!("missing column `{name}`")))
}

fn mape(pairs: &[(f64, f64)]) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    100.0 * pairs.iter().map(|(truth, pred)| ((pred - truth) / truth).abs()).sum::<f64>() / pairs.len() as f64
}

/// The median absolute percentage error of (measured, predicted) pairs: robust to a few wild
/// points where the mean is not.
fn median_ape(pairs: &[(f64, f64)]) -> f64 {
    let mut e: Vec<f64> = pairs.iter().map(|(t, p)| ((p - t) / t).abs() * 100.0).collect();
    if e.is_empty() {
        return f64::NAN;
    }
    e.sort_by(f64::total_cmp);
    let n = e.len();
    if n % 2 == 1 {
        e[n / 2]
    } else {
        (e[n / 2 - 1] + e[n / 2]) / 2.0
    }
}

/// Runs every section against the data in `data` (the `../shared/data` layout).
pub fn calibrate(data: &Path, refit: bool) -> Result<Report, Error> {
    if !data.is_dir() {
        return Err(Error::Io {
            path: PathBuf::from(data),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "calibration data directory not found; pass --data DIR",
            ),
        });
    }
    let mut report = Report { text: "# Simulator calibration report\n\n".into(), checks: Vec::new() };
    vidur_section(data, refit, &mut report)?;
    let prompt = mlenergy_v3_section(data, refit, &mut report)?;
    held_out_section(data, prompt, &mut report)?;
    b200_section(data, prompt, refit, &mut report)?;
    held_out_a100_section(data, &mut report)?;
    splitwise_section(data, &mut report)?;
    energyllm_section(data, refit, &mut report)?;
    dvfs_section(data, &mut report)?;
    if refit {
        a100_joint_refit(data, &mut report)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_keeps_in_sample_and_held_out_targets_apart_and_counts_both() {
        let mut report = Report::default();
        push_check(&mut report.checks, "fit", "1%".into(), "≤ 5%", true);
        push_held_out(&mut report.checks, "prediction", "15%".into(), "≤ 10%", false);
        let text = report.render();
        let (in_sample, held_out) = text.split_once("## Held-out targets").expect("a held-out section");
        assert!(in_sample.contains("| fit |") && !in_sample.contains("| prediction |"), "{text}");
        assert!(held_out.contains("| prediction | 15% | ≤ 10% | **no** |"), "{text}");
        assert!(text.trim_end().ends_with("targets met: 1/2"), "{text}");
    }
}
