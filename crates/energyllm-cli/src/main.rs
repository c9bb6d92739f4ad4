//! `energyllm`: serve LLMs at the least GPU energy that meets latency SLOs.

use clap::{Parser, Subcommand};

use energyllm_cli::cluster::{run_cluster, ClusterArgs};
use energyllm_cli::dataset::{run_dataset, DatasetCommand};
use energyllm_cli::eval::{run_eval, EvalArgs};
use energyllm_cli::fit::{run_fit, FitCommand};
use energyllm_cli::hw::{run_hw, HwCommand};
use energyllm_cli::list::list_plugins;
use energyllm_cli::models::{run_models, ModelsCommand};
use energyllm_cli::observe::{run_observe, ObserveArgs};
use energyllm_cli::profile::{run_profile, ProfileArgs};
use energyllm_cli::report::{run_report, ReportArgs};
use energyllm_cli::route::{run_route, RouteArgs};

#[derive(Parser)]
#[command(name = "energyllm", version, about = "Serve LLMs at the least GPU energy that meets latency SLOs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare policies on the simulated GPU and engine.
    Eval(EvalArgs),
    /// List installed policies, actuators, engines and performance models.
    List,
    /// Rebuild report.html (every table and plot in one page) from an evaluation's results.
    Report(ReportArgs),
    /// Reproduce the EnergyLLM paper's three observations on the simulator.
    Observe(ObserveArgs),
    /// Process raw datasets into request lengths, summarise length files and traces.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Profile an engine and GPU over clocks, batch sizes and token configs (or sample iterations).
    Profile(ProfileArgs),
    /// Fit performance models: `fit wilkins`, `fit gbt`.
    #[command(subcommand)]
    Fit(FitCommand),
    /// Describe and evaluate model files: `models eval`.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Route a query set over heterogeneous systems at least energy for a quality trade-off ζ
    /// (Wilkins et al.), exactly, as one assignment or a ζ sweep.
    Route(RouteArgs),
    /// Route requests online over several simulated instances, each with its own controller,
    /// and compare routers (round-robin, least-loaded, energy-slack).
    Cluster(ClusterArgs),
    /// GPUs and GPU backends on this machine: `hw info`.
    #[command(subcommand)]
    Hw(HwCommand),
    /// Run the OpenAI-compatible gateway in front of vLLM, TGI or llama.cpp: queue, batch cap,
    /// clock control by a policy (feature `live`).
    #[cfg(feature = "live")]
    Serve(energyllm_cli::live::ServeArgs),
    /// Replay a workload against an OpenAI-compatible endpoint and report it like `eval`
    /// (feature `live`).
    #[cfg(feature = "live")]
    Loadgen(energyllm_cli::live::LoadgenArgs),
    /// Pick the gateway for each request behind Envoy (ext_proc, the Gateway API Inference
    /// Extension's endpoint-picker protocol) by the score each gateway exports (feature `epp`).
    #[cfg(feature = "epp")]
    Epp(energyllm_cli::epp::EppArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    energyllm_models::link();
    energyllm_hwd::link();
    let result = match cli.command {
        Command::Eval(args) => run_eval(&args),
        Command::List => list_plugins().map(|s| print!("{s}")),
        Command::Report(args) => run_report(&args),
        Command::Observe(args) => run_observe(&args),
        Command::Dataset(cmd) => run_dataset(&cmd),
        Command::Profile(args) => run_profile(&args),
        Command::Fit(cmd) => run_fit(&cmd),
        Command::Models(cmd) => run_models(&cmd),
        Command::Hw(cmd) => run_hw(&cmd),
        Command::Route(args) => run_route(&args),
        Command::Cluster(args) => run_cluster(&args),
        #[cfg(feature = "live")]
        Command::Serve(args) => energyllm_cli::live::run_serve(&args),
        #[cfg(feature = "live")]
        Command::Loadgen(args) => energyllm_cli::live::run_loadgen(&args),
        #[cfg(feature = "epp")]
        Command::Epp(args) => energyllm_cli::epp::run_epp(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", energyllm_cli::output::error_chain(&e));
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(all(test, feature = "epp"))]
#[path = "../../../deploy/k8s/commands.rs"]
#[allow(dead_code)]
mod k8s_commands;

/// The Kubernetes manifests (deploy/k8s/) run `energyllm serve` and `energyllm epp`: every such
/// command line parses with this binary's flags, and the picker's pool file loads.
#[cfg(all(test, feature = "epp"))]
mod manifests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::k8s_commands as commands;

    use clap::Parser as _;

    #[test]
    fn every_energyllm_command_line_in_the_manifests_parses() {
        let dir = commands::manifests_dir(env!("CARGO_MANIFEST_DIR"));
        let lines: Vec<_> = commands::command_lines(&dir)
            .into_iter()
            .filter(|c| c.argv.first().is_some_and(|p| p == "energyllm"))
            .collect();
        let subcommands: Vec<&str> = lines.iter().filter_map(|c| c.argv.get(1).map(String::as_str)).collect();
        assert!(subcommands.contains(&"serve") && subcommands.contains(&"epp"), "{subcommands:?}");
        for c in &lines {
            let cli = super::Cli::try_parse_from(&c.argv).unwrap_or_else(|e| {
                panic!("{}, container {}: `{}` does not parse:\n{e}", c.file, c.container, c.argv.join(" "))
            });
            if let super::Command::Epp(args) = cli.command {
                // The pool file it names is the ConfigMap's; check that one, not the path.
                assert!(args.pool.is_some(), "{}: the picker reads its pool from the ConfigMap", c.file);
            }
        }
    }

    #[test]
    fn the_pool_file_in_the_manifests_loads() {
        let dir = commands::manifests_dir(env!("CARGO_MANIFEST_DIR"));
        let pools: Vec<_> =
            commands::config_files(&dir).into_iter().filter(|f| f.key == "pool.toml").collect();
        assert!(!pools.is_empty());
        for f in pools {
            let origin = std::path::Path::new(&f.file).join(&f.config_map).join(&f.key);
            energyllm_epp::Pool::from_toml(&f.text, &origin).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
