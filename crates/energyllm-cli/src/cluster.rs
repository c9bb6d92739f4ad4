//! `energyllm cluster`: online routing over several simulated instances, each with its own
//! controller, compared across routers.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use energyllm_bench::plots::cluster_svg;
use energyllm_core::registry::PluginSpec;
use energyllm_core::Slo;
use energyllm_sim::cluster::{
    compare_routers, router_table, ClusterSetup, InstanceSpec, RouterResult, Sizing,
};
use energyllm_sim::router::ROUTERS;
use energyllm_sim::SimSetup;
use energyllm_workload::{ArrivalPattern, LengthDataset, ReadOptions};

use crate::output::write_files;

/// Arguments of `cluster`.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// An instance as GPU:MODEL (built-in profiles; repeat for several). A tensor-parallel model
    /// profile (llama-2-70b-tp4) takes that many GPUs. GPU:MODEL|MODEL2… lists alternative
    /// profiles that --sizing picks among each window (llama-2-70b-tp8|llama-2-70b-tp4: the
    /// instance owns 8 GPUs and runs TP8 or TP4). Default: h100:llama-3.1-8b and two
    /// a100-40gb:llama-3.1-8b.
    #[arg(long = "instance", value_name = "GPU:MODEL")]
    pub instances: Vec<String>,
    /// Each instance's clock × batch policy, as NAME or NAME:key=value,….
    #[arg(long, default_value = "dvfs-only:preset=paper", value_name = "SPEC")]
    pub policy: String,
    /// A router to compare (repeat): round-robin, least-loaded, energy-slack. Default: all three.
    #[arg(long = "router", value_name = "NAME")]
    pub routers: Vec<String>,
    /// Mean arrival rate of the whole cluster, in requests per second.
    #[arg(long, default_value_t = 4.0)]
    pub arrival_rate: f64,
    /// Arrival process (as for `eval`).
    #[arg(long, default_value = "poisson", value_name = "SPEC")]
    pub arrival: String,
    /// Arrival window of each run, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub duration: f64,
    /// Runs per router (the same seeded workloads for every router).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Seed of the first run; run i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// End-to-end latency SLO, in seconds.
    #[arg(long, default_value_t = 11.0)]
    pub slo_e2e: f64,
    /// Lengths to draw from (as for `eval`). Default: the bundled ShareGPT-like sample.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Size the cluster: every --window seconds keep on the cheapest instances that cover the
    /// last window's arrival rate × --headroom; drained instances are power-gated.
    #[arg(long)]
    pub sizing: bool,
    /// Sizing window, in seconds. Default: 10 (needs --sizing, as the next three do).
    #[arg(long = "window", value_name = "SECONDS", requires = "sizing")]
    pub window_s: Option<f64>,
    /// Sizing headroom (capacity kept per unit of projected load). Default: 1.5.
    #[arg(long, requires = "sizing")]
    pub headroom: Option<f64>,
    /// Seconds a gated instance needs before it serves again (also after a switch between
    /// alternative profiles). Default: 5.
    #[arg(long = "wake", value_name = "SECONDS", requires = "sizing")]
    pub wake_s: Option<f64>,
    /// Board power of a power-gated GPU, in watts, at most its idle power. Default: 0 (switched
    /// off; a GPU left in its deepest idle state draws tens of watts).
    #[arg(long = "gated-power", value_name = "WATTS", requires = "sizing")]
    pub gated_power_w: Option<f64>,
    /// Directory for cluster.md, cluster.json, cluster.csv and cluster.svg.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The instances `--instance` describes (or the default trio), with the SLO and policy set.
pub fn cluster_setup(args: &ClusterArgs) -> anyhow::Result<ClusterSetup> {
    let specs: Vec<String> = if args.instances.is_empty() {
        ["h100:llama-3.1-8b", "a100-40gb:llama-3.1-8b", "a100-40gb:llama-3.1-8b"].map(String::from).to_vec()
    } else {
        args.instances.clone()
    };
    let defaults = Sizing::default();
    let sizing = Sizing {
        window_s: args.window_s.unwrap_or(defaults.window_s),
        headroom: args.headroom.unwrap_or(defaults.headroom),
        wake_s: args.wake_s.unwrap_or(defaults.wake_s),
        gated_power_w: args.gated_power_w.unwrap_or(defaults.gated_power_w),
    };
    for (flag, value, positive) in [
        ("--window", sizing.window_s, true),
        ("--headroom", sizing.headroom, true),
        ("--wake", sizing.wake_s, false),
        ("--gated-power", sizing.gated_power_w, false),
    ] {
        anyhow::ensure!(
            value.is_finite() && (value > 0.0 || (!positive && value == 0.0)),
            "{flag} must be a {} number, got {value}",
            if positive { "positive" } else { "non-negative" }
        );
    }
    let policy = PluginSpec::parse(&args.policy)?;
    let instances = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let (gpu, models) = spec.split_once(':').with_context(|| {
                format!("--instance {spec}: expected GPU:MODEL, e.g. a100-40gb:llama-3.1-8b")
            })?;
            let mut setups = models
                .split('|')
                .map(|model| {
                    let model = model.trim();
                    let mut setup =
                        SimSetup::builtin(gpu, model).with_context(|| format!("--instance {spec}"))?;
                    setup.controller.slo = Slo::e2e(args.slo_e2e);
                    setup.controller.validate().with_context(|| format!("--instance {spec}"))?;
                    Ok(setup)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::ensure!(
                setups.len() == 1 || args.sizing,
                "--instance {spec}: alternative model profiles need --sizing, which picks among them each window"
            );
            let setup = setups.remove(0);
            Ok(InstanceSpec {
                name: format!("{i}:{gpu}/{models}"),
                setup,
                policy: policy.clone(),
                alternatives: setups,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sizing = args.sizing.then_some(sizing);
    Ok(ClusterSetup { instances, sizing })
}

/// One row per router × run: the cluster's figures, then each instance's requests, energy,
/// gated time and time on in each setup.
fn cluster_csv(results: &[RouterResult], slo: &Slo) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "router",
        "run",
        "requests",
        "energy_j",
        "energy_per_request_j",
        "slo_attainment_pct",
        "p90_e2e_s",
        "elapsed_s",
    ]
    .map(String::from)
    .to_vec();
    if let Some(first) = results.first().and_then(|r| r.runs.first()) {
        for i in &first.instances {
            header.extend(["requests", "energy_j", "gated_s"].map(|c| format!("{c}[{}]", i.name)));
            header.extend(i.variant_s.iter().map(|(v, _)| format!("on_s[{}][{v}]", i.name)));
        }
    }
    w.write_record(&header)?;
    for r in results {
        for (k, run) in r.runs.iter().enumerate() {
            let rep = run.report(k, slo);
            let mut row = vec![
                r.router.clone(),
                k.to_string(),
                rep.requests.to_string(),
                rep.energy_j.to_string(),
                rep.energy_per_request_j.to_string(),
                rep.slo_attainment_pct.to_string(),
                rep.p90_e2e_s.to_string(),
                rep.elapsed_s.to_string(),
            ];
            for i in &rep.instances {
                row.extend([i.requests.to_string(), i.energy_j.to_string(), i.gated_s.to_string()]);
                row.extend(i.variant_s.iter().map(|(_, s)| s.to_string()));
            }
            w.write_record(&row)?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Per router, per run: the figures of [`ClusterRun::report`].
fn cluster_json(results: &[RouterResult], slo: &Slo) -> anyhow::Result<String> {
    let routers: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let runs: Vec<_> = r.runs.iter().enumerate().map(|(k, run)| run.report(k, slo)).collect();
            serde_json::json!({ "router": r.router, "runs": runs })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&routers)?)
}

/// Runs `cluster`: the routers side by side on the same seeded workloads.
pub fn run_cluster(args: &ClusterArgs) -> anyhow::Result<()> {
    energyllm_policy::link();
    let cluster = cluster_setup(args)?;
    let routers: Vec<&str> = if args.routers.is_empty() {
        ROUTERS.to_vec()
    } else {
        args.routers.iter().map(String::as_str).collect()
    };
    let dataset = match &args.dataset {
        Some(spec) => LengthDataset::open(spec, &ReadOptions::default())?.0,
        None => LengthDataset::sharegpt_like(),
    };
    let pattern = ArrivalPattern::parse(&args.arrival)?;
    let results = compare_routers(
        &cluster,
        &routers,
        &dataset,
        &pattern,
        args.arrival_rate,
        args.duration,
        args.runs,
        args.seed,
    )?;
    let slo = Slo::e2e(args.slo_e2e);
    let mut text = format!(
        "{} runs × {} s at {} req/s ({}), {}; instances: {}; policy {}{}; SLO {} s end to end.\n\n",
        args.runs,
        args.duration,
        args.arrival_rate,
        args.arrival,
        dataset.name,
        cluster.instances.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
        args.policy,
        match &cluster.sizing {
            Some(z) => format!(
                ", sizing every {} s with headroom {}, {} s wake-up and {} W per gated GPU",
                z.window_s, z.headroom, z.wake_s, z.gated_power_w
            ),
            None => String::new(),
        },
        args.slo_e2e
    );
    text.push_str(&router_table(&results, &slo));
    print!("{text}");
    if let Some(dir) = &args.out {
        write_files(
            dir,
            &[
                ("cluster.md", text),
                ("cluster.json", cluster_json(&results, &slo)?),
                ("cluster.csv", cluster_csv(&results, &slo)?),
                ("cluster.svg", cluster_svg(&results, &slo)),
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn cluster_args(args: &[&str]) -> ClusterArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ClusterArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("cluster").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn an_instance_lists_alternative_profiles_and_they_need_sizing() {
        let spec = "a100-80gb:llama-2-70b-tp8|llama-2-70b-tp4";
        let setup = cluster_setup(&cluster_args(&[
            "--instance",
            spec,
            "--sizing",
            "--wake",
            "12",
            "--gated-power",
            "30",
        ]))
        .unwrap();
        assert_eq!(setup.sizing.map(|s| s.gated_power_w), Some(30.0));
        let inst = &setup.instances[0];
        assert_eq!(inst.setup.model.tensor_parallel, 8);
        assert_eq!(inst.alternatives.len(), 1);
        assert_eq!(inst.alternatives[0].model.tensor_parallel, 4);
        assert_eq!(inst.alternatives[0].controller.slo, Slo::e2e(11.0));
        assert_eq!(setup.sizing.map(|s| s.wake_s), Some(12.0));
        let e = format!("{:#}", cluster_setup(&cluster_args(&["--instance", spec])).unwrap_err());
        assert!(e.contains("--sizing") && e.contains(spec), "{e}");
        let bad = "a100-80gb:llama-2-70b-tp8|llama-9";
        let e = format!("{:#}", cluster_setup(&cluster_args(&["--instance", bad, "--sizing"])).unwrap_err());
        assert!(e.contains(bad) && e.contains("llama-9"), "{e}");
        assert!(cluster_setup(&cluster_args(&["--sizing", "--wake=-1"])).is_err());
    }

    #[test]
    fn sizing_flags_need_sizing_and_gating_must_save_power() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ClusterArgs,
        }
        for flag in ["--window=5", "--headroom=2", "--wake=1", "--gated-power=10"] {
            let e = <Cli as clap::Parser>::try_parse_from(["cluster", flag]).err().unwrap().to_string();
            assert!(e.contains("--sizing"), "{flag}: {e}");
        }
        let args = cluster_args(&["--sizing", "--gated-power=500"]);
        let cluster = cluster_setup(&args).unwrap();
        let requests = energyllm_workload::sample_requests(
            &LengthDataset::sharegpt_like(),
            &ArrivalPattern::Poisson,
            1.0,
            5.0,
            0,
        )
        .unwrap();
        let mut router = energyllm_sim::router::router_by_name("round-robin").unwrap();
        let e = energyllm_sim::cluster::simulate_cluster(&cluster, router.as_mut(), &requests, 5.0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("500 W") && e.contains("idle"), "{e}");
    }
}
