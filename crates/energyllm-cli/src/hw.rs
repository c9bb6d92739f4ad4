//! `energyllm hw …`: the GPUs and GPU backends on this machine.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use energyllm_hw::info::{detect, InfoOptions};

/// `energyllm hw` subcommands.
#[derive(Subcommand, Debug)]
pub enum HwCommand {
    /// Detected GPUs and backends: current and supported clocks, power, the energy counter, and
    /// whether this process may change clocks (or why not).
    ///
    /// Exit status: 0 when the report is printed, also when no GPU or vendor library is found
    /// (the report says why); 2 on bad arguments, or with --require-gpu when no GPU is found.
    Info(HwInfoArgs),
}

/// Arguments of `hw info`.
#[derive(Args, Debug)]
pub struct HwInfoArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Path to libnvidia-ml (default: the loader finds libnvidia-ml.so.1).
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<PathBuf>,
    /// Directory holding the DRM cards, for AMD GPUs.
    #[arg(long, value_name = "DIR", default_value = "/sys/class/drm")]
    pub amd_sysfs_root: PathBuf,
    /// Check each NVIDIA energy counter against sampled power (1 s per GPU).
    #[arg(long)]
    pub check_energy: bool,
    /// Exit with status 2 if no GPU is found.
    #[arg(long)]
    pub require_gpu: bool,
}

/// Runs an `hw` subcommand.
pub fn run_hw(cmd: &HwCommand) -> anyhow::Result<()> {
    match cmd {
        HwCommand::Info(args) => run_info(args),
    }
}

fn run_info(args: &HwInfoArgs) -> anyhow::Result<()> {
    let report = detect(&InfoOptions {
        nvml_lib: args.nvml_lib.clone(),
        amd_sysfs_root: args.amd_sysfs_root.clone(),
        check_energy: args.check_energy,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if args.require_gpu && report.device_count() == 0 {
        anyhow::bail!("no GPU found (--require-gpu); the report above says what each backend saw");
    }
    Ok(())
}
