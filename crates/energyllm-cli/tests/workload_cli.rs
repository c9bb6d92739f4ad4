//! `energyllm dataset …` and `energyllm eval --trace` end to end, on fixture files written here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::process::{Command, Output};

fn energyllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_energyllm")).args(args).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn process_then_stats_then_eval() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("sharegpt.json");
    std::fs::write(
        &raw,
        r#"[{"id": "a", "conversations": [{"from": "human", "value": "hello world"}, {"from": "gpt", "value": "tiktoken is great!"}]},
            {"id": "b", "conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hello world"}]},
            {"id": "c", "conversations": [{"from": "human", "value": 7}]},
            {"id": "d", "conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hello"}]}]"#,
    )
    .unwrap();
    let out_path = dir.path().join("processed.jsonl");
    let (input, output) = (raw.to_str().unwrap(), out_path.to_str().unwrap());

    let strict =
        energyllm(&["dataset", "process", "--format", "sharegpt", "--input", input, "--output", output]);
    assert_eq!(strict.status.code(), Some(2));
    let (_, err) = text(&strict);
    assert!(
        err.contains("sharegpt.json:3: conversation #3: `conversations[0].value` must be a string"),
        "{err}"
    );

    let ok = energyllm(&[
        "dataset",
        "process",
        "--format",
        "sharegpt",
        "--input",
        input,
        "--output",
        output,
        "--skip-invalid",
        "--with-id",
        "--arrival-rate",
        "2",
    ]);
    let (stdout, err) = text(&ok);
    assert!(ok.status.success(), "{stdout}{err}");
    assert!(
        stdout.contains("3 requests written") && stdout.contains("1 invalid records skipped"),
        "{stdout}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!((lines[0]["input_len"].as_u64(), lines[0]["output_len"].as_u64()), (Some(2), Some(6)));
    assert_eq!(lines[1]["id"], "b:1");

    let svg = dir.path().join("h.svg");
    let stats = energyllm(&["dataset", "stats", output, "--svg", svg.to_str().unwrap()]);
    let (stdout, err) = text(&stats);
    assert!(stats.status.success(), "{stdout}{err}");
    assert!(
        stdout.contains("(energyllm format): 3 requests")
            && stdout.contains("burstiness (CV of gaps)")
            && !stdout.contains("n/a"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    // The processed file has arrival times, so it replays as a trace.
    let eval = energyllm(&["eval", "--quiet", "--runs", "1", "--policy", "static-high", "--trace", output]);
    let (stdout, err) = text(&eval);
    assert!(eval.status.success(), "{stdout}{err}");
    assert!(stdout.contains("replay of") && stdout.contains("3 requests"), "{stdout}");
}

#[test]
fn eval_replays_a_bundled_trace_and_draws_bursty_arrivals() {
    let replay = energyllm(&[
        "eval",
        "--quiet",
        "--runs",
        "1",
        "--policy",
        "static-high",
        "--trace",
        "mooncake-synthetic",
        "--trace-window",
        "30",
        "--rate-scale",
        "0.5",
    ]);
    let (stdout, err) = text(&replay);
    assert!(replay.status.success(), "{stdout}{err}");
    assert!(
        stdout.contains("replay of mooncake-synthetic (bundled)") && stdout.contains("rate × 0.5"),
        "{stdout}"
    );

    let gamma = energyllm(&["eval", "--quiet", "--runs", "1", "--duration", "20", "--arrival", "gamma:cv=3"]);
    let (stdout, err) = text(&gamma);
    assert!(gamma.status.success(), "{stdout}{err}");
    assert!(stdout.contains("gamma:cv=3 arrivals"), "{stdout}");

    let bad = energyllm(&["eval", "--quiet", "--arrival", "weibull"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).1.contains("unknown arrival process `weibull`"));
}

#[test]
fn a_non_monotone_trace_is_named_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure.csv");
    std::fs::write(
        &path,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:45.00,10,2\n\
         2023-11-16 18:15:50.99,396,109\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = energyllm(&["eval", "--quiet", "--runs", "1", "--policy", "static-high", "--trace", p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("azure.csv:3: arrival time goes back"), "{}", text(&out).1);
    let out = energyllm(&[
        "eval",
        "--quiet",
        "--runs",
        "1",
        "--policy",
        "static-high",
        "--trace",
        p,
        "--skip-invalid",
    ]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{stdout}{err}");
    assert!(err.contains("skipped 1 invalid line"), "{err}");
}

#[test]
fn dataset_list_and_stats_of_bundled_names() {
    let out = energyllm(&["dataset", "list"]);
    let (stdout, _) = text(&out);
    for name in [
        "sharegpt-like",
        "wildchat-like",
        "mooncake-conversation",
        "mooncake-synthetic",
        "arxiv-summarization",
    ] {
        assert!(stdout.contains(name), "{stdout}");
    }
    let out = energyllm(&["dataset", "stats", "mooncake-conversation", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 3658);
    assert!(v["arrivals"]["gap_cv"].as_f64().unwrap() > 1.0);
}

#[test]
fn a_failed_process_leaves_no_output_and_says_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("bad.json"), dir.path().join("out.jsonl"));
    std::fs::write(
        &input,
        r#"[{"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}, {"id": 5}"#,
    )
    .unwrap();
    for skip in [false, true] {
        let mut args = vec!["dataset", "process", "--format", "sharegpt"];
        args.extend(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
        if skip {
            args.push("--skip-invalid");
        }
        let out = energyllm(&args);
        let (_, err) = text(&out);
        assert!(!out.status.success(), "{err}");
        assert!(!output.exists(), "a failed run leaves no {} (skip-invalid {skip})", output.display());
        assert!(!dir.path().join("out.jsonl.partial").exists());
    }
    let missing = energyllm(
        &["dataset", "process", "--format", "sharegpt", "--input", "/nonexistent/raw.json"]
            .into_iter()
            .chain(["--output", output.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let (_, err) = text(&missing);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
