//! `energyllm profile`, `fit gbt`, `models eval` and `fit wilkins` end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::path::Path;
use std::process::{Command, Output};

use energyllm_models::profile::{read_batch_profile, read_iteration_profile};
use energyllm_models::{ModelFile, SavedModel};

fn energyllm(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_energyllm")).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn profile_fit_and_eval_tree_models() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, models) =
        (dir.path().join("it.csv"), dir.path().join("test.csv"), dir.path().join("models"));
    energyllm(&[
        "profile",
        "--level",
        "iteration",
        "--samples",
        "3000",
        "--seed",
        "1",
        "--output",
        path(&train),
    ]);
    energyllm(&[
        "profile",
        "--level",
        "iteration",
        "--samples",
        "500",
        "--seed",
        "2",
        "--output",
        path(&test),
    ]);
    assert_eq!(read_iteration_profile(&train).unwrap().len(), 3000);
    let out =
        energyllm(&["fit", "gbt", "--profile", path(&train), "--output", path(&models), "--folds", "3"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("| latency_s | 3000 | 3 |") && table.contains("| power_w | 3000 | 3 |"),
        "{table}"
    );
    let gbt = ModelFile::load(&models.join("gbt.elm")).unwrap();
    assert!(matches!(gbt.model, SavedModel::Gbt(_)));
    assert_eq!(gbt.meta.training.rows, 3000);
    assert_eq!(gbt.meta.features.len(), 5);
    let cv_r2 =
        gbt.meta.training.metrics.iter().find(|m| m.target == "latency_s" && m.name == "cv_r2").unwrap();
    assert!(cv_r2.value > 0.98, "{cv_r2:?}");
    assert!(matches!(
        ModelFile::load(&models.join("iteration-rate.elm")).unwrap().model,
        SavedModel::IterationRate(_)
    ));
    let out = energyllm(&["models", "eval", "--models", path(&models), "--profile", path(&test)]);
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(
        report.contains("| gbt.elm | latency_s | 500 |") && report.contains("iteration-rate.elm"),
        "{report}"
    );
    // The fitted trees in place of the simulator's own model: the look-ahead baselines run on
    // them, and the table says so.
    let spec = format!("gbt:path={}", path(&models.join("gbt.elm")));
    let out = energyllm(&[
        "eval",
        "--quiet",
        "--runs",
        "1",
        "--duration",
        "20",
        "--arrival-rate",
        "2",
        "--policy",
        "throttllem",
        "--policy",
        "vllm-default",
        "--perf-model",
        &spec,
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains(&format!("consult `{spec}` (fitted")), "{table}");
    let bad = Command::new(env!("CARGO_BIN_EXE_energyllm"))
        .args(["eval", "--perf-model", "gbt:path=/nonexistent.elm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--perf-model") && err.contains("nonexistent"), "{err}");
}

#[test]
fn batch_profile_goes_through_the_traits_and_keeps_energyllm_columns() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("profile.csv");
    energyllm(&[
        "profile",
        "--freqs",
        "810,1410",
        "--batch-sizes",
        "1,4",
        "--token-configs",
        "64x16",
        "--repeats",
        "1",
        "--quiet",
        "--output",
        path(&csv),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with(
        "freq_mhz,batch_size,avg_input_len,avg_output_len,total_latency_sec,avg_gpu_power_watts,energy_j,"
    ));
    let rows = read_batch_profile(&csv).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.engine == "sim" && r.actuator == "sim" && r.energy_j > 0.0));
    let bad = Command::new(env!("CARGO_BIN_EXE_energyllm"))
        .args(["profile", "--freqs", "811", "--output", path(&csv)])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("811"));
}

#[test]
fn fit_wilkins_prints_the_paper_layout_and_writes_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let header =
        "Phase,Runtime (s),CPU Energy (J),GPU Energy (J),Number of Output Tokens,Number of Input Tokens,\
                  Iteration,Model,Number of GPUs,Prompt,Total Number of Tokens,Batch Size,System\n";
    for (name, points) in [
        ("all-input-stats.csv", [(8, 32), (64, 32), (512, 32)]),
        ("all-output-stats.csv", [(32, 8), (32, 128), (32, 1024)]),
    ] {
        let mut text = header.to_owned();
        for (i, (tin, tout)) in points.iter().enumerate() {
            for it in 0..2 {
                let e = 2.0 * f64::from(*tin)
                    + 3.0 * f64::from(*tout)
                    + 0.05 * f64::from(tin * tout)
                    + (i + it) as f64;
                text.push_str(&format!(
                    "start-inference-{i}-{it},{},1,{e},{tout},{tin},{it},Tiny (1B),1,p,0,32,Box\n",
                    e / 50.0
                ));
            }
        }
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out_dir = dir.path().join("out");
    let out = energyllm(&[
        "fit",
        "wilkins",
        "--data",
        path(dir.path()),
        "--subset",
        "all",
        "--output",
        path(&out_dir),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("| model | system | R² (uncentered) | R² (centered) | F-statistic | p-value |"),
        "{text}"
    );
    assert!(text.contains("| Tiny (1B) | Box |"), "{text}");
    let file = ModelFile::load(&out_dir.join("wilkins-tiny-1b-box.elm")).unwrap();
    let SavedModel::Wilkins(m) = file.model else { panic!("not a Wilkins model") };
    assert_eq!(m.energy.n, 12);
    assert!((m.energy.coefficients[2] - 0.05).abs() < 0.01, "{:?}", m.energy.coefficients);
}
