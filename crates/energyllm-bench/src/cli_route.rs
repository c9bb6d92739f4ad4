//! `energyllm route`: offline energy-optimal routing of a query set over heterogeneous systems
//! (Wilkins et al.), solved exactly by [`energyllm_models::route`], as one assignment or a ζ
//! sweep (a Markdown table, CSV, JSON and an SVG of energy against quality).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use energyllm_models::route::{group_queries, Assignment, RouteConfig, RouteProblem};

use energyllm_core::registry::PluginSpec;
use energyllm_core::Slo;

use crate::driver::SimSetup;
use crate::plots::{axes, escape, open, range, Frame, PALETTE};
use crate::routing::cluster::{
    compare_routers, router_table, ClusterRun, ClusterSetup, InstanceSpec, RouterResult, Sizing,
};
use crate::routing::ROUTERS;
use crate::workload::{ArrivalPattern, LengthDataset, ReadOptions};

/// The bundled example config: Llama-2 7B/13B/70B on A100s, coefficients fitted from the
/// energy-inference measurements (see the file's header).
pub const LLAMA2_EXAMPLE: &str = include_str!("../configs/route-llama2-energy-inference.toml");

/// The name `--config` accepts for [`LLAMA2_EXAMPLE`].
pub const LLAMA2_EXAMPLE_NAME: &str = "llama2-energy-inference";

/// Arguments of `route`.
#[derive(Args, Clone, Debug)]
pub struct RouteArgs {
    /// Systems to route over: a TOML file with `[route]` settings and `[[system]]` tables, or
    /// `llama2-energy-inference` for the bundled Llama-2 7B/13B/70B example.
    #[arg(long, value_name = "FILE")]
    pub config: String,
    /// Query set: a lengths file or trace in any supported format, or a bundled name
    /// (`energyllm dataset list`). Default: the bundled ShareGPT-like sample.
    #[arg(long, value_name = "SPEC")]
    pub queries: Option<String>,
    /// Solve at this ζ only (1 = least energy, 0 = best quality) instead of sweeping.
    #[arg(long)]
    pub zeta: Option<f64>,
    /// Points of the ζ sweep (overrides the config's `sweep_points`).
    #[arg(long)]
    pub points: Option<u32>,
    /// Directory for route.md, route.csv, route.json and route.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads a routing config from `spec` (a path, or the bundled example's name); errors name the
/// file and the field.
pub fn load_config(spec: &str) -> anyhow::Result<RouteConfig> {
    let (name, text) = if spec == LLAMA2_EXAMPLE_NAME && !Path::new(spec).exists() {
        (format!("{spec} (bundled)"), LLAMA2_EXAMPLE.to_owned())
    } else {
        let text = std::fs::read_to_string(spec)
            .with_context(|| format!("reading routing config {spec} (or use `{LLAMA2_EXAMPLE_NAME}`)"))?;
        (spec.to_owned(), text)
    };
    let config: RouteConfig = toml::from_str(&text).with_context(|| format!("routing config {name}"))?;
    config.validate().with_context(|| format!("routing config {name}"))?;
    Ok(config)
}

/// The sweep (or single solve) as a Markdown table.
pub fn route_table(problem: &RouteProblem, points: &[Assignment]) -> String {
    let mut out = String::new();
    let systems = problem.systems();
    let _ = write!(out, "| ζ | energy (kWh) | J/query | mean quality |");
    for s in systems {
        let _ = write!(out, " {} |", s.name);
    }
    let _ = writeln!(out, " busiest system (h) |");
    let _ = writeln!(out, "|{}", "---|".repeat(5 + systems.len()));
    for a in points {
        let busiest_h = a.runtime_s.iter().copied().fold(0.0, f64::max) / 3600.0;
        let _ = write!(
            out,
            "| {:.2} | {:.3} | {:.0} | {:.2} |",
            a.zeta,
            a.energy_j / 3.6e6,
            a.energy_j / problem.total() as f64,
            a.mean_quality
        );
        for &n in &a.per_system {
            let _ = write!(out, " {n} |");
        }
        let _ = writeln!(out, " {busiest_h:.2} |");
    }
    out
}

/// Every query on one system, ignoring shares: the reference points of the plot.
fn single_system_points(problem: &RouteProblem) -> Vec<(String, Assignment)> {
    (0..problem.systems().len())
        .map(|k| {
            let counts = problem
                .classes()
                .iter()
                .map(|c| (0..problem.systems().len()).map(|j| if j == k { c.count } else { 0 }).collect())
                .collect();
            (format!("all on {}", problem.systems()[k].name), problem.evaluate(1.0, counts))
        })
        .collect()
}

/// Energy (kWh) against mean quality: the sweep as a line with ζ labels, single-system
/// assignments as squares.
pub fn route_svg(problem: &RouteProblem, points: &[Assignment]) -> String {
    let singles = single_system_points(problem);
    let all = || points.iter().chain(singles.iter().map(|(_, a)| a));
    let f = Frame {
        x: range(all().map(|a| a.mean_quality)),
        y: range(all().map(|a| a.energy_j / 3.6e6)),
        left: 80.0,
        top: 40.0,
        width: 560.0,
        height: 380.0,
    };
    let mut svg = String::new();
    open(&mut svg, 900.0, 480.0, "Offline routing: predicted energy vs mean quality over ζ");
    axes(&mut svg, &f, "mean quality", "predicted energy (kWh)");
    let path: Vec<String> = points
        .iter()
        .map(|a| format!("{:.1},{:.1}", f.px(a.mean_quality), f.py(a.energy_j / 3.6e6)))
        .collect();
    let _ =
        writeln!(svg, "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\"/>", path.join(" "), PALETTE[0]);
    // Label a point only when it is clear of the last label: the middle of a sweep bunches up.
    let mut last_label = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (i, a) in points.iter().enumerate() {
        let (x, y) = (f.px(a.mean_quality), f.py(a.energy_j / 3.6e6));
        let _ = writeln!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{}\"/>", PALETTE[0]);
        let clear = (x - last_label.0).hypot(y - last_label.1) > 36.0;
        if clear || i + 1 == points.len() {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">ζ={:.1}</text>",
                x + 6.0,
                y - 6.0,
                a.zeta
            );
            last_label = (x, y);
        }
    }
    let _ = writeln!(
        svg,
        "<circle cx=\"665\" cy=\"53\" r=\"5\" fill=\"{}\"/><text x=\"676\" y=\"57\">optimal routing</text>",
        PALETTE[0]
    );
    for (i, (name, a)) in singles.iter().enumerate() {
        let color = PALETTE[(i + 1) % PALETTE.len()];
        let (x, y) = (f.px(a.mean_quality), f.py(a.energy_j / 3.6e6));
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
             <rect x=\"660\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"676\" y=\"{}\">{}</text>",
            x - 5.0,
            y - 5.0,
            66 + 18 * i,
            75 + 18 * i,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn csv(problem: &RouteProblem, points: &[Assignment]) -> String {
    let mut out = String::from("zeta,energy_j,energy_per_query_j,mean_quality,objective");
    for s in problem.systems() {
        let _ = write!(out, ",queries_{0},busy_s_{0}", s.name);
    }
    out.push('\n');
    for a in points {
        let _ = write!(
            out,
            "{},{},{},{},{}",
            a.zeta,
            a.energy_j,
            a.energy_j / problem.total() as f64,
            a.mean_quality,
            a.objective
        );
        for (n, t) in a.per_system.iter().zip(&a.runtime_s) {
            let _ = write!(out, ",{n},{t}");
        }
        out.push('\n');
    }
    out
}

/// Runs `route`.
pub fn run_route(args: &RouteArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args.config)?;
    if let Some(points) = args.points {
        anyhow::ensure!(points >= 2, "--points must be ≥ 2 (the sweep's two ends)");
        config.route.sweep_points = points;
    }
    let dataset = match &args.queries {
        Some(spec) => LengthDataset::open(spec, &ReadOptions::default())?.0,
        None => LengthDataset::sharegpt_like(),
    };
    let classes = group_queries(dataset.samples.iter().map(|s| (s.input_len, s.output_len)));
    let n_classes = classes.len();
    let sweep_points = config.route.sweep_points;
    let problem =
        RouteProblem::new(config, classes).with_context(|| format!("routing config {}", args.config))?;
    let points = match args.zeta {
        Some(z) => vec![problem.solve(z)?],
        None => problem.sweep(sweep_points)?,
    };
    let mut text = format!(
        "Offline routing of {} queries ({} distinct (tin, tout) classes, {}) over {} systems; exact min-cost flow; \
         shares per system (min, max queries): {}.\n",
        problem.total(),
        n_classes,
        dataset.name,
        problem.systems().len(),
        problem
            .systems()
            .iter()
            .zip(problem.bounds())
            .map(|(s, (lo, hi))| format!("{} [{lo}, {hi}]", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if problem.clamped() > 0 {
        let _ = writeln!(
            text,
            "note: {} (query, system) energy predictions were below the system's floor (min_energy_j, or 0 J; a \
             bilinear fit outside its data) and were raised to it.",
            problem.clamped()
        );
    }
    text.push('\n');
    text.push_str(&route_table(&problem, &points));
    print!("{text}");
    if let Some(dir) = &args.out {
        write_files(
            dir,
            &[
                ("route.md", text),
                ("route.csv", csv(&problem, &points)),
                ("route.json", serde_json::to_string_pretty(&points)?),
                ("route.svg", route_svg(&problem, &points)),
            ],
        )?;
    }
    Ok(())
}

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
    #[arg(long, default_value = "dvfs-only", value_name = "SPEC")]
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

/// Energy per request against SLO attainment, one point per router (means over runs): up and
/// to the left is better.
pub fn cluster_svg(results: &[RouterResult], slo: &Slo) -> String {
    let pts: Vec<(&str, f64, f64)> = results
        .iter()
        .map(|r| {
            let n = r.runs.len().max(1) as f64;
            let energy = r.runs.iter().map(ClusterRun::energy_per_request_j).sum::<f64>() / n;
            let att = r.runs.iter().map(|run| run.slo_attainment_pct(slo)).sum::<f64>() / n;
            (r.router.as_str(), energy, att)
        })
        .collect();
    let f = Frame {
        x: range(pts.iter().map(|p| p.1)),
        y: range(pts.iter().map(|p| p.2)),
        left: 80.0,
        top: 40.0,
        width: 560.0,
        height: 380.0,
    };
    let mut svg = String::new();
    open(&mut svg, 900.0, 480.0, "Cluster routing: energy per request vs SLO attainment");
    axes(&mut svg, &f, "energy per request (J)", "SLO attainment (%)");
    for (i, (name, energy, att)) in pts.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/>\
             <circle cx=\"665\" cy=\"{}\" r=\"5\" fill=\"{color}\"/><text x=\"676\" y=\"{}\">{}</text>",
            f.px(*energy),
            f.py(*att),
            53 + 18 * i,
            57 + 18 * i,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
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

/// Writes each `(name, body)` into `dir` (created if missing); errors name the path.
fn write_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("\nwrote {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_bundled_example_parses_and_its_sweep_spans_energy_and_quality() {
        let config = load_config(LLAMA2_EXAMPLE_NAME).unwrap();
        assert_eq!(config.system.len(), 3);
        let d = LengthDataset::sharegpt_like();
        let classes = group_queries(d.samples.iter().map(|s| (s.input_len, s.output_len)));
        let p = RouteProblem::new(config, classes).unwrap();
        let sweep = p.sweep(5).unwrap();
        let (first, last) = (&sweep[0], &sweep[sweep.len() - 1]);
        // ζ = 0: all but one query each on the others go to the 70B model; ζ = 1: least energy.
        assert_eq!(first.per_system[2], p.total() - 2);
        assert!(last.energy_j < first.energy_j / 5.0, "{} vs {}", last.energy_j, first.energy_j);
        assert!(sweep.iter().all(|a| a.per_system.iter().all(|&n| n >= 1)));
        let svg = route_svg(&p, &sweep);
        assert!(svg.starts_with("<svg") && svg.contains("all on llama-2-70b@a100x4"));
        assert!(route_table(&p, &sweep).lines().count() == 2 + 5);
    }

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
        let requests = crate::workload::sample_requests(
            &LengthDataset::sharegpt_like(),
            &ArrivalPattern::Poisson,
            1.0,
            5.0,
            0,
        )
        .unwrap();
        let mut router = crate::routing::router_by_name("round-robin").unwrap();
        let e = crate::routing::cluster::simulate_cluster(&cluster, router.as_mut(), &requests, 5.0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("500 W") && e.contains("idle"), "{e}");
    }

    #[test]
    fn a_bad_field_names_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, LLAMA2_EXAMPLE.replace("quality = 50.97", "qualty = 50.97")).unwrap();
        let e = format!("{:#}", load_config(&path.to_string_lossy()).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("qualty"), "{e}");
        std::fs::write(&path, LLAMA2_EXAMPLE.replace("gpus = 4", "gpus = 0")).unwrap();
        let e = format!("{:#}", load_config(&path.to_string_lossy()).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("llama-2-70b@a100x4"), "{e}");
    }
}
