//! Online routing over a simulated heterogeneous cluster: the energy-aware router against the
//! baselines on identical seeded workloads, conservation of requests, and instance sizing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use energyllm_bench::driver::SimSetup;
use energyllm_bench::routing::cluster::{simulate_cluster, ClusterRun, ClusterSetup, InstanceSpec, Sizing};
use energyllm_bench::routing::router_by_name;
use energyllm_bench::workload::{sample_requests, ArrivalPattern, LengthDataset};
use energyllm_core::registry::PluginSpec;
use energyllm_core::{Request, Slo};

const SLO: Slo = Slo::e2e(11.0);

/// One H100 and two A100-40GB serving Llama-3.1-8B, each under DVFS-only.
fn cluster(sizing: Option<Sizing>) -> ClusterSetup {
    energyllm_policy::link();
    let instances = [("h100", "llama-3.1-8b"), ("a100-40gb", "llama-3.1-8b"), ("a100-40gb", "llama-3.1-8b")]
        .iter()
        .enumerate()
        .map(|(i, (gpu, model))| {
            let mut setup = SimSetup::builtin(gpu, model).unwrap();
            setup.controller.slo = SLO;
            InstanceSpec {
                name: format!("{i}:{gpu}"),
                setup,
                policy: PluginSpec::parse("dvfs-only").unwrap(),
            }
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
