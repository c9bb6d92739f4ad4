//! The `energyllm` program end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::process::Command;

use energyllm_core::RunSummary;

fn energyllm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_energyllm"))
}

#[test]
fn eval_writes_results_that_parse_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = energyllm()
        .args(["eval", "--policy", "static-high", "--policy", "fixed:freq=1200,batch=16"])
        .args([
            "--arrival-rate",
            "0.8",
            "--duration",
            "20",
            "--slo-e2e",
            "11",
            "--runs",
            "2",
            "--seed",
            "0",
            "--quiet",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout
        .contains("| Method | Efficiency↑ | SLO(%)↑ | Energy(J)↓ | Latency(s)↓ | P99(s)↓ | Throughput↑"));

    let summary: Vec<RunSummary> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary.iter().map(|s| s.method.as_str()).collect::<Vec<_>>(),
        ["static-high", "fixed:freq=1200,batch=16"]
    );
    assert!(summary.iter().all(|s| s.runs == 2 && s.requests > 0 && s.energy_per_request_j > 0.0));

    let runs = std::fs::read_to_string(dir.path().join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 1 + 4);
    assert!(runs.starts_with("run,seed,method,efficiency,slo_attainment_pct"));
    let requests = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
    let jsonl = std::fs::read_to_string(dir.path().join("requests.jsonl")).unwrap();
    let total: u64 = summary.iter().map(|s| s.requests).sum();
    assert_eq!(requests.lines().count() as u64, 1 + total);
    assert_eq!(jsonl.lines().count() as u64, total);
}

#[test]
fn an_unknown_policy_lists_the_known_ones() {
    let out = energyllm().args(["eval", "--policy", "magic", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown policy `magic`") && err.contains("static-high"), "{err}");
}

#[test]
fn a_bad_dataset_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lens.jsonl");
    std::fs::write(&path, "{\"input_len\": 10, \"output_len\": 5}\n{\"input_len\": 10}\n").unwrap();
    let out = energyllm().args(["eval", "--quiet", "--dataset"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lens.jsonl:2: missing field `output_len`"), "{err}");
}

#[test]
fn list_shows_every_installed_plugin() {
    let out = energyllm().arg("list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["static-high", "fixed", "sim"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(name)), "`{name}` missing from:\n{text}");
    }
    assert!(text.contains("policy:") && text.contains("actuator:") && text.contains("engine:"));
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = energyllm().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_load_table_states_capacity_and_both_bars_at_the_tables_own_target() {
    let (ok, stdout, err) = run(&[
        "eval",
        "--quiet",
        "--runs",
        "1",
        "--duration",
        "30",
        "--load",
        "0.5",
        "--slo-target",
        "95",
        "--policy",
        "vllm-default",
        "--policy",
        "best-static",
        "--policy",
        "throttllem",
    ]);
    assert!(ok, "{stdout}{err}");
    assert!(stdout.contains("Capacity: vllm-default reaches 95% up to"), "{stdout}");
    assert!(stdout.contains("SLO TTFT ≤ 2 s, TPOT ≤ 0.1 s (target 95% of requests)"), "{stdout}");
    // best-static searched for the table's target, not its own default of 99%.
    assert!(stdout.contains("best-static (") && stdout.contains("; ≥ 95%)"), "{stdout}");
    assert!(stdout.contains("against vllm-default"), "{stdout}");
}

#[test]
fn flags_that_would_be_ignored_are_refused_by_name() {
    for (args, needle) in [
        (
            &["eval", "--table", "record", "--gpu", "h100"][..],
            "--gpu does not apply to the evaluation of record",
        ),
        (
            &["eval", "--table", "paper", "--slo-ttft", "2", "--slo-tpot", "0.1"][..],
            "--slo-ttft does not apply",
        ),
        (&["eval", "--slo-tpot", "0.05"][..], "give --slo-ttft and --slo-tpot together"),
        (&["eval", "--load", "0.5", "--rate-scale", "2"][..], "--time-scale and --rate-scale do not apply"),
        (&["eval", "--load", "50"][..], "share of capacity"),
        (&["eval", "--policy", "throttllem:batch=100"][..], "batch=100 is not a cap of the action space"),
        (&["eval", "--policy", "fixed:freq=1410,batch=512"][..], "batch=512 is not a cap"),
    ] {
        let (ok, stdout, err) = run(args);
        assert!(!ok, "{args:?} should fail: {stdout}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
