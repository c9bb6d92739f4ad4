//! Online routing over a simulated heterogeneous cluster: the energy-aware router against the
//! baselines on identical seeded workloads, conservation of requests, instance sizing with
//! wake-up delays, the per-window tensor-parallel choice, and `energyllm cluster --out`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

use energyllm_core::registry::PluginSpec;
use energyllm_core::{Request, RequestId, RequestStatus, Slo, Timestamp};
use energyllm_sim::cluster::{simulate_cluster, ClusterRun, ClusterSetup, InstanceSpec, Sizing};
use energyllm_sim::router::{router_by_name, InstanceView, RouteQuery, Router};
use energyllm_sim::simulation::SimSetup;
use energyllm_workload::{sample_requests, ArrivalPattern, LengthDataset};

const SLO: Slo = Slo::e2e(11.0);
/// A rate one Llama-2-70B TP8 group serves within its SLO and a TP4 group does not.
const HIGH_RPS: f64 = 1.0;

fn energyllm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_energyllm"))
}

/// One H100 and two A100-40GB serving Llama-3.1-8B, each under DVFS-only.
fn cluster(sizing: Option<Sizing>) -> ClusterSetup {
    energyllm_policy::link();
    let instances = [("h100", "llama-3.1-8b"), ("a100-40gb", "llama-3.1-8b"), ("a100-40gb", "llama-3.1-8b")]
        .iter()
        .enumerate()
        .map(|(i, (gpu, model))| {
            let mut setup = SimSetup::builtin(gpu, model).unwrap();
            setup.controller.slo = SLO;
            InstanceSpec::new(
                format!("{i}:{gpu}"),
                setup,
                PluginSpec::parse("dvfs-only:preset=paper").unwrap(),
            )
        })
        .collect();
    ClusterSetup { instances, sizing }
}

fn workload(rate_rps: f64, duration_s: f64, seed: u64) -> Vec<Request> {
    sample_requests(&LengthDataset::sharegpt_like(), &ArrivalPattern::Poisson, rate_rps, duration_s, seed)
        .unwrap()
}

fn run(cluster: &ClusterSetup, router: &str, requests: &[Request], duration_s: f64) -> ClusterRun {
    let mut r = router_by_name(router).unwrap();
    simulate_cluster(cluster, r.as_mut(), requests, duration_s, 0).unwrap()
}

fn assert_conserved(run: &ClusterRun, requests: &[Request]) {
    let ids: BTreeSet<u64> = run.records.iter().map(|r| r.id.0).collect();
    assert_eq!(run.records.len(), requests.len(), "{}: a request was lost or duplicated", run.router);
    assert_eq!(ids.len(), requests.len());
    assert_eq!(run.instances.iter().map(|i| i.requests).sum::<u64>(), requests.len() as u64);
}

#[test]
fn energy_slack_beats_round_robin_on_energy_at_no_worse_slo() {
    let cluster = cluster(None);
    let requests = workload(2.0, 60.0, 0);
    let rr = run(&cluster, "round-robin", &requests, 60.0);
    let ll = run(&cluster, "least-loaded", &requests, 60.0);
    let es = run(&cluster, "energy-slack", &requests, 60.0);
    for r in [&rr, &ll, &es] {
        assert_conserved(r, &requests);
    }
    assert!(
        es.energy_j() < 0.95 * rr.energy_j(),
        "energy-slack {:.0} J vs round-robin {:.0} J",
        es.energy_j(),
        rr.energy_j()
    );
    assert!(
        es.slo_attainment_pct(&SLO) >= rr.slo_attainment_pct(&SLO),
        "SLO: energy-slack {:.1}% vs round-robin {:.1}%",
        es.slo_attainment_pct(&SLO),
        rr.slo_attainment_pct(&SLO)
    );
    // Round-robin spreads evenly; energy-slack consolidates onto the instance it finds cheapest.
    let spread = |r: &ClusterRun| {
        let n: Vec<u64> = r.instances.iter().map(|i| i.requests).collect();
        n.iter().max().unwrap() - n.iter().min().unwrap()
    };
    assert!(spread(&rr) <= 1);
    assert!(spread(&es) > spread(&rr));
}

#[test]
fn the_same_seed_gives_the_same_cluster_run() {
    let cluster = cluster(None);
    let requests = workload(2.0, 20.0, 3);
    assert_eq!(
        run(&cluster, "energy-slack", &requests, 20.0),
        run(&cluster, "energy-slack", &requests, 20.0)
    );
}

#[test]
fn sizing_gates_idle_instances_at_low_load_and_loses_no_request() {
    let requests = workload(1.0, 60.0, 0);
    let always_on = run(&cluster(None), "energy-slack", &requests, 60.0);
    let sized = run(&cluster(Some(Sizing::default())), "energy-slack", &requests, 60.0);
    assert_conserved(&sized, &requests);
    let gated_s: f64 = sized.instances.iter().map(|i| i.gated_s).sum();
    assert!(gated_s > 30.0, "gated {gated_s} s");
    assert!(
        sized.energy_j() < 0.8 * always_on.energy_j(),
        "sized {:.0} J vs always on {:.0} J",
        sized.energy_j(),
        always_on.energy_j()
    );
    // Gating only removes idle draw: each instance still pays for the work it did.
    for i in &sized.instances {
        assert!(i.energy_j >= 0.0, "{}: {} J", i.name, i.energy_j);
    }
}

/// Always names the second instance, switched off or not: the driver must wake it.
struct Second;

impl Router for Second {
    fn name(&self) -> &str {
        "second"
    }
    fn route(&mut self, _query: &RouteQuery, _instances: &[InstanceView<'_>]) -> usize {
        1
    }
}

#[test]
fn a_woken_instance_serves_after_its_wake_up_and_gating_keeps_the_gated_floor() {
    let wake_s = 4.0;
    let sizing = Sizing { window_s: 1000.0, gated_power_w: 20.0, wake_s, ..Sizing::default() };
    // Two identical instances: sizing keeps the first on at time zero and gates the second.
    let mut two = cluster(Some(sizing));
    two.instances.truncate(2);
    two.instances[0] = two.instances[1].clone();
    let request = Request {
        id: RequestId(0),
        arrival: Timestamp::from_secs_f64(1.0),
        input_tokens: 100,
        output_tokens: 50,
    };
    let requests = [request];
    let run = simulate_cluster(&two, &mut Second, &requests, 30.0, 0).unwrap();
    assert_conserved(&run, &requests);
    let rec = &run.records[0];
    assert_eq!(rec.status, RequestStatus::Completed);
    assert!(rec.queue_s() >= wake_s && rec.queue_s() < wake_s + 0.5, "queued {} s", rec.queue_s());
    // Gated from time zero until the request woke it, then on (drawing idle power).
    let woken = &run.instances[1];
    assert!((woken.gated_s - 1.0).abs() < 1e-6, "gated {} s", woken.gated_s);
    assert!((woken.gated_s + woken.variant_s[0].1 - run.elapsed_s).abs() < 1e-6);
    for i in &run.instances {
        let floor_j = sizing.gated_power_w * run.elapsed_s;
        assert!(i.energy_j >= floor_j, "{}: {} J below the gated floor {floor_j} J", i.name, i.energy_j);
    }
    // Waking draws idle power: the woken instance paid at least its idle draw while on.
    let idle_w = SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap().gpu.idle_power_w;
    assert!(
        woken.energy_j >= idle_w * (run.elapsed_s - woken.gated_s) + sizing.gated_power_w * woken.gated_s
    );
}

#[test]
fn gated_gpus_are_charged_exactly_their_gated_draw() {
    let requests = workload(1.0, 60.0, 0);
    let off = run(&cluster(Some(Sizing::default())), "energy-slack", &requests, 60.0);
    let sizing = Sizing { gated_power_w: 30.0, ..Sizing::default() };
    let sized = run(&cluster(Some(sizing)), "energy-slack", &requests, 60.0);
    assert_conserved(&sized, &requests);
    // The gated draw changes no decision, only each instance's bill: 30 W × its gated time
    // (one GPU per instance here).
    for (a, b) in off.instances.iter().zip(&sized.instances) {
        assert_eq!((a.requests, a.gated_s), (b.requests, b.gated_s), "{}", a.name);
        let extra_j = b.energy_j - a.energy_j;
        assert!((extra_j - 30.0 * b.gated_s).abs() < 1e-6 * b.energy_j.max(1.0), "{}: {extra_j} J", a.name);
    }
    assert!(sized.instances.iter().map(|i| i.gated_s).sum::<f64>() > 30.0);
}

/// The 70B instances' SLO: on A100s, TP4 cannot keep a mean ShareGPT request within half of
/// an 11-s SLO at any batch, so sizing would never pick it.
const SLO_70B: Slo = Slo::e2e(25.0);

/// Llama-2-70B instances on A100-80GBs, each with its setups (profile names, first the one it
/// starts in).
fn seventy_b(instances: &[&[&str]], sizing: Option<Sizing>) -> ClusterSetup {
    energyllm_policy::link();
    let setup = |model: &str| {
        let mut s = SimSetup::builtin("a100-80gb", model).unwrap();
        s.controller.slo = SLO_70B;
        s
    };
    let instances = instances
        .iter()
        .enumerate()
        .map(|(i, models)| {
            let mut spec = InstanceSpec::new(
                format!("{i}:70b"),
                setup(models[0]),
                PluginSpec::parse("dvfs-only:preset=paper").unwrap(),
            );
            spec.alternatives = models[1..].iter().map(|m| setup(m)).collect();
            spec
        })
        .collect();
    ClusterSetup { instances, sizing }
}

const TP8: &str = "llama-2-70b-tp8";
const TP4: &str = "llama-2-70b-tp4";

fn seconds_in(run: &ClusterRun, instance: usize, setup: &str) -> f64 {
    run.instances[instance].variant_s.iter().filter(|(n, _)| n.contains(setup)).map(|(_, s)| s).sum()
}

#[test]
fn at_low_load_the_70b_instance_runs_tp4_for_less_energy_at_comparable_slo() {
    let requests = workload(0.3, 120.0, 0);
    let sizing = Some(Sizing::default());
    let tp8 = run(&seventy_b(&[&[TP8]], sizing), "energy-slack", &requests, 120.0);
    let both = run(&seventy_b(&[&[TP8, TP4]], sizing), "energy-slack", &requests, 120.0);
    assert_conserved(&both, &requests);
    let tp4_s = seconds_in(&both, 0, "TP4");
    assert!(tp4_s > 0.5 * both.elapsed_s, "TP4 for {tp4_s} s of {} s", both.elapsed_s);
    let on_s: f64 = both.instances[0].variant_s.iter().map(|(_, s)| s).sum();
    assert!((on_s + both.instances[0].gated_s - both.elapsed_s).abs() < 1e-6);
    assert!(
        both.energy_j() < 0.8 * tp8.energy_j(),
        "TP8|TP4 {:.0} J vs TP8 {:.0} J",
        both.energy_j(),
        tp8.energy_j()
    );
    // TP4 misses a few more of the longest requests.
    let (a, b) = (both.slo_attainment_pct(&SLO_70B), tp8.slo_attainment_pct(&SLO_70B));
    assert!(a >= b - 10.0, "SLO attainment: TP8|TP4 {a:.1}% vs TP8 {b:.1}%");
}

#[test]
fn at_high_load_the_70b_instances_pick_tp8() {
    let sizing = Some(Sizing::default());
    // A lone instance that starts in TP8 stays there: TP4 never covers the load.
    let requests = workload(HIGH_RPS, 120.0, 0);
    let tp8 = run(&seventy_b(&[&[TP8]], sizing), "energy-slack", &requests, 120.0);
    let lone = run(&seventy_b(&[&[TP8, TP4]], sizing), "energy-slack", &requests, 120.0);
    assert_conserved(&lone, &requests);
    assert!(seconds_in(&lone, 0, "TP8") > 0.9 * lone.elapsed_s, "{:?}", lone.instances[0].variant_s);
    assert!(lone.slo_attainment_pct(&SLO_70B) >= tp8.slo_attainment_pct(&SLO_70B) - 1.0);
    // Two that start in TP4 at twice the rate: the first drains and switches to TP8 while the
    // second, woken straight into TP8, takes the load.
    let requests = workload(2.0 * HIGH_RPS, 120.0, 0);
    let two = run(&seventy_b(&[&[TP4, TP8], &[TP4, TP8]], sizing), "energy-slack", &requests, 120.0);
    assert_conserved(&two, &requests);
    let (first, second) = (seconds_in(&two, 0, "TP8"), seconds_in(&two, 1, "TP8"));
    assert!(first > 30.0 && seconds_in(&two, 0, "TP4") > 0.0, "{:?}", two.instances[0].variant_s);
    assert!(second > 0.5 * two.elapsed_s, "{:?}", two.instances[1].variant_s);
    // Gated and unused pool GPUs draw exactly the gated power: pricing it changes nothing else.
    let gated_w = 30.0;
    let priced_sizing = Some(Sizing { gated_power_w: gated_w, ..Sizing::default() });
    let priced =
        run(&seventy_b(&[&[TP4, TP8], &[TP4, TP8]], priced_sizing), "energy-slack", &requests, 120.0);
    assert_eq!(priced.records, two.records);
    let idle_gpu_s: f64 =
        (0..2).map(|i| 4.0 * seconds_in(&two, i, "TP4") + 8.0 * two.instances[i].gated_s).sum();
    let extra_j = priced.energy_j() - two.energy_j();
    assert!(
        (extra_j - gated_w * idle_gpu_s).abs() < 1e-6 * two.energy_j(),
        "{extra_j} J for {idle_gpu_s} GPU-s"
    );
    let tp4 = run(&seventy_b(&[&[TP4], &[TP4]], sizing), "energy-slack", &requests, 120.0);
    assert!(
        two.slo_attainment_pct(&SLO_70B) > tp4.slo_attainment_pct(&SLO_70B) + 20.0,
        "SLO attainment: TP4|TP8 {:.1}% vs TP4 {:.1}%",
        two.slo_attainment_pct(&SLO_70B),
        tp4.slo_attainment_pct(&SLO_70B)
    );
}

#[test]
fn alternatives_without_sizing_are_an_error() {
    let requests = workload(0.3, 10.0, 0);
    let mut r = router_by_name("round-robin").unwrap();
    let e = simulate_cluster(&seventy_b(&[&[TP8, TP4]], None), r.as_mut(), &requests, 10.0, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sizing") && e.contains("0:70b"), "{e}");
    let out = energyllm()
        .args(["cluster", "--instance", "a100-80gb:llama-2-70b-tp8|llama-2-70b-tp4", "--runs", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--sizing") && stderr.contains("llama-2-70b-tp4"), "{stderr}");
}

#[test]
fn cluster_out_writes_the_table_json_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = energyllm()
        .args(["cluster", "--arrival-rate", "1", "--duration", "10", "--runs", "2", "--seed", "0"])
        .args(["--router", "round-robin", "--router", "energy-slack", "--sizing"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let md = read("cluster.md");
    assert!(md.contains("| router | energy (kJ) |") && md.contains("| energy-slack |"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&read("cluster.json")).unwrap();
    let routers = json.as_array().unwrap();
    assert_eq!(routers.len(), 2);
    assert_eq!(routers[1]["router"], "energy-slack");
    let runs = routers[1]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs[0]["energy_per_request_j"].as_f64().unwrap() > 0.0);
    assert_eq!(runs[0]["instances"].as_array().unwrap().len(), 3);
    let csv = read("cluster.csv");
    assert_eq!(csv.lines().count(), 1 + 2 * 2, "{csv}");
    assert!(csv.starts_with("router,run,requests,energy_j,"));
    let svg = read("cluster.svg");
    assert!(svg.starts_with("<svg") && svg.contains("energy-slack") && svg.trim_end().ends_with("</svg>"));
    // An unwritable directory is named in the error.
    let file = dir.path().join("cluster.md");
    let bad = energyllm()
        .args(["cluster", "--duration", "5", "--runs", "1", "--router", "round-robin"])
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cluster.md"));
}
