//! `energyllm`: serve LLMs at the least GPU energy that meets latency SLOs.

use clap::{Parser, Subcommand};

mod cli_hw;

use energyllm_bench::cli::{list_plugins, run_eval, run_observe, EvalArgs, ObserveArgs};
use energyllm_bench::cli_dataset::{run_dataset, DatasetCommand};
use energyllm_bench::cli_models::{run_fit, run_models, run_profile, FitCommand, ModelsCommand, ProfileArgs};
use energyllm_bench::cli_route::{run_cluster, run_route, ClusterArgs, RouteArgs};

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
    Hw(cli_hw::HwCommand),
    /// Run the OpenAI-compatible gateway in front of vLLM, TGI or llama.cpp: queue, batch cap,
    /// clock control by a policy (feature `live`).
    #[cfg(feature = "live")]
    Serve(energyllm_bench::cli_live::ServeArgs),
    /// Replay a workload against an OpenAI-compatible endpoint and report it like `eval`
    /// (feature `live`).
    #[cfg(feature = "live")]
    Loadgen(energyllm_bench::cli_live::LoadgenArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    energyllm_models::link();
    let result = match cli.command {
        Command::Eval(args) => run_eval(&args),
        Command::List => list_plugins().map(|s| print!("{s}")),
        Command::Observe(args) => run_observe(&args),
        Command::Dataset(cmd) => run_dataset(&cmd),
        Command::Profile(args) => run_profile(&args),
        Command::Fit(cmd) => run_fit(&cmd),
        Command::Models(cmd) => run_models(&cmd),
        Command::Hw(cmd) => cli_hw::run_hw(&cmd),
        Command::Route(args) => run_route(&args),
        Command::Cluster(args) => run_cluster(&args),
        #[cfg(feature = "live")]
        Command::Serve(args) => energyllm_bench::cli_live::run_serve(&args),
        #[cfg(feature = "live")]
        Command::Loadgen(args) => energyllm_bench::cli_live::run_loadgen(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
