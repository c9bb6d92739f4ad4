//! `energyllm fit planning`: routing configs whose per-system models were fitted on the stack
//! that will serve. A system is either simulated (a GPU and a model profile, from a systems
//! file) or measured (`--profile`, a batch profile of a live engine over a grid of lengths, from
//! `energyllm profile`). The output is a routing config for `energyllm route`. Its comments give
//! each fit's error on its own data and on held-out cells. For simulated systems they also give
//! the error on mixed-length batches of real traffic.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use serde::Deserialize;

use energyllm_bench::planning::{
    check_on_mixed_batches, fit_system, planning_samples, route_system, PlannedSystem, PlanningSetup,
    GRID_INPUT_TOKENS, GRID_OUTPUT_TOKENS,
};
use energyllm_engines::ModelSpec;
use energyllm_hw::GpuSpec;
use energyllm_models::profile::read_batch_profile;
use energyllm_models::route::{RouteConfig, RouteSettings};
use energyllm_models::{PlanningModel, PlanningParams, RouteSystem};
use energyllm_workload::{LengthDataset, ReadOptions};

/// The systems file of the bundled planning example.
pub const PLANNING_SYSTEMS_EXAMPLE: &str = include_str!("../configs/planning-llama-a100-80gb.toml");

/// Queries of the mixed-length check, and the seed that draws them (a report seed: nothing is
/// tuned on it).
const CHECK_QUERIES: usize = 1024;
const CHECK_SEED: u64 = 1000;

/// Arguments of `fit planning`.
#[derive(Args, Clone, Debug)]
pub struct FitPlanningArgs {
    /// Simulated systems to plan for: a TOML file with `[planning]` settings (batch, clock_mhz,
    /// input_tokens, output_tokens) and `[[system]]` tables (name, gpu, model, quality);
    /// `llama-a100-80gb` for the bundled example's.
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    pub systems: Option<String>,
    /// Fit one system on a batch profile instead (a live engine's, from `energyllm profile
    /// --level batch` over a grid of `--tokens`, one clock and one batch size).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// With --profile: the system's name in the routing config.
    #[arg(long, requires = "profile")]
    pub name: Option<String>,
    /// With --profile: the model's quality score.
    #[arg(long, requires = "profile")]
    pub quality: Option<f64>,
    /// With --profile: GPUs the model runs on.
    #[arg(long, default_value_t = 1, requires = "profile")]
    pub gpus: u32,
    /// Queries of the mixed-length check of simulated systems (a lengths file, trace or bundled
    /// name). Default: the bundled ShareGPT-like sample.
    #[arg(long, value_name = "SPEC")]
    pub queries: Option<String>,
    /// Where to write the routing config (default: standard output).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// A systems file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemsFile {
    #[serde(default)]
    planning: PlanningToml,
    #[serde(default)]
    route: RouteSettings,
    system: Vec<SystemToml>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PlanningToml {
    batch: u32,
    clock_mhz: Option<u32>,
    input_tokens: Vec<u32>,
    output_tokens: Vec<u32>,
}

impl Default for PlanningToml {
    fn default() -> Self {
        PlanningToml {
            batch: 32,
            clock_mhz: None,
            input_tokens: GRID_INPUT_TOKENS.to_vec(),
            output_tokens: GRID_OUTPUT_TOKENS.to_vec(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemToml {
    name: String,
    gpu: String,
    model: String,
    quality: f64,
}

impl SystemToml {
    fn planned(&self) -> PlannedSystem {
        PlannedSystem { name: self.name.clone(), gpu: self.gpu.clone(), model: self.model.clone() }
    }
}

impl PlanningToml {
    fn setup(&self) -> PlanningSetup {
        PlanningSetup {
            batch: self.batch,
            clock_mhz: self.clock_mhz,
            input_tokens: self.input_tokens.clone(),
            output_tokens: self.output_tokens.clone(),
        }
    }
}

/// Runs `fit planning`.
pub fn run_fit_planning(args: &FitPlanningArgs) -> anyhow::Result<()> {
    let text = match (&args.systems, &args.profile) {
        (Some(spec), None) => {
            let (name, file) = read_systems(spec)?;
            let queries = check_queries(args.queries.as_deref())?;
            simulated_config(&name, &file, &queries)?
        }
        (None, Some(path)) => {
            let (Some(name), Some(quality)) = (&args.name, args.quality) else {
                bail!("--profile needs --name and --quality for the system it describes");
            };
            measured_config(path, name, quality, args.gpus)?
        }
        _ => bail!("give --systems FILE (simulated systems) or --profile FILE (a measured batch profile)"),
    };
    match &args.output {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn read_systems(spec: &str) -> anyhow::Result<(String, SystemsFile)> {
    let (name, text) = if spec == "llama-a100-80gb" && !Path::new(spec).exists() {
        (format!("{spec} (bundled)"), PLANNING_SYSTEMS_EXAMPLE.to_owned())
    } else {
        (
            spec.to_owned(),
            std::fs::read_to_string(spec).with_context(|| format!("reading systems file {spec}"))?,
        )
    };
    let file: SystemsFile = toml::from_str(&text).with_context(|| format!("systems file {name}"))?;
    if file.system.is_empty() {
        bail!("systems file {name}: no [[system]] tables");
    }
    Ok((name, file))
}

fn check_queries(spec: Option<&str>) -> anyhow::Result<Vec<(u32, u32)>> {
    let d = match spec {
        Some(s) => LengthDataset::open(s, &ReadOptions::default())?.0,
        None => LengthDataset::sharegpt_like(),
    };
    Ok(d.samples.iter().take(CHECK_QUERIES).map(|s| (s.input_len, s.output_len)).collect())
}

/// Comment lines on a fit's errors.
fn error_comments(fit: &PlanningModel) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "# {}", fit.label);
    let _ =
        writeln!(
        c,
        "# Fitted on {} (tin, tout) cells, tin {}–{}, tout {}–{}. Energy error on those cells: mean {:.1}%, \
         max {:.1}%.",
        fit.cells, fit.input_range[0], fit.input_range[1], fit.output_range[0], fit.output_range[1],
        fit.energy_fit_error.mape_pct, fit.energy_fit_error.max_pct
    );
    let _ = writeln!(
        c,
        "# On cells held out of the fit ({} folds): energy mean {:.1}%, max {:.1}%; runtime mean {:.1}%, max {:.1}%.",
        fit.folds,
        fit.energy_held_out_error.mape_pct,
        fit.energy_held_out_error.max_pct,
        fit.runtime_held_out_error.mape_pct,
        fit.runtime_held_out_error.max_pct
    );
    c
}

/// Serialises `config` with one comment block before each `[[system]]`.
fn with_comments(header: &str, config: &RouteConfig, comments: &[String]) -> anyhow::Result<String> {
    let body = toml::to_string(config).context("writing the routing config")?;
    let mut out = String::from(header);
    let mut k = 0;
    for line in body.lines() {
        if line == "[[system]]" {
            out.push('\n');
            if let Some(c) = comments.get(k) {
                out.push_str(c);
            }
            k += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

fn simulated_config(name: &str, file: &SystemsFile, queries: &[(u32, u32)]) -> anyhow::Result<String> {
    let setup = file.planning.setup();
    let mut systems = Vec::new();
    let mut comments = Vec::new();
    for s in &file.system {
        let planned = s.planned();
        let fit = fit_system(&planned, &setup).with_context(|| format!("system `{}`", s.name))?;
        let check = check_on_mixed_batches(&planned, &setup, &fit, queries, CHECK_SEED)
            .with_context(|| format!("system `{}`: the mixed-length check", s.name))?;
        let (gpu, model) = (GpuSpec::builtin(&s.gpu)?, ModelSpec::builtin(&s.model)?);
        let mut c = error_comments(&fit);
        let _ = writeln!(
            c,
            "# On {} queries of the check set, mixed lengths, at most {} running: predicted {:.2} J/query, \
             simulated {:.2} J/query ({:+.1}%); {} of them outside the grid.",
            check.queries,
            setup.batch,
            check.predicted_j,
            check.simulated_j,
            check.error_pct(),
            check.extrapolated
        );
        comments.push(c);
        systems.push(route_system(
            &s.name,
            &model.name,
            &gpu.name,
            model.tensor_parallel,
            s.quality,
            setup.batch,
            &fit,
        ));
    }
    let config = RouteConfig { route: file.route.clone(), system: systems };
    config.validate()?;
    let header = format!(
        "# Routing config written by `energyllm fit planning --systems {name}`: each system's energy and runtime\n\
         # per query in the physical form e = e_req + e_in·tin + e_out·tout + e_ctx·tin·tout (every term ≥ 0),\n\
         # fitted on the simulator's workload profile of that system. Coefficients are per batch of batch_size\n\
         # (energy_intercept_j is e_req × batch_size); fitted_range is the profiled grid, and `route` counts the\n\
         # queries outside it. Do not edit: rerun the command.\n"
    );
    with_comments(&header, &config, &comments)
}

fn measured_config(path: &Path, name: &str, quality: f64, gpus: u32) -> anyhow::Result<String> {
    let rows =
        read_batch_profile(path).with_context(|| format!("reading the batch profile {}", path.display()))?;
    let mut points: Vec<(u32, u32)> = rows.iter().map(|r| (r.freq_mhz, r.batch_size)).collect();
    points.sort_unstable();
    points.dedup();
    let &[(freq, batch)] = points.as_slice() else {
        bail!(
            "{}: the profile has {} (clock, batch) points; a planning model is fitted at the one clock and batch \
             size the deployment will use: profile one of each (`--freqs F --batch-sizes B`)",
            path.display(),
            points.len()
        );
    };
    let params = PlanningParams {
        label: format!("{name}: measured profile {} (batch {batch}, {freq} MHz)", path.display()),
        ..PlanningParams::default()
    };
    let fit = params.fit(&planning_samples(&rows)).with_context(|| format!("fitting {}", path.display()))?;
    let engine = rows.first().map(|r| r.engine.clone()).unwrap_or_default();
    let system: RouteSystem = route_system(name, &engine, "", gpus, quality, batch, &fit);
    let config = RouteConfig { route: RouteSettings::default(), system: vec![system] };
    config.validate()?;
    let header = format!(
        "# Routing config written by `energyllm fit planning --profile {}`: add the other systems' [[system]]\n\
         # tables (each fitted the same way) before routing.\n",
        path.display()
    );
    with_comments(&header, &config, &[error_comments(&fit)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::route::{load_config, PLANNING_EXAMPLE, PLANNING_EXAMPLE_NAME};
    use energyllm_models::route::{group_queries, RouteProblem};

    /// The bundled planning example is exactly what the command writes from its systems file:
    /// it is rebuilt, not edited.
    #[test]
    fn the_bundled_planning_example_is_reproducible() {
        let (name, file) = read_systems("llama-a100-80gb").unwrap();
        let text = simulated_config(&name, &file, &check_queries(None).unwrap()).unwrap();
        assert_eq!(
            text, PLANNING_EXAMPLE,
            "rerun `energyllm fit planning --systems llama-a100-80gb --output crates/energyllm-cli/configs/route-llama-a100-80gb.toml`"
        );
    }

    /// Each system's planning model predicts the simulator's energy on mixed ShareGPT-like
    /// traffic, which the grid does not contain, within 25%; held-out cells stay within 25% too.
    #[test]
    fn planning_models_predict_the_simulator_within_25_percent() {
        let (_, file) = read_systems("llama-a100-80gb").unwrap();
        let queries = check_queries(None).unwrap();
        let setup = file.planning.setup();
        for s in &file.system {
            let planned = s.planned();
            let fit = fit_system(&planned, &setup).unwrap();
            let check = check_on_mixed_batches(&planned, &setup, &fit, &queries, CHECK_SEED).unwrap();
            assert!(check.error_pct().abs() <= 25.0, "{}: {check:?}", s.name);
            assert!(
                fit.energy_held_out_error.mape_pct <= 25.0,
                "{}: {:?}",
                s.name,
                fit.energy_held_out_error
            );
        }
    }

    /// Along the ζ sweep, energy and quality both fall as ζ weighs energy more.
    #[test]
    fn the_planning_examples_sweep_is_monotone() {
        let config = load_config(PLANNING_EXAMPLE_NAME).unwrap();
        let d = LengthDataset::sharegpt_like();
        let p =
            RouteProblem::new(config, group_queries(d.samples.iter().map(|s| (s.input_len, s.output_len))))
                .unwrap();
        let sweep = p.sweep(11).unwrap();
        for w in sweep.windows(2) {
            assert!(
                w[1].energy_j <= w[0].energy_j * (1.0 + 1e-9),
                "{} then {}",
                w[0].energy_j,
                w[1].energy_j
            );
            assert!(w[1].mean_quality <= w[0].mean_quality + 1e-9);
        }
        assert!(sweep[0].energy_j > sweep[10].energy_j && sweep[0].mean_quality > sweep[10].mean_quality);
        assert_eq!(p.clamped(), 0, "a physical model needs no floor");
    }

    /// A batch profile file (as `energyllm profile --level batch` writes from a live engine)
    /// fits to a routing config that `route` loads, with the same coefficients as the
    /// in-memory fit of the same rows.
    #[test]
    fn a_measured_profile_fits_to_a_routing_config() {
        let system =
            PlannedSystem { name: "x".into(), gpu: "a100-80gb".into(), model: "llama-3.1-8b".into() };
        let setup = PlanningSetup {
            input_tokens: vec![8, 128, 1024],
            output_tokens: vec![16, 128, 512, 1024],
            ..PlanningSetup::default()
        };
        let rows = energyllm_bench::planning::workload_profile(&system, &setup).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.csv");
        energyllm_models::profile::write_rows(&path, &rows).unwrap();
        let text = measured_config(&path, "llama-3.1-8b@lab", 66.7, 1).unwrap();
        let out = dir.path().join("route.toml");
        std::fs::write(&out, &text).unwrap();
        let config = load_config(&out.to_string_lossy()).unwrap();
        let fit = PlanningParams::default().fit(&planning_samples(&rows)).unwrap();
        let expect = fit.energy_j.coefficients[1] * 32.0;
        assert!((config.system[0].energy_j[0] - expect).abs() <= 1e-9 * expect.max(1.0), "{text}");
        assert!(text.contains("held out") && config.system[0].fitted_range.is_some());
    }

    #[test]
    fn a_measured_profile_with_two_clocks_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let header = "freq_mhz,batch_size,avg_input_len,avg_output_len,total_latency_sec,avg_gpu_power_watts,energy_j\n";
        std::fs::write(&path, format!("{header}1410,32,16,8,1.0,300,300\n1005,32,16,8,1.2,200,240\n"))
            .unwrap();
        let e = format!("{:#}", measured_config(&path, "x", 1.0, 1).unwrap_err());
        assert!(e.contains("2 (clock, batch) points") && e.contains("--freqs"), "{e}");
        assert!(PLANNING_EXAMPLE.contains("fitted_range"));
    }
}
