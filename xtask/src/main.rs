//! `cargo xtask …`: the project's reproducible pipelines.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use energyllm_bench::cli::{run_eval, EvalArgs};
use energyllm_bench::synthetic::SHAREGPT_LIKE;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "energyllm's reproducible pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main comparison on the embedded simulator and the bundled sample workload; writes
    /// results/eval unless --out says otherwise.
    Eval(EvalArgs),
    /// Regenerate the bundled synthetic workload samples.
    GenSamples,
    /// Run the criterion benchmarks (release profile).
    Bench {
        /// Extra arguments for criterion, e.g. a benchmark name filter.
        args: Vec<String>,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Eval(mut args) => {
            if args.out.is_none() {
                args.out = Some(workspace_root().join("results/eval"));
            }
            run_eval(&args)
        }
        Command::GenSamples => {
            let path = workspace_root().join("crates/energyllm-bench/data/sharegpt_like_sample.jsonl");
            std::fs::write(&path, SHAREGPT_LIKE.to_jsonl())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Bench { args } => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Process::new(cargo)
                .current_dir(workspace_root())
                .args(["bench", "-p", "energyllm-bench", "--bench", "simulator", "--"])
                .args(&args)
                .status()
                .context("running cargo bench")?;
            if !status.success() {
                bail!("cargo bench failed: {status}");
            }
            Ok(())
        }
    }
}
