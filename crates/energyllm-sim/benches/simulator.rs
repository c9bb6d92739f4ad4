//! Simulator throughput: one simulated hour of 10 req/s chat traffic (Llama-3.1-8B on A100).
//!
//! Criterion's "thrpt" line is engine iterations per second in the `iterations` group and
//! simulated seconds per wall second in the `sim_seconds` group (one element = one simulated
//! second).

// Benchmark setup on constant inputs: a failure is a bug to see at once.
#![allow(clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, BatchingMode, Mhz};
use energyllm_sim::simulation::{simulate, SimSetup};
use energyllm_workload::{poisson_requests, LengthDataset};

const HOUR_S: f64 = 3600.0;
const RATE_RPS: f64 = 10.0;

fn one_hour(c: &mut Criterion) {
    let mut setup = SimSetup::builtin("a100-40gb", "llama-3.1-8b").expect("built-in profiles");
    setup.controller.batching = BatchingMode::Continuous;
    let requests =
        poisson_requests(&LengthDataset::sharegpt_like(), RATE_RPS, HOUR_S, 0).expect("valid settings");
    let policy = || Box::new(FixedPolicy(Action { freq: Mhz(1410), batch: 64 }));
    let probe = simulate(&setup, policy(), &requests, HOUR_S).expect("simulation runs");
    eprintln!(
        "one hour: {} requests, {} iterations, {} decisions, {:.0} s simulated",
        requests.len(),
        probe.engine.iterations,
        probe.controller.decisions,
        probe.totals.elapsed_s
    );
    for (name, elements) in
        [("iterations", probe.engine.iterations), ("sim_seconds", probe.totals.elapsed_s as u64)]
    {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        group.throughput(Throughput::Elements(elements));
        group.bench_function("one_hour_10rps_llama8b_a100", |b| {
            b.iter(|| simulate(&setup, policy(), &requests, HOUR_S).expect("simulation runs"))
        });
        group.finish();
    }
}

criterion_group!(benches, one_hour);
criterion_main!(benches);
