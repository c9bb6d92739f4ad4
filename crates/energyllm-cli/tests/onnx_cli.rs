//! `energyllm models export-policy` and serving the exported file (feature `onnx`): the ONNX
//! policy, run by tract, decides as the checkpoint it came from on the same seeded runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::process::Command;

use energyllm_core::RunSummary;

fn energyllm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_energyllm"))
}

#[test]
fn an_exported_policy_serves_like_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("ppo.onnx");
    let out = energyllm().args(["models", "export-policy", "--out"]).arg(&onnx).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[1, 105]"));

    let results = dir.path().join("eval");
    let out = energyllm()
        .args(["eval", "--policy", "ppo", "--policy"])
        .arg(format!("ppo:checkpoint={}", onnx.display()))
        .args([
            "--arrival-rate",
            "1.0",
            "--duration",
            "120",
            "--runs",
            "2",
            "--seed",
            "3",
            "--quiet",
            "--out",
        ])
        .arg(&results)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Vec<RunSummary> =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap()).unwrap();
    let (native, exported) = (&summary[0], &summary[1]);
    assert!(exported.method.ends_with("ppo.onnx"), "{}", exported.method);
    assert!(native.decisions > 100, "{native:?}");
    // Same decisions, so the same runs (f32 sums in another order could flip a rare near-tie).
    assert!(
        (native.energy_per_request_j - exported.energy_per_request_j).abs()
            < 0.01 * native.energy_per_request_j
    );
    assert!((native.slo_attainment_pct - exported.slo_attainment_pct).abs() < 1.0);
    assert_eq!(native.shield_overrides > 0, exported.shield_overrides > 0);

    let out = energyllm()
        .args(["models", "export-policy", "--variant", "nope", "--out"])
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shipped variants: paper-features"));
}
