//! The reproduction of Wilkins et al.'s workload energy models on their published measurements
//! (`energyllm fit wilkins`): the energy-inference CSVs read, grouped per (model, system), fitted
//! with `e = a0·tin + a1·tout + a2·tin·tout`, and tabulated beside the paper's R².
//!
//! This reproduces the paper's fit on the paper's data; it is not a planning model for a serving
//! stack (those data vary input and output separately at batch 32 under HuggingFace
//! transformers, so the bilinear fit extrapolates poorly to real queries).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use energyllm_models::{OlsFit, WilkinsModel, WilkinsParams, WilkinsSample};

use crate::Error;

/// The R² range Wilkins et al. published for their energy model (Falcon 7B/40B, Llama-2
/// 7B/13B/70B, Mistral 7B, Mixtral 8x7B). The paper does not say which rows it fitted.
pub const PAPER_R2: (f64, f64) = (0.964, 0.980);

/// Which rows of the energy-inference data a Wilkins fit uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WilkinsSubset {
    /// Every inference row, warm-up included.
    All,
    /// Rows with iteration ≥ 1 (the first run of each prompt includes CUDA warm-up).
    Warm,
    /// The mean over iterations ≥ 1 of each (sweep, input, output) point.
    Mean,
}

impl WilkinsSubset {
    /// Every subset, in the order the command line lists them.
    pub const ALL: [WilkinsSubset; 3] = [WilkinsSubset::All, WilkinsSubset::Warm, WilkinsSubset::Mean];

    /// The subset's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WilkinsSubset::All => "all",
            WilkinsSubset::Warm => "warm",
            WilkinsSubset::Mean => "mean",
        }
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
pub fn read_energy_inference_csv(path: &Path) -> Result<Vec<EnergyInferenceRow>, Error> {
    let data_err = |reason: String| Error::Data { name: path.display().to_string(), reason };
    let mut reader = csv::Reader::from_path(path).map_err(|e| data_err(format!("cannot open: {e}")))?;
    let headers = reader.headers().map_err(|e| data_err(format!("reading the header: {e}")))?.clone();
    let col = |names: &[&str]| -> Result<usize, Error> {
        names
            .iter()
            .find_map(|n| headers.iter().position(|h| h.trim() == *n))
            .ok_or_else(|| data_err(format!("no column {}", names.join(" or "))))
    };
    let (phase, runtime, energy) = (col(&["Phase"])?, col(&["Runtime (s)"])?, col(&["GPU Energy (J)"])?);
    let tout = col(&["Number of Output Tokens", "Output Token Limit"])?;
    let (tin, iteration, model) = (col(&["Number of Input Tokens"])?, col(&["Iteration"])?, col(&["Model"])?);
    let (system, batch) = (col(&["System"])?, col(&["Batch Size"])?);
    let sweep = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| data_err(format!("malformed CSV: {e}")))?;
        let line = rec.position().map_or(0, |p| p.line());
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        if !field(phase).contains("inference") {
            continue;
        }
        let num = |i: usize| -> Result<f64, Error> {
            field(i).parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                Error::DataLine {
                    path: path.to_owned(),
                    line: line as usize,
                    reason: format!("column `{}`: `{}` is not a number ≥ 0", &headers[i], field(i)),
                }
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
pub fn sci(v: f64) -> String {
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
pub type WilkinsFits = Vec<((String, String), Result<WilkinsModel, energyllm_models::Error>)>;

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
        let fit = params.fit(&samples, batch);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

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
}
