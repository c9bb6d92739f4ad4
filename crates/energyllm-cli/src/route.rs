//! `energyllm route`: offline energy-optimal routing of a query set over heterogeneous systems
//! (Wilkins et al.), solved exactly by [`energyllm_models::route`], as one assignment or a ζ
//! sweep (a Markdown table, CSV, JSON and an SVG of energy against quality).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use energyllm_bench::plots::route_svg;
use energyllm_models::route::{group_queries, Assignment, RouteConfig, RouteProblem};
use energyllm_workload::{LengthDataset, ReadOptions};

use crate::output::write_files;

/// The bundled example config: Llama-2 7B/13B/70B on A100s, coefficients fitted from the
/// energy-inference measurements (see the file's header).
pub const LLAMA2_EXAMPLE: &str = include_str!("../configs/route-llama2-energy-inference.toml");

/// The name `--config` accepts for [`LLAMA2_EXAMPLE`].
pub const LLAMA2_EXAMPLE_NAME: &str = "llama2-energy-inference";

/// The bundled planning example: Llama-2 7B/13B/70B and Llama-3.1-8B on simulated A100-80GBs,
/// written by `energyllm fit planning` (see the file's header).
pub const PLANNING_EXAMPLE: &str = include_str!("../configs/route-llama-a100-80gb.toml");

/// The name `--config` accepts for [`PLANNING_EXAMPLE`].
pub const PLANNING_EXAMPLE_NAME: &str = "llama-a100-80gb";

/// Arguments of `route`.
#[derive(Args, Clone, Debug)]
pub struct RouteArgs {
    /// Systems to route over: a TOML file with `[route]` settings and `[[system]]` tables (`fit
    /// planning` writes one); `llama-a100-80gb` for the bundled planning example (fitted on the
    /// simulator), or `llama2-energy-inference` for the reproduction of Wilkins et al.'s fits.
    #[arg(long, value_name = "FILE")]
    pub config: String,
    /// Query set: a lengths file or trace in any supported format, or a bundled name
    /// (`energyllm dataset list`). Default: the bundled ShareGPT-like sample.
    #[arg(long, value_name = "SPEC")]
    pub queries: Option<String>,
    /// Solve at this ζ only (1 = least energy, 0 = best quality) instead of sweeping.
    #[arg(long)]
    pub zeta: Option<f64>,
    /// Points of the ζ sweep (overrides the config's `sweep_points`).
    #[arg(long)]
    pub points: Option<u32>,
    /// Directory for route.md, route.csv, route.json and route.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads a routing config from `spec` (a path, or the bundled example's name); errors name the
/// file and the field.
pub fn load_config(spec: &str) -> anyhow::Result<RouteConfig> {
    let bundled = [(LLAMA2_EXAMPLE_NAME, LLAMA2_EXAMPLE), (PLANNING_EXAMPLE_NAME, PLANNING_EXAMPLE)];
    let (name, text) = match bundled.iter().find(|(n, _)| *n == spec) {
        Some((_, text)) if !Path::new(spec).exists() => (format!("{spec} (bundled)"), (*text).to_owned()),
        _ => {
            let text = std::fs::read_to_string(spec).with_context(|| {
                format!("reading routing config {spec} (or use `{PLANNING_EXAMPLE_NAME}` or `{LLAMA2_EXAMPLE_NAME}`)")
            })?;
            (spec.to_owned(), text)
        }
    };
    let config: RouteConfig = toml::from_str(&text).with_context(|| format!("routing config {name}"))?;
    config.validate().with_context(|| format!("routing config {name}"))?;
    Ok(config)
}

/// The sweep (or single solve) as a Markdown table.
pub fn route_table(problem: &RouteProblem, points: &[Assignment]) -> String {
    let mut out = String::new();
    let systems = problem.systems();
    let _ = write!(out, "| ζ | energy (kWh) | J/query | mean quality |");
    for s in systems {
        let _ = write!(out, " {} |", s.name);
    }
    let _ = writeln!(out, " busiest system (h) |");
    let _ = writeln!(out, "|{}", "---|".repeat(5 + systems.len()));
    for a in points {
        let busiest_h = a.runtime_s.iter().copied().fold(0.0, f64::max) / 3600.0;
        let _ = write!(
            out,
            "| {:.2} | {:.3} | {:.0} | {:.2} |",
            a.zeta,
            a.energy_j / 3.6e6,
            a.energy_j / problem.total() as f64,
            a.mean_quality
        );
        for &n in &a.per_system {
            let _ = write!(out, " {n} |");
        }
        let _ = writeln!(out, " {busiest_h:.2} |");
    }
    out
}

fn csv(problem: &RouteProblem, points: &[Assignment]) -> String {
    let mut out = String::from("zeta,energy_j,energy_per_query_j,mean_quality,objective");
    for s in problem.systems() {
        let _ = write!(out, ",queries_{0},busy_s_{0}", s.name);
    }
    out.push('\n');
    for a in points {
        let _ = write!(
            out,
            "{},{},{},{},{}",
            a.zeta,
            a.energy_j,
            a.energy_j / problem.total() as f64,
            a.mean_quality,
            a.objective
        );
        for (n, t) in a.per_system.iter().zip(&a.runtime_s) {
            let _ = write!(out, ",{n},{t}");
        }
        out.push('\n');
    }
    out
}

/// Runs `route`.
pub fn run_route(args: &RouteArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args.config)?;
    if let Some(points) = args.points {
        anyhow::ensure!(points >= 2, "--points must be ≥ 2 (the sweep's two ends)");
        config.route.sweep_points = points;
    }
    let dataset = match &args.queries {
        Some(spec) => LengthDataset::open(spec, &ReadOptions::default())?.0,
        None => LengthDataset::sharegpt_like(),
    };
    let classes = group_queries(dataset.samples.iter().map(|s| (s.input_len, s.output_len)));
    let n_classes = classes.len();
    let sweep_points = config.route.sweep_points;
    let problem =
        RouteProblem::new(config, classes).with_context(|| format!("routing config {}", args.config))?;
    let points = match args.zeta {
        Some(z) => vec![problem.solve(z)?],
        None => problem.sweep(sweep_points)?,
    };
    let mut text = format!(
        "Offline routing of {} queries ({} distinct (tin, tout) classes, {}) over {} systems; exact min-cost flow; \
         shares per system (min, max queries): {}.\n",
        problem.total(),
        n_classes,
        dataset.name,
        problem.systems().len(),
        problem
            .systems()
            .iter()
            .zip(problem.bounds())
            .map(|(s, (lo, hi))| format!("{} [{lo}, {hi}]", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if problem.extrapolated() > 0 {
        let _ = writeln!(
            text,
            "note: {} (query, system) predictions are outside the lengths the system's model was fitted on \
             (fitted_range): extrapolations; profile a wider grid to plan for them.",
            problem.extrapolated()
        );
    }
    if problem.clamped() > 0 {
        let _ = writeln!(
            text,
            "note: {} (query, system) energy predictions were below the system's floor (min_energy_j, or 0 J; a \
             bilinear fit outside its data) and were raised to it.",
            problem.clamped()
        );
    }
    text.push('\n');
    text.push_str(&route_table(&problem, &points));
    print!("{text}");
    if let Some(dir) = &args.out {
        write_files(
            dir,
            &[
                ("route.md", text),
                ("route.csv", csv(&problem, &points)),
                ("route.json", serde_json::to_string_pretty(&points)?),
                ("route.svg", route_svg(&problem, &points)),
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_bundled_example_parses_and_its_sweep_spans_energy_and_quality() {
        let config = load_config(LLAMA2_EXAMPLE_NAME).unwrap();
        assert_eq!(config.system.len(), 3);
        let d = LengthDataset::sharegpt_like();
        let classes = group_queries(d.samples.iter().map(|s| (s.input_len, s.output_len)));
        let p = RouteProblem::new(config, classes).unwrap();
        let sweep = p.sweep(5).unwrap();
        let (first, last) = (&sweep[0], &sweep[sweep.len() - 1]);
        // ζ = 0: all but one query each on the others go to the 70B model; ζ = 1: least energy.
        assert_eq!(first.per_system[2], p.total() - 2);
        assert!(last.energy_j < first.energy_j / 5.0, "{} vs {}", last.energy_j, first.energy_j);
        assert!(sweep.iter().all(|a| a.per_system.iter().all(|&n| n >= 1)));
        let svg = route_svg(&p, &sweep);
        assert!(svg.starts_with("<svg") && svg.contains("all on llama-2-70b@a100x4"));
        assert!(route_table(&p, &sweep).lines().count() == 2 + 5);
    }

    #[test]
    fn a_bad_field_names_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, LLAMA2_EXAMPLE.replace("quality = 50.97", "qualty = 50.97")).unwrap();
        let e = format!("{:#}", load_config(&path.to_string_lossy()).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("qualty"), "{e}");
        std::fs::write(&path, LLAMA2_EXAMPLE.replace("gpus = 4", "gpus = 0")).unwrap();
        let e = format!("{:#}", load_config(&path.to_string_lossy()).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("llama-2-70b@a100x4"), "{e}");
    }
}
