//! `energyllm observe`: the EnergyLLM paper's three observations on the simulator.

use clap::Args;

use energyllm_bench::paper_observations::observations;
use energyllm_sim::SimSetup;

/// Arguments of `observe`.
#[derive(Args, Clone, Debug)]
pub struct ObserveArgs {
    /// Built-in GPU profile.
    #[arg(long, default_value = "a100-40gb")]
    pub gpu: String,
    /// Built-in model profile.
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
}

/// Runs `observe`: prints the three tables.
pub fn run_observe(args: &ObserveArgs) -> anyhow::Result<()> {
    let setup = SimSetup::paper(&args.gpu, &args.model)?;
    print!("{}", observations(&setup)?);
    Ok(())
}
