//! `energyllm models export-policy|eval`: a PPO actor written as ONNX, and what model files say
//! about themselves and their accuracy on a profile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use energyllm_core::Mhz;
use energyllm_models::profile::read_iteration_profile;
use energyllm_models::{Accuracy, IterationProfileRow, ModelFile, SavedModel};

use energyllm_bench::wilkins_reproduction::sci;

/// `energyllm models …`.
#[derive(Subcommand, Clone, Debug)]
pub enum ModelsCommand {
    /// Describe model files and measure their accuracy on an iteration profile.
    Eval(ModelsEvalArgs),
    /// Export a PPO policy's actor network to ONNX, for serving with `ppo:checkpoint=FILE.onnx`
    /// or from other runtimes (feature `onnx`).
    ExportPolicy(ExportPolicyArgs),
}

/// Arguments of `models export-policy`.
#[derive(Args, Clone, Debug)]
pub struct ExportPolicyArgs {
    /// A checkpoint file (JSON, from `cargo xtask train`). Default: the shipped default.
    #[arg(long, value_name = "FILE", conflicts_with = "variant")]
    pub checkpoint: Option<PathBuf>,
    /// One of the shipped ablation variants instead (paper-features, no-energy, …).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `models eval`.
#[derive(Args, Clone, Debug)]
pub struct ModelsEvalArgs {
    /// Model files, or directories whose *.elm files to read.
    #[arg(long = "models", required = true, num_args = 1..)]
    pub models: Vec<PathBuf>,
    /// Iteration-level profile to evaluate tree models on (e.g. one sampled with another seed).
    #[arg(long)]
    pub profile: Option<PathBuf>,
}

/// Runs `models …`.
pub fn run_models(cmd: &ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::Eval(args) => run_models_eval(args),
        ModelsCommand::ExportPolicy(args) => run_export_policy(args),
    }
}

fn run_export_policy(args: &ExportPolicyArgs) -> anyhow::Result<()> {
    use energyllm_policy::agent::VARIANTS;
    use energyllm_policy::Checkpoint;
    let checkpoint = match (&args.checkpoint, &args.variant) {
        (Some(path), _) => Checkpoint::load(path)?,
        (None, Some(v)) => {
            let Some((_, text)) = VARIANTS.iter().find(|(n, _)| n == v) else {
                let known: Vec<&str> = VARIANTS.iter().map(|(n, _)| *n).collect();
                bail!("unknown variant `{v}`; shipped variants: {}", known.join(", "));
            };
            Checkpoint::parse(text, v)?
        }
        (None, None) => Checkpoint::default_checkpoint()?,
    };
    export_onnx(&checkpoint, &args.out)
}

#[cfg(feature = "onnx")]
fn export_onnx(checkpoint: &energyllm_policy::Checkpoint, out: &Path) -> anyhow::Result<()> {
    energyllm_policy::onnx::export(checkpoint, out)?;
    println!(
        "wrote {} (input `observation` [1, {}], output `logits` [1, {}], {} features; serve it with \
         --policy ppo:checkpoint={})",
        out.display(),
        checkpoint.actor.input_dim(),
        checkpoint.actor.output_dim(),
        checkpoint.spec.features.label(),
        out.display()
    );
    Ok(())
}

#[cfg(not(feature = "onnx"))]
fn export_onnx(_: &energyllm_policy::Checkpoint, _: &Path) -> anyhow::Result<()> {
    bail!("exporting to ONNX needs the `onnx` feature: cargo run -p energyllm-cli --features onnx -- models export-policy …")
}

fn model_paths(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "elm"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!(
            "no model files (*.elm) found in {}",
            inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(out)
}

fn run_models_eval(args: &ModelsEvalArgs) -> anyhow::Result<()> {
    let rows = args.profile.as_deref().map(read_iteration_profile).transpose()?;
    let mut described = String::from("| file | family | features (units) | training rows | training source | stored metrics |\n|---|---|---|---|---|---|\n");
    let mut accuracy =
        String::from("| file | target | rows | R² | MAPE | RMSE |\n|---|---|---|---|---|---|\n");
    for path in model_paths(&args.models)? {
        let file = ModelFile::load(&path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let m = &file.meta;
        let features: Vec<String> = m.features.iter().map(|q| format!("{} ({})", q.name, q.unit)).collect();
        let metrics: Vec<String> =
            m.training.metrics.iter().map(|x| format!("{}.{}={}", x.target, x.name, sci(x.value))).collect();
        let _ = writeln!(
            described,
            "| {name} | {} | {} | {} | {} | {} |",
            m.family,
            features.join(", "),
            m.training.rows,
            m.training.source,
            metrics.join(" ")
        );
        let Some(rows) = &rows else { continue };
        let add = |out: &mut String, target: &str, observed: Vec<f64>, predicted: Vec<f64>| {
            let a = Accuracy::of(&observed, &predicted);
            let _ = writeln!(
                out,
                "| {name} | {target} | {} | {:.4} | {:.2} % | {} |",
                a.n,
                a.r2,
                a.mape * 100.0,
                sci(a.rmse)
            );
        };
        match &file.model {
            SavedModel::Gbt(g) => {
                let x: Vec<[f64; 5]> = rows.iter().map(IterationProfileRow::features).collect();
                let observed = rows.iter().map(|r| r.latency_s).collect();
                add(&mut accuracy, "latency_s", observed, x.iter().map(|f| g.latency.predict(f)).collect());
                let observed = rows.iter().map(|r| r.power_w).collect();
                add(&mut accuracy, "power_w", observed, x.iter().map(|f| g.power.predict(f)).collect());
            }
            SavedModel::IterationRate(r) => {
                let decode: Vec<&IterationProfileRow> =
                    rows.iter().filter(|r| r.prefill_tokens == 0).collect();
                add(
                    &mut accuracy,
                    "iterations_per_s (decode rows)",
                    decode.iter().map(|d| 1.0 / d.latency_s).collect(),
                    decode
                        .iter()
                        .map(|d| r.iterations_per_s(Mhz(d.freq_mhz), d.batch_size, d.kv_tokens))
                        .collect(),
                );
            }
            SavedModel::Wilkins(_) => {
                let _ = writeln!(accuracy, "| {name} | — | — | not evaluated on an iteration profile (see its stored fit statistics) | | |");
            }
        }
    }
    println!("{described}");
    if let Some(p) = &args.profile {
        println!("Accuracy on {}:\n\n{accuracy}", p.display());
    }
    Ok(())
}
