//! `energyllm`: serve LLMs at the least GPU energy that meets latency SLOs.

use clap::{Parser, Subcommand};

use energyllm_bench::cli::{list_plugins, run_eval, EvalArgs};

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval(args) => run_eval(&args),
        Command::List => list_plugins().map(|s| print!("{s}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
