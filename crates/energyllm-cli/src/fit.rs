//! `energyllm fit wilkins|gbt|planning` (planning in `planning.rs`).
//!
//! - `fit wilkins` fits Wilkins et al.'s bilinear model per (model, system) on the
//!   energy-inference CSVs and prints the paper's table layout beside the paper's R².
//! - `fit gbt` cross-validates and fits the latency and power trees and the iteration-rate
//!   predictor on an iteration profile, and writes model files.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use crate::args::named_value;

use energyllm_bench::wilkins_reproduction::{
    read_energy_inference_csv, sci, wilkins_tables, WilkinsSubset, ENERGY_INFERENCE_FILES, PAPER_R2,
};
use energyllm_models::file::{created_by, Metric};
use energyllm_models::profile::{iteration_dataset, read_iteration_profile};
use energyllm_models::{
    cross_validate, CvReport, GbtPerfParams, IterationRateParams, IterationTarget, ModelFile, ModelMeta,
    Quantity, SavedModel, TrainingSummary, WilkinsParams,
};

/// `energyllm fit …`.
#[derive(Subcommand, Clone, Debug)]
pub enum FitCommand {
    /// Wilkins et al.'s e = a0·tin + a1·tout + a2·tin·tout per (model, system) on the
    /// energy-inference CSVs.
    Wilkins(FitWilkinsArgs),
    /// Gradient-boosted trees for iteration latency and power, and the iteration-rate predictor.
    Gbt(FitGbtArgs),
    /// Routing configs for planning: per-system energy and runtime models in a non-negative
    /// physical form, fitted on a workload profile of the stack that will serve (simulated, or a
    /// live engine's batch profile), with held-out errors.
    Planning(crate::planning::FitPlanningArgs),
}

/// Arguments of `fit wilkins`.
#[derive(Args, Clone, Debug)]
pub struct FitWilkinsArgs {
    /// Directory holding all-{input,output}[-scale]-stats.csv from github.com/grantwilkins/energy-inference.
    #[arg(long)]
    pub data: PathBuf,
    /// Rows to fit on: `all` (warm-up included), `warm` (iterations ≥ 1) or `mean` (the mean over
    /// iterations ≥ 1 of each point). Default: all three, one table each.
    #[arg(long, value_parser = named_value(&WilkinsSubset::ALL, WilkinsSubset::name))]
    pub subset: Option<WilkinsSubset>,
    /// Directory to write one model file per (model, system) to (fits on `--subset`, default mean).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Arguments of `fit gbt`.
#[derive(Args, Clone, Debug)]
pub struct FitGbtArgs {
    /// Iteration-level profile (`energyllm profile --level iteration`).
    #[arg(long)]
    pub profile: PathBuf,
    /// Directory for gbt.elm and iteration-rate.elm.
    #[arg(long)]
    pub output: PathBuf,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Seed of the fold split and the learner.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Trees per regressor (default: the library default).
    #[arg(long)]
    pub trees: Option<usize>,
    /// Learning rate (default: the library default).
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// Tree depth limit (default: the library default).
    #[arg(long)]
    pub max_depth: Option<usize>,
}

/// Runs `fit …`.
pub fn run_fit(cmd: &FitCommand) -> anyhow::Result<()> {
    match cmd {
        FitCommand::Wilkins(args) => run_fit_wilkins(args),
        FitCommand::Gbt(args) => run_fit_gbt(args),
        FitCommand::Planning(args) => crate::planning::run_fit_planning(args),
    }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

fn run_fit_wilkins(args: &FitWilkinsArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut read = Vec::new();
    for name in ENERGY_INFERENCE_FILES {
        let path = args.data.join(name);
        if path.exists() {
            rows.extend(read_energy_inference_csv(&path)?);
            read.push(name);
        }
    }
    if rows.is_empty() {
        bail!(
            "{}: none of {} holds inference rows; point --data at the energy-inference data directory",
            args.data.display(),
            ENERGY_INFERENCE_FILES.join(", ")
        );
    }
    println!(
        "Reproduction of Wilkins et al.'s fits on their own measurements: e = a0·tin + a1·tout + a2·tin·tout (no \
         intercept), one fit per (model, system), {} inference rows from {}. For routing plans, fit the stack \
         that will serve with `energyllm fit planning`.",
        rows.len(),
        read.join(", ")
    );
    println!(
        "System `argonne-swing` is read as `Swing AMD+A100` (the same cluster, named two ways in the data)."
    );
    println!(
        "R² (uncentered) = 1 − RSS/Σy², as statsmodels reports a fit without a constant; the F-test is the \
         uncentered one. The paper published R² {:.3}–{:.3} without saying which rows it fitted.",
        PAPER_R2.0, PAPER_R2.1
    );
    let subsets = match args.subset {
        Some(s) => vec![s],
        None => vec![WilkinsSubset::All, WilkinsSubset::Warm, WilkinsSubset::Mean],
    };
    let mut summary = String::from(
        "\nWhich subset comes closest to the paper (energy, fitted groups):\n\n\
         | subset | groups fitted | median R² (uncentered) | groups within the paper's range |\n|---|---|---|---|\n",
    );
    for &subset in &subsets {
        let (table, fits) = wilkins_tables(&rows, subset);
        print!("{table}");
        let mut r2: Vec<f64> =
            fits.iter().filter_map(|(_, f)| f.as_ref().ok()).map(|m| m.energy.r2_uncentered).collect();
        r2.sort_by(f64::total_cmp);
        let within = r2.iter().filter(|v| (PAPER_R2.0..=PAPER_R2.1).contains(*v)).count();
        let median = r2.get(r2.len() / 2).copied().unwrap_or(f64::NAN);
        let _ = writeln!(summary, "| {subset:?} | {} | {median:.3} | {within} |", r2.len());
    }
    print!("{summary}");
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let subset = args.subset.unwrap_or(WilkinsSubset::Mean);
        let (_, fits) = wilkins_tables(&rows, subset);
        let mut written = 0;
        for ((model, system), fit) in fits {
            let Ok(m) = fit else { continue };
            let metrics = [("energy_j", &m.energy), ("runtime_s", &m.runtime)]
                .into_iter()
                .flat_map(|(t, f)| {
                    [
                        ("r2_uncentered", f.r2_uncentered),
                        ("r2_centered", f.r2_centered),
                        ("f_statistic", f.f_statistic),
                    ]
                    .map(|(name, value)| Metric {
                        target: t.into(),
                        name: name.into(),
                        value,
                    })
                })
                .collect();
            let file = ModelFile {
                meta: ModelMeta {
                    family: "wilkins".into(),
                    description: format!("energy and runtime of one batch of {} on {system}", model),
                    features: vec![
                        Quantity::new("input_tokens", "tokens"),
                        Quantity::new("output_tokens", "tokens"),
                    ],
                    targets: vec![Quantity::new("energy_j", "J"), Quantity::new("runtime_s", "s")],
                    training: TrainingSummary {
                        source: format!("{} (subset {subset:?})", args.data.display()),
                        rows: m.energy.n as u64,
                        feature_ranges: Vec::new(),
                        params_json: serde_json::to_string(&WilkinsParams { label: m.label.clone() })?,
                        metrics,
                    },
                    created_by: created_by(),
                },
                model: SavedModel::Wilkins(Box::new(m)),
            };
            let path = dir.join(format!("wilkins-{}-{}.elm", slug(&model), slug(&system)));
            file.save(&path)?;
            written += 1;
        }
        println!("\nwrote {written} model files to {}", dir.display());
    }
    Ok(())
}

fn cv_row(out: &mut String, target: &str, rows: usize, cv: &CvReport) {
    let _ = writeln!(
        out,
        "| {target} | {rows} | {} | {:.4} | {:.2} % | {} | {:.4} | {:.1} % |",
        cv.folds,
        cv.model.r2,
        cv.model.mape * 100.0,
        sci(cv.model.rmse),
        cv.baseline.r2,
        cv.baseline.mape * 100.0
    );
}

fn cv_metrics(target: &str, cv: &CvReport) -> Vec<Metric> {
    [
        ("cv_r2", cv.model.r2),
        ("cv_mape", cv.model.mape),
        ("cv_rmse", cv.model.rmse),
        ("constant_cv_r2", cv.baseline.r2),
    ]
    .map(|(name, value)| Metric { target: target.into(), name: name.into(), value })
    .to_vec()
}

fn run_fit_gbt(args: &FitGbtArgs) -> anyhow::Result<()> {
    let rows = read_iteration_profile(&args.profile)?;
    let mut params = GbtPerfParams::default();
    for p in [&mut params.latency, &mut params.power] {
        p.seed = args.seed;
        if let Some(t) = args.trees {
            p.trees = t;
        }
        if let Some(l) = args.learning_rate {
            p.learning_rate = l;
        }
        if let Some(d) = args.max_depth {
            p.max_depth = d;
        }
    }
    // The rate model's trees take the latency trees' settings (both fit a log latency).
    let rate_params = IterationRateParams { gbt: params.latency.clone() };
    let latency = iteration_dataset(&rows, IterationTarget::Latency)?;
    let power = iteration_dataset(&rows, IterationTarget::Power)?;
    let decode = energyllm_models::iteration_rate::decode_dataset(&rows)?;
    let mut table = String::from(
        "| target | rows | folds | CV R² | CV MAPE | CV RMSE | constant R² | constant MAPE |\n|---|---|---|---|---|---|---|---|\n",
    );
    let cv_latency = cross_validate(&params.latency, &latency, args.folds, args.seed)?;
    cv_row(&mut table, "latency_s", latency.len(), &cv_latency);
    let cv_power = cross_validate(&params.power, &power, args.folds, args.seed)?;
    cv_row(&mut table, "power_w", power.len(), &cv_power);
    let cv_rate = cross_validate(&rate_params.gbt, &decode, args.folds, args.seed)?;
    cv_row(&mut table, "decode latency_s (rate)", decode.len(), &cv_rate);
    println!("{}-fold cross-validation on {} (held-out rows; the constant predictor is each training fold's mean):\n", args.folds, args.profile.display());
    print!("{table}");

    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let source = args.profile.display().to_string();
    let gbt = params.fit(&rows)?;
    let mut metrics = cv_metrics("latency_s", &cv_latency);
    metrics.extend(cv_metrics("power_w", &cv_power));
    let gbt_file = ModelFile {
        meta: ModelMeta {
            family: "gbt".into(),
            description: "iteration latency and power as gradient-boosted trees".into(),
            features: latency.features().to_vec(),
            targets: vec![latency.target().clone(), power.target().clone()],
            training: TrainingSummary {
                source: source.clone(),
                rows: rows.len() as u64,
                feature_ranges: latency.feature_ranges(),
                params_json: serde_json::to_string(&params)?,
                metrics,
            },
            created_by: created_by(),
        },
        model: SavedModel::Gbt(gbt),
    };
    let gbt_path = args.output.join("gbt.elm");
    gbt_file.save(&gbt_path)?;
    let rate = rate_params.fit(&rows)?;
    let rate_file = ModelFile {
        meta: ModelMeta {
            family: "iteration-rate".into(),
            description: "decode iterations per second (1 / predicted decode-iteration latency)".into(),
            features: decode.features().to_vec(),
            targets: vec![Quantity::new("iterations_per_s", "1/s")],
            training: TrainingSummary {
                source,
                rows: decode.len() as u64,
                feature_ranges: decode.feature_ranges(),
                params_json: serde_json::to_string(&rate_params)?,
                metrics: cv_metrics("latency_s", &cv_rate),
            },
            created_by: created_by(),
        },
        model: SavedModel::IterationRate(rate),
    };
    let rate_path = args.output.join("iteration-rate.elm");
    rate_file.save(&rate_path)?;
    println!("\nwrote {} and {}", gbt_path.display(), rate_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("Llama-2 (7B)"), "llama-2-7b");
        assert_eq!(slug("Palmetto Intel+A100"), "palmetto-intel-a100");
    }
}
