//! The whole simulated system: controller + engine + GPU under the discrete-event driver.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::collections::HashSet;

use energyllm_bench::eval::{evaluate, EvalSettings};
use energyllm_bench::report::markdown_table;
use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, BatchingMode, Mhz, PluginSpec, RunSummary};
use energyllm_sim::simulation::{simulate, SimSetup};
use energyllm_workload::{poisson_requests, LengthDataset};
use proptest::prelude::*;

fn settings(seed: u64) -> EvalSettings {
    EvalSettings {
        policies: vec![
            PluginSpec::parse("static-high").unwrap(),
            PluginSpec::parse("fixed:freq=1005,batch=16").unwrap(),
        ],
        setup: SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap(),
        dataset: LengthDataset::sharegpt_like(),
        arrival_rate_rps: 0.8,
        duration_s: 30.0,
        workload: Default::default(),
        runs: 2,
        seed,
        load: None,
        perf_model: None,
    }
}

fn summaries(seed: u64) -> Vec<RunSummary> {
    energyllm_policy::link();
    evaluate(&settings(seed), |_| {}).unwrap().into_iter().map(|m| m.summary).collect()
}

#[test]
fn the_same_seed_gives_identical_results() {
    let a = summaries(3);
    assert_eq!(a, summaries(3));
    assert_ne!(a, summaries(4));
}

#[test]
fn table_format() {
    insta::assert_snapshot!(markdown_table(&summaries(0)));
}

#[test]
fn a_lower_clock_saves_energy_on_this_memory_bound_workload() {
    let s = summaries(0);
    assert!(
        s[1].energy_per_request_j < s[0].energy_per_request_j,
        "{} vs {}",
        s[1].energy_per_request_j,
        s[0].energy_per_request_j
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_request_is_lost_or_duplicated_and_energy_covers_idle_power(
        rate in 0.2f64..6.0,
        duration in 5.0f64..40.0,
        seed in 0u64..1000,
        freq in prop::sample::select(vec![705u32, 1005, 1410]),
        batch in prop::sample::select(vec![1u32, 4, 16, 64]),
        static_mode in any::<bool>(),
        interval in prop::sample::select(vec![0.25f64, 1.0, 5.0]),
    ) {
        let mut setup = SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap();
        setup.controller.batching = if static_mode { BatchingMode::Static } else { BatchingMode::Continuous };
        setup.controller.decision_interval_s = Some(interval);
        let requests = poisson_requests(&LengthDataset::sharegpt_like(), rate, duration, seed).unwrap();
        let policy = Box::new(FixedPolicy(Action { freq: Mhz(freq), batch }));
        let run = simulate(&setup, policy, &requests, duration).unwrap();
        let ids: HashSet<_> = run.records.iter().map(|r| r.id).collect();
        prop_assert_eq!(run.records.len(), requests.len());
        prop_assert_eq!(ids.len(), requests.len());
        prop_assert!(run.totals.elapsed_s + 1e-9 >= duration, "whole-ns rounding only");
        prop_assert!(run.totals.total_energy_j + 1e-6 >= setup.gpu.idle_power_w * run.totals.elapsed_s);
        prop_assert!(run.totals.busy_energy_j <= run.totals.total_energy_j + 1e-9);
        prop_assert!(run.timeline.windows(2).all(|w| w[0].time_s <= w[1].time_s));
        prop_assert!(run.records.iter().all(|r| r.dispatch_s >= r.arrival_s && r.completion_s <= run.totals.elapsed_s + 1e-9));
        if static_mode {
            prop_assert!(run.controller.dispatched == requests.len() as u64);
        }
    }
}

#[test]
fn report_formats() {
    energyllm_policy::link();
    let mut s = settings(0);
    s.runs = 3;
    s.policies.push(PluginSpec::parse("clairvoyant:window_s=15").unwrap());
    let results = evaluate(&s, |_| {}).unwrap();
    let text = format!(
        "{}\n{}",
        energyllm_bench::report::markdown_table_ci(&results),
        energyllm_bench::report::headline(&results)
    );
    insta::assert_snapshot!("table_with_ci_and_headline", text);
    insta::assert_snapshot!("pareto_svg", energyllm_bench::plots::pareto_svg(&results));
    insta::assert_snapshot!("energy_svg", energyllm_bench::plots::energy_bars_svg(&results));
    let dir = tempfile::tempdir().unwrap();
    energyllm_bench::report::write_outputs(dir.path(), &s, &results, &text).unwrap();
    let header =
        |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap().lines().next().unwrap().to_owned();
    insta::assert_snapshot!(
        "csv_headers",
        format!("{}\n{}\n{}", header("summary.csv"), header("runs.csv"), header("requests.csv"))
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["seed"], 0);
    assert_eq!(meta["run_seeds"], serde_json::json!([0, 1, 2]));
    assert!(meta["git_revision"].as_str().is_some());
    // One timeline per method, named after it.
    for m in &results {
        let file = energyllm_bench::report::timeline_file(&m.summary.method);
        assert!(dir.path().join(&file).is_file(), "{file}");
    }
}

#[test]
fn the_clairvoyant_reference_is_not_beaten_at_equal_slo_attainment_on_a_tiny_trace() {
    energyllm_policy::link();
    let mut s = settings(11);
    s.runs = 1;
    s.duration_s = 20.0;
    s.policies = [
        "static-high",
        "dvfs-only",
        "token-aware",
        "throttllem",
        "heuristic",
        "fixed:freq=1005,batch=16",
        "clairvoyant:window_s=5",
    ]
    .iter()
    .map(|p| PluginSpec::parse(p).unwrap())
    .collect();
    let results = evaluate(&s, |_| {}).unwrap();
    let oracle = &results.last().unwrap().summary;
    assert!(oracle.method.starts_with("clairvoyant"));
    for m in &results[..results.len() - 1] {
        let m = &m.summary;
        if m.slo_attainment_pct >= oracle.slo_attainment_pct {
            assert!(
                m.busy_energy_j >= oracle.busy_energy_j * (1.0 - 1e-9),
                "{} spends {:.1} J at {:.1}% but the clairvoyant {:.1} J at {:.1}%",
                m.method,
                m.busy_energy_j,
                m.slo_attainment_pct,
                oracle.busy_energy_j,
                oracle.slo_attainment_pct
            );
        }
    }
}
