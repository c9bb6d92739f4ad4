//! `energyllm fit wilkins|gbt`.
//!
//! - `fit wilkins` fits Wilkins et al.'s bilinear model per (model, system) on the
//!   energy-inference CSVs and prints the paper's table layout beside the paper's R².
//! - `fit gbt` cross-validates and fits the latency and power trees and the iteration-rate
//!   predictor on an iteration profile, and writes model files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};

use energyllm_models::file::{created_by, Metric};
use energyllm_models::profile::{iteration_dataset, read_iteration_profile};
use energyllm_models::{
    cross_validate, CvReport, GbtPerfParams, IterationRateParams, IterationTarget, ModelFile, ModelMeta,
    OlsFit, Quantity, SavedModel, TrainingSummary, WilkinsParams, WilkinsSample,
};

/// The R² range Wilkins et al. published for their energy model (Falcon 7B/40B, Llama-2
/// 7B/13B/70B, Mistral 7B, Mixtral 8x7B). The paper does not say which rows it fitted.
pub const PAPER_R2: (f64, f64) = (0.964, 0.980);

/// `energyllm fit …`.
#[derive(Subcommand, Clone, Debug)]
pub enum FitCommand {
    /// Wilkins et al.'s e = a0·tin + a1·tout + a2·tin·tout per (model, system) on the
    /// energy-inference CSVs.
    Wilkins(FitWilkinsArgs),
    /// Gradient-boosted trees for iteration latency and power, and the iteration-rate predictor.
    Gbt(FitGbtArgs),
}

/// Which rows of the energy-inference data a Wilkins fit uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum WilkinsSubset {
    /// Every inference row, warm-up included.
    All,
    /// Rows with iteration ≥ 1 (the first run of each prompt includes CUDA warm-up).
    Warm,
    /// The mean over iterations ≥ 1 of each (sweep, input, output) point.
    Mean,
}

/// Arguments of `fit wilkins`.
#[derive(Args, Clone, Debug)]
pub struct FitWilkinsArgs {
    /// Directory holding all-{input,output}[-scale]-stats.csv from github.com/grantwilkins/energy-inference.
    #[arg(long)]
    pub data: PathBuf,
    /// Rows to fit on. Default: all three, one table each.
    #[arg(long, value_enum)]
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
    }
}

/// One inference row of the energy-inference data.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyInferenceRow {
    /// File stem the row came from (one sweep).
    pub sweep: String,
    /// `Model` column.
    pub model: String,
    /// `System` column.
    pub system: String,
    /// `Number of Input Tokens`.
    pub input_tokens: f64,
    /// `Number of Output Tokens` (or `Output Token Limit` in the input sweeps).
    pub output_tokens: f64,
    /// `Iteration`.
    pub iteration: u32,
    /// `GPU Energy (J)`.
    pub gpu_energy_j: f64,
    /// `Runtime (s)`.
    pub runtime_s: f64,
    /// `Batch Size`.
    pub batch_size: u32,
}

/// The sweep files `fit wilkins` reads, those present.
pub const ENERGY_INFERENCE_FILES: [&str; 4] = [
    "all-input-stats.csv",
    "all-output-stats.csv",
    "all-input-scale-stats.csv",
    "all-output-scale-stats.csv",
];

/// The data names one machine two ways: the 7B sweeps and the scale input sweeps say
/// `Swing AMD+A100`, the scale output sweeps `argonne-swing` (Swing is Argonne's A100 cluster).
/// Without merging them each scale model has only one sweep per system and cannot be fitted.
pub fn canonical_system(system: &str) -> String {
    if system.eq_ignore_ascii_case("argonne-swing") {
        "Swing AMD+A100".to_owned()
    } else {
        system.to_owned()
    }
}

/// Reads the inference rows (Phase containing "inference") of one energy-inference CSV; bad
/// rows are errors naming file, line and column.
pub fn read_energy_inference_csv(path: &Path) -> anyhow::Result<Vec<EnergyInferenceRow>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers =
        reader.headers().with_context(|| format!("{}: reading the header", path.display()))?.clone();
    let col = |names: &[&str]| -> anyhow::Result<usize> {
        names
            .iter()
            .find_map(|n| headers.iter().position(|h| h.trim() == *n))
            .with_context(|| format!("{}: no column {}", path.display(), names.join(" or ")))
    };
    let (phase, runtime, energy) = (col(&["Phase"])?, col(&["Runtime (s)"])?, col(&["GPU Energy (J)"])?);
    let tout = col(&["Number of Output Tokens", "Output Token Limit"])?;
    let (tin, iteration, model) = (col(&["Number of Input Tokens"])?, col(&["Iteration"])?, col(&["Model"])?);
    let (system, batch) = (col(&["System"])?, col(&["Batch Size"])?);
    let sweep = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        if !field(phase).contains("inference") {
            continue;
        }
        let num = |i: usize| -> anyhow::Result<f64> {
            field(i).parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).with_context(|| {
                format!(
                    "{}:{line}: column `{}`: `{}` is not a number ≥ 0",
                    path.display(),
                    &headers[i],
                    field(i)
                )
            })
        };
        rows.push(EnergyInferenceRow {
            sweep: sweep.clone(),
            model: field(model).to_owned(),
            system: canonical_system(field(system)),
            input_tokens: num(tin)?,
            output_tokens: num(tout)?,
            iteration: num(iteration)? as u32,
            gpu_energy_j: num(energy)?,
            runtime_s: num(runtime)?,
            batch_size: num(batch)? as u32,
        });
    }
    Ok(rows)
}

/// The samples of one (model, system) group for a subset.
pub fn wilkins_samples(rows: &[&EnergyInferenceRow], subset: WilkinsSubset) -> Vec<WilkinsSample> {
    let sample = |r: &EnergyInferenceRow| WilkinsSample {
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        energy_j: r.gpu_energy_j,
        runtime_s: r.runtime_s,
    };
    match subset {
        WilkinsSubset::All => rows.iter().map(|r| sample(r)).collect(),
        WilkinsSubset::Warm => rows.iter().filter(|r| r.iteration > 0).map(|r| sample(r)).collect(),
        WilkinsSubset::Mean => {
            // Keyed by sweep and token counts (as bits: exact equality is what groups them).
            let mut groups: BTreeMap<(String, u64, u64), (WilkinsSample, u32)> = BTreeMap::new();
            for r in rows.iter().filter(|r| r.iteration > 0) {
                let key = (r.sweep.clone(), r.input_tokens.to_bits(), r.output_tokens.to_bits());
                let e = groups
                    .entry(key)
                    .or_insert((WilkinsSample { energy_j: 0.0, runtime_s: 0.0, ..sample(r) }, 0));
                e.0.energy_j += r.gpu_energy_j;
                e.0.runtime_s += r.runtime_s;
                e.1 += 1;
            }
            groups
                .into_values()
                .map(|(s, n)| WilkinsSample {
                    energy_j: s.energy_j / f64::from(n),
                    runtime_s: s.runtime_s / f64::from(n),
                    ..s
                })
                .collect()
        }
    }
}

/// A number in the tables: plain when it reads well, scientific otherwise.
pub(crate) fn sci(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e-3 && v.abs() < 1e5 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

fn p_value(p: f64) -> String {
    if p < 1e-300 {
        "<1e-300".into()
    } else {
        format!("{p:.2e}")
    }
}

fn ols_row(out: &mut String, model: &str, system: &str, fit: &OlsFit) {
    let c = &fit.coefficients;
    let _ = writeln!(
        out,
        "| {model} | {system} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {:.3}–{:.3} |",
        fit.r2_uncentered,
        fit.r2_centered,
        sci(fit.f_statistic),
        p_value(fit.f_p_value),
        sci(c[0]),
        sci(c[1]),
        sci(c[2]),
        fit.n,
        PAPER_R2.0,
        PAPER_R2.1
    );
}

/// Each (model, system) with its fit, or why it could not be fitted.
pub type WilkinsFits = Vec<((String, String), anyhow::Result<energyllm_models::WilkinsModel>)>;

/// The tables `fit wilkins` prints for one subset, and the fitted models by (model, system).
pub fn wilkins_tables(rows: &[EnergyInferenceRow], subset: WilkinsSubset) -> (String, WilkinsFits) {
    let mut groups: BTreeMap<(String, String), Vec<&EnergyInferenceRow>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.model.clone(), r.system.clone())).or_default().push(r);
    }
    let mut fits = Vec::new();
    for ((model, system), rs) in &groups {
        let samples = wilkins_samples(rs, subset);
        let batch = rs.first().map_or(1, |r| r.batch_size.max(1));
        let params = WilkinsParams { label: format!("{model} on {system}") };
        let fit = params.fit(&samples, batch).map_err(anyhow::Error::from);
        fits.push(((model.clone(), system.clone()), fit));
    }
    let header = "| model | system | R² (uncentered) | R² (centered) | F-statistic | p-value | a0 (tin) | a1 (tout) | a2 (tin·tout) | n | paper R² |\n\
                  |---|---|---|---|---|---|---|---|---|---|---|\n";
    let mut out = String::new();
    for (title, energy) in [("Energy (GPU, J)", true), ("Runtime (s)", false)] {
        let _ = write!(out, "\n{title}, subset `{}`:\n\n{header}", format!("{subset:?}").to_lowercase());
        for ((model, system), fit) in &fits {
            match fit {
                Ok(m) => ols_row(&mut out, model, system, if energy { &m.energy } else { &m.runtime }),
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "| {model} | {system} | — | — | — | — | — | — | — | — | not fitted: {e} |"
                    );
                }
            }
        }
    }
    (out, fits)
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
        "Wilkins et al. model e = a0·tin + a1·tout + a2·tin·tout (no intercept), one fit per (model, system), \
         {} inference rows from {}.",
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

    const HEADER: &str =
        "Phase,Runtime (s),CPU Energy (J),GPU Energy (J),Number of Output Tokens,Number of Input Tokens,\
                          Iteration,Model,Number of GPUs,Prompt,Total Number of Tokens,Batch Size,System\n";

    /// A synthetic sweep in the energy-inference layout: e = 2·tin + 3·tout + 0.05·tin·tout
    /// (+10 J on the warm-up iteration), runtime e/100.
    fn synthetic_csv(dir: &Path, name: &str, points: &[(u32, u32)], system: &str) -> PathBuf {
        let mut text = String::from(HEADER);
        text.push_str("model load,30,1,500,32,0,0,M (7B),1,startup,0,32,X\n");
        for &(tin, tout) in points {
            for it in 0..3 {
                let e = 2.0 * f64::from(tin)
                    + 3.0 * f64::from(tout)
                    + 0.05 * f64::from(tin * tout)
                    + if it == 0 { 10.0 } else { 0.0 };
                // A prompt with a comma and a newline inside quotes, as the real files have.
                text.push_str(&format!(
                    "start-inference-{tin}-{it},{},1,{e},{tout},{tin},{it},M (7B),1,\"int main() {{\n  return 0, 1;\n}}\",0,32,{system}\n",
                    e / 100.0
                ));
            }
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_merges_and_fits_the_energy_inference_layout() {
        let dir = tempfile::tempdir().unwrap();
        let a = synthetic_csv(
            dir.path(),
            "all-input-stats.csv",
            &[(8, 32), (64, 32), (512, 32)],
            "Swing AMD+A100",
        );
        let b = synthetic_csv(
            dir.path(),
            "all-output-stats.csv",
            &[(32, 8), (32, 128), (32, 1024)],
            "argonne-swing",
        );
        let mut rows = read_energy_inference_csv(&a).unwrap();
        rows.extend(read_energy_inference_csv(&b).unwrap());
        assert_eq!(rows.len(), 18, "startup rows are skipped");
        assert!(rows.iter().all(|r| r.system == "Swing AMD+A100" && r.batch_size == 32));
        let group: Vec<&EnergyInferenceRow> = rows.iter().collect();
        assert_eq!(wilkins_samples(&group, WilkinsSubset::All).len(), 18);
        assert_eq!(wilkins_samples(&group, WilkinsSubset::Warm).len(), 12);
        let mean = wilkins_samples(&group, WilkinsSubset::Mean);
        assert_eq!(mean.len(), 6);
        // Without the warm-up offset the data are exact, so the fit recovers the coefficients.
        let (table, fits) = wilkins_tables(&rows, WilkinsSubset::Mean);
        let m = fits[0].1.as_ref().unwrap();
        for (got, want) in m.energy.coefficients.iter().zip([2.0, 3.0, 0.05]) {
            assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
        }
        assert!(table.contains("| M (7B) | Swing AMD+A100 | 1.000 |"), "{table}");
        assert!(table.contains("0.964–0.980"));
        // One sweep alone cannot separate the coefficients, and says so.
        let only_a = read_energy_inference_csv(&a).unwrap();
        let (table, _) = wilkins_tables(&only_a, WilkinsSubset::All);
        assert!(table.contains("not fitted") && table.contains("same output length"), "{table}");
    }

    #[test]
    fn a_bad_number_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all-input-stats.csv");
        std::fs::write(&path, format!("{HEADER}start-inference-A-0,abc,1,5,32,8,0,M,1,p,0,32,S\n")).unwrap();
        let e = format!("{:#}", read_energy_inference_csv(&path).unwrap_err());
        assert!(e.contains("all-input-stats.csv:2") && e.contains("Runtime (s)"), "{e}");
        std::fs::write(&path, "Phase,Model\nx,y\n").unwrap();
        let e = format!("{:#}", read_energy_inference_csv(&path).unwrap_err());
        assert!(e.contains("no column Runtime (s)"), "{e}");
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("Llama-2 (7B)"), "llama-2-7b");
        assert_eq!(slug("Palmetto Intel+A100"), "palmetto-intel-a100");
    }
}
