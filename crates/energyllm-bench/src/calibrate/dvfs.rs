//! The A100 DVFS sweep's optimum clock and saving, and the joint fit of the A100 power model
//! to every A100 source.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use energyllm_core::Mhz;
use energyllm_engines::{IterationCost, IterationModel, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::Error;

use super::energyllm_grid::{energyllm_grid, ENERGYLLM_INPUT, ENERGYLLM_OUTPUT};
use super::mlenergy::mlenergy_v1_llama7b;
use super::power::*;
use super::vidur::decode_work;
use super::*;

#[derive(Deserialize)]
pub(super) struct DvfsRecord {
    pub(super) gpu: String,
    pub(super) workload: String,
    pub(super) optimal_frequency_edp_mhz: f64,
    pub(super) energy_savings_edp_percent: f64,
    pub(super) performance_vs_max_edp_percent: f64,
}

/// The HF-transformers LLaMA decode run of the DVFS sweep, as the simulator sees it: one
/// trace per clock (timing does not depend on the power constants, so fits reuse them).
pub(super) struct DvfsRun {
    pub(super) clocks: Vec<Mhz>,
    pub(super) traces: Vec<Vec<IterationCost>>,
    pub(super) overhead_s: f64,
    pub(super) tokens_per_s: f64,
    pub(super) v1_power_w: f64,
    pub(super) input: u64,
    pub(super) output: u64,
}

/// Optimum clock, saving (%) and slowdown (%) against the top clock, and power (W) at the top.
pub(super) struct DvfsResult {
    pub(super) best: Mhz,
    pub(super) saving_pct: f64,
    pub(super) slowdown_pct: f64,
    pub(super) top_power_w: f64,
}

impl DvfsRun {
    fn new(data: &Path, gpu: &GpuSpec, model: &ModelSpec) -> Result<Self, Error> {
        // ML.ENERGY v1 measured the same kind of run (LLaMA-7B under HF transformers on A100): its
        // token rate gives the time per token beyond the GPU's own kernel time. Eager PyTorch
        // spends that time launching hundreds of tiny kernels, so the GPU counts as active.
        let (tokens_per_s, v1_power_w) = mlenergy_v1_llama7b(data)?;
        let (input, output) = (64u64, 512u64);
        let top = Mhz(gpu.max_freq_mhz);
        let bare = IterationModel { overhead_s: 0.0, ..IterationModel::default() };
        let gpu_token_s = bare.cost(model, gpu, top, &decode_work(1, input + output / 2)).time_s;
        let timing = IterationModel {
            overhead_s: (1.0 / tokens_per_s - gpu_token_s).max(0.0),
            overhead_active_frac: 1.0,
            ..IterationModel::default()
        };
        let clocks: Vec<Mhz> = (510..=gpu.max_freq_mhz).step_by(15).map(Mhz).collect();
        let traces = clocks.iter().map(|&f| static_batch(&timing, model, gpu, f, 1, input, output)).collect();
        Ok(DvfsRun { clocks, traces, overhead_s: timing.overhead_s, tokens_per_s, v1_power_w, input, output })
    }

    fn evaluate(&self, gpu: &GpuSpec) -> DvfsResult {
        let runs: Vec<(f64, f64)> =
            self.clocks.iter().zip(&self.traces).map(|(&f, t)| trace_energy(gpu, f, t)).collect();
        let (e_top, t_top) = runs[runs.len() - 1];
        let best = (0..runs.len()).min_by(|&a, &b| runs[a].0.total_cmp(&runs[b].0)).unwrap_or(runs.len() - 1);
        DvfsResult {
            best: self.clocks[best],
            saving_pct: (1.0 - runs[best].0 / e_top) * 100.0,
            slowdown_pct: (runs[best].1 / t_top - 1.0) * 100.0,
            top_power_w: e_top / t_top,
        }
    }
}

pub(super) fn dvfs_record(data: &Path) -> Result<DvfsRecord, Error> {
    let path = data.join("ai-inference-energy-summary/edp_optimization_results.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let records: Vec<DvfsRecord> = serde_json::from_str(&text).map_err(|e| data_err(&path, e))?;
    records
        .into_iter()
        .find(|r| r.gpu == "A100" && r.workload == "llama")
        .ok_or_else(|| data_err(&path, "no A100 llama record"))
}

pub(super) fn dvfs_section(data: &Path, report: &mut Report) -> Result<(), Error> {
    let rec = dvfs_record(data)?;
    let gpu = GpuSpec::builtin("a100-40gb")?;
    let model = ModelSpec::builtin("llama-2-7b")?;
    let run = DvfsRun::new(data, &gpu, &model)?;
    let r = run.evaluate(&gpu);
    let s = &mut report.text;
    let _ = writeln!(
        s,
        "## DVFS optimum: A100, LLaMA (ai-inference-energy full sweep, MIT)\n\n\
         Measured: energy-optimal locked clock {:.0} MHz of 1410, {:.1}% less energy than at 1410 MHz, \
         {:+.1}% time. Simulator: Llama-2-7B on A100-40GB, one request at a time, {}-token prompt, \
         {}-token answer, clocks 510–1410 MHz. The script was HuggingFace transformers in eager \
         PyTorch: {:.1} ms per token beyond the GPU's kernel time, so that the token rate at 1410 MHz is \
         ML.ENERGY v1's {:.1} tokens/s for LLaMA-7B under HF transformers on A100 (Apache-2.0), with the \
         GPU active throughout (tiny kernels back to back). ML.ENERGY v1's mean power there: {:.0} W; \
         simulator: {:.0} W. Result: optimum {} MHz, {:.1}% less energy, {:+.1}% time.\n",
        rec.optimal_frequency_edp_mhz,
        rec.energy_savings_edp_percent,
        -rec.performance_vs_max_edp_percent,
        run.input,
        run.output,
        run.overhead_s * 1e3,
        run.tokens_per_s,
        run.v1_power_w,
        r.top_power_w,
        r.best.0,
        r.saving_pct,
        r.slowdown_pct
    );
    push_check(
        &mut report.checks,
        "A100 decode-heavy LLaMA energy-optimal clock",
        format!("{} MHz", r.best.0),
        "750–870 MHz",
        (750..=870).contains(&r.best.0),
    );
    push_check(
        &mut report.checks,
        "saving at the optimum vs 1410 MHz",
        format!("{:.1}%", r.saving_pct),
        &format!("within 5 points of {:.0}%", rec.energy_savings_edp_percent),
        (r.saving_pct - rec.energy_savings_edp_percent).abs() <= 5.0,
    );
    push_check(
        &mut report.checks,
        "slowdown at the optimum",
        format!("{:+.1}%", r.slowdown_pct),
        "under 5%",
        r.slowdown_pct < 5.0,
    );
    Ok(())
}

/// One fit of the A100 power model to every A100 source at once: the EnergyLLM grid's power,
/// the DVFS sweep's saving, and ML.ENERGY v1's power, each weighted as a percentage error.
pub(super) fn a100_joint_refit(data: &Path, report: &mut Report) -> Result<(), Error> {
    let gpu = GpuSpec::builtin("a100-40gb")?;
    let grid_model = ModelSpec::builtin("llama-3.1-8b")?;
    let timing = IterationModel::default();
    let grid = energyllm_grid(data)?;
    let traces: Vec<Vec<IterationCost>> = grid
        .iter()
        .map(|g| static_batch(&timing, &grid_model, &gpu, g.freq, g.batch, ENERGYLLM_INPUT, ENERGYLLM_OUTPUT))
        .collect();
    let rec = dvfs_record(data)?;
    let run = DvfsRun::new(data, &gpu, &ModelSpec::builtin("llama-2-7b")?)?;
    let grid_mape = |g: &GpuSpec| {
        let pairs: Vec<(f64, f64)> = grid
            .iter()
            .zip(&traces)
            .map(|(p, t)| {
                let (e, time) = trace_energy(g, p.freq, t);
                (p.power_w, e / time)
            })
            .collect();
        mape(&pairs)
    };
    let (fitted, v) = fit_power(&gpu, [true; 7], &mut |g| {
        let r = run.evaluate(g);
        grid_mape(g)
            + (r.top_power_w / run.v1_power_w - 1.0).abs() * 100.0
            + (r.saving_pct - rec.energy_savings_edp_percent).abs()
    });
    let r = run.evaluate(&fitted);
    let s = &mut report.text;
    let _ = writeln!(
        s,
        "## A100 power: one fit to every A100 source\n\nObjective {v:.2} (grid power MAPE {:.2}% + HF power error + saving error in points); \
         with these constants the DVFS run gives optimum {} MHz, {:.1}% saving, {:+.1}% time, {:.0} W at 1410 MHz.\n",
        grid_mape(&fitted),
        r.best.0,
        r.saving_pct,
        r.slowdown_pct,
        r.top_power_w
    );
    power_table(s, &gpu, &fitted, v);
    Ok(())
}
